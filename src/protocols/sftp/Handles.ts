/**
 * The per-session table of open SFTP handles.
 *
 * A handle on the wire is an opaque 4-byte counter, never an fd, a path or
 * anything the client chose (pkg/sftp does the same). The table is bounded, and
 * whatever is still open when the session ends is closed by its finalizer
 * without announcing anything: an upload interrupted by a disconnect never
 * produces a completion event.
 *
 * Each handle carries a lock: requests that may run side by side (READ,
 * WRITE at distinct offsets) share it, requests that must see every earlier
 * one finished (CLOSE, FSETSTAT, FSYNC, READDIR, appends) take it alone. The
 * session's reading loop takes locks in arrival order and waits, reading
 * nothing, while the next request's lock is not free; so the lock is two
 * numbers, not a queue.
 */
import { Effect } from "effect"
import type { DirectoryHandle, FileHandle } from "../../services/Jail.js"
import type { VirtualPath } from "../../services/VirtualPath.js"
import { refused, type RequestRefused } from "./Status.js"

/**
 * Who holds a handle: requests sharing it, or one request alone.
 * @category models
 */
export interface HandleLock {
  shared: number
  exclusive: boolean
}

/**
 * An open file and what its close must know.
 * @category models
 */
export interface FileEntry {
  readonly _tag: "File"
  readonly file: FileHandle
  readonly path: VirtualPath
  readonly writable: boolean
  readonly append: boolean
  readonly lock: HandleLock
  /** A write on this handle failed: its close announces nothing. */
  failed: boolean
}

/**
 * An open directory being listed.
 * @category models
 */
export interface DirectoryEntry {
  readonly _tag: "Directory"
  readonly directory: DirectoryHandle
  readonly path: VirtualPath
  readonly lock: HandleLock
}

/**
 * Any open handle.
 * @category models
 */
export type HandleEntry = FileEntry | DirectoryEntry

/**
 * A session's handles.
 * @category models
 */
export interface HandleTable {
  /** Registers an entry; fails with TooManyHandles at the limit (the caller closes what it opened). */
  add(entry: HandleEntry): Effect.Effect<Buffer, RequestRefused>
  get(handle: Uint8Array): Effect.Effect<HandleEntry, RequestRefused>
  /** The entry of `handle`, if it is open. */
  find(handle: Uint8Array): HandleEntry | undefined
  /** Forgets a handle and returns its entry; later requests with it get InvalidHandle. */
  take(handle: Uint8Array): Effect.Effect<HandleEntry, RequestRefused>
  readonly size: () => number
}

const keyOf = (handle: Uint8Array): number | undefined =>
  handle.length === 4 ? Buffer.from(handle.buffer, handle.byteOffset, 4).readUInt32BE(0) : undefined

const closeQuietly = (entry: HandleEntry): Effect.Effect<void> =>
  (entry._tag === "File" ? Effect.asVoid(entry.file.close) : entry.directory.close).pipe(
    Effect.catch((error) => Effect.logWarning("closing a handle at session end failed", error))
  )

/**
 * A new lock for a handle entry, held by nobody.
 * @category constructors
 */
export const makeLock = (): HandleLock => ({ shared: 0, exclusive: false })

/**
 * Whether a request can take `lock` now, alone (`exclusive`) or shared.
 * @category constructors
 */
export const isFree = (lock: HandleLock, exclusive: boolean): boolean =>
  !lock.exclusive && (!exclusive || lock.shared === 0)

/**
 * Takes a lock that `isFree` said is free.
 * @category constructors
 */
export const takeLock = (lock: HandleLock, exclusive: boolean): void => {
  if (exclusive) lock.exclusive = true
  else lock.shared++
}

/**
 * Gives back a lock taken with the same `exclusive`.
 * @category constructors
 */
export const giveLock = (lock: HandleLock, exclusive: boolean): void => {
  if (exclusive) lock.exclusive = false
  else lock.shared--
}

/**
 * A table of at most `maxHandles` entries, closed with the current scope.
 * @category constructors
 */
export const make = (maxHandles: number) =>
  Effect.gen(function*() {
    const entries = new Map<number, HandleEntry>()
    let next = 1
    yield* Effect.addFinalizer(() =>
      Effect.forEach(Array.from(entries.values()), closeQuietly, { discard: true }).pipe(
        Effect.ensuring(Effect.sync(() => entries.clear()))
      )
    )
    const find = (handle: Uint8Array): HandleEntry | undefined => {
      const key = keyOf(handle)
      return key === undefined ? undefined : entries.get(key)
    }
    const table: HandleTable = {
      add: (entry) =>
        Effect.suspend(() => {
          if (entries.size >= maxHandles) return Effect.fail(refused("TooManyHandles"))
          while (entries.has(next) || next === 0) next = (next + 1) >>> 0
          const key = next
          next = (next + 1) >>> 0
          entries.set(key, entry)
          const handle = Buffer.alloc(4)
          handle.writeUInt32BE(key, 0)
          return Effect.succeed(handle)
        }),
      get: (handle) =>
        Effect.suspend(() => {
          const entry = find(handle)
          return entry ? Effect.succeed(entry) : Effect.fail(refused("InvalidHandle"))
        }),
      find,
      take: (handle) =>
        Effect.suspend(() => {
          const entry = find(handle)
          if (!entry) return Effect.fail(refused("InvalidHandle"))
          entries.delete(keyOf(handle)!)
          return Effect.succeed(entry)
        }),
      size: () => entries.size
    }
    return table
  })
