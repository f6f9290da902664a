/**
 * The per-session table of open SFTP handles.
 *
 * A handle on the wire is an opaque 4-byte counter, never an fd, a path or
 * anything the client chose (pkg/sftp does the same). The table is bounded, and
 * whatever is still open when the session ends is closed by its finalizer
 * without announcing anything: an upload interrupted by a disconnect never
 * produces a completion event.
 *
 * Each handle carries a semaphore: requests that may run side by side (READ,
 * WRITE at distinct offsets) take one permit, requests that must see every
 * earlier one finished (CLOSE, FSETSTAT, FSYNC, READDIR, appends) take all.
 */
import { Effect, Semaphore } from "effect"
import type { DirectoryHandle, FileHandle } from "../../services/Jail.js"
import type { VirtualPath } from "../../services/VirtualPath.js"
import { refused, type RequestRefused } from "./Status.js"

/** Permits of a handle's semaphore; more than requests in flight, so shared users never wait on each other. */
export const permitsPerHandle = 1024

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
  readonly lock: Semaphore.Semaphore
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
  readonly lock: Semaphore.Semaphore
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
 * A new lock for a handle entry.
 * @category constructors
 */
export const makeLock = (): Semaphore.Semaphore => Semaphore.makeUnsafe(permitsPerHandle)

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
    const lookup = (handle: Uint8Array) => {
      const key = keyOf(handle)
      const entry = key === undefined ? undefined : entries.get(key)
      return entry ? Effect.succeed([key!, entry] as const) : Effect.fail(refused("InvalidHandle"))
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
      get: (handle) => Effect.map(Effect.suspend(() => lookup(handle)), ([, entry]) => entry),
      take: (handle) =>
        Effect.suspend(() => lookup(handle)).pipe(
          Effect.map(([key, entry]) => {
            entries.delete(key)
            return entry
          })
        ),
      size: () => entries.size
    }
    return table
  })
