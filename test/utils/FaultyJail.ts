/**
 * FaultyJail: the real Jail layer (JailNative: openat2, real files, real fds)
 * with faults injected by overriding one method at a time, the way SFTPGo's test
 * file system embeds the real one. It is not a mock: every call that no fault
 * takes goes to the real jail, and an injected failure is the JailError the real
 * layer raises for that errno (`JailNative.errorFromErrno`), so the protocols
 * see exactly what a full disk, a quota or a failing device would give them.
 *
 * Faults are looked up at every call, so a test can arm one after the server
 * started and while files are open. Pass `layer` to `testServer({ jail })`.
 * Nothing here waits on a timer: a held call waits on a Deferred the test opens,
 * and `awaitFired(n)` completes when the n-th fault has fired.
 */
import { Deferred, Effect, Layer } from "effect"
import * as JailNative from "../../src/layers/JailNative.js"
import {
  type FileHandle,
  type FileStat,
  Jail,
  type JailError,
  type JailHandle,
  type JailOp,
  type JailUnavailable,
  type OpenMode,
  type Received
} from "../../src/services/Jail.js"
import type { VirtualPath } from "../../src/services/VirtualPath.js"

/** What the wrapper knows about one open file; the counters are the real ones so far. */
export interface OpenedFile {
  readonly path: VirtualPath
  readonly mode: OpenMode
  /** Write calls started on this handle, the current one included. */
  writes: number
  /** Bytes the real jail wrote through this handle. */
  written: number
  /** Read calls started on this handle, the current one included. */
  reads: number
  /** Close calls on this handle, the current one included (a second close is a no-op of the real jail). */
  closes: number
}

/** Given to every override: call `fired` when the fault took effect. */
export interface FaultTools {
  readonly fired: Effect.Effect<void>
}

/**
 * Overrides, one per method; each receives the real call to delegate to.
 * Methods without an override go straight to the real jail.
 */
export interface Faults {
  readonly openFile?: (
    path: VirtualPath,
    mode: OpenMode,
    real: Effect.Effect<FileHandle, JailError>,
    tools: FaultTools
  ) => Effect.Effect<FileHandle, JailError>
  readonly stat?: (path: VirtualPath, real: Effect.Effect<FileStat, JailError>, tools: FaultTools) => Effect.Effect<FileStat, JailError>
  readonly write?: (
    file: OpenedFile,
    offset: number,
    data: Uint8Array,
    real: (offset: number, data: Uint8Array) => Effect.Effect<void, JailError>,
    tools: FaultTools
  ) => Effect.Effect<void, JailError>
  /**
   * The addon's upload thread (FileHandle.receiveFrom); `real` runs it with the
   * progress effect it is given. Hidden, whatever this says, while `write` is armed.
   */
  readonly receiveFrom?: (
    file: OpenedFile,
    onProgress: Effect.Effect<void>,
    real: (onProgress: Effect.Effect<void>) => Effect.Effect<Received, JailError>,
    tools: FaultTools
  ) => Effect.Effect<Received, JailError>
  readonly read?: (
    file: OpenedFile,
    offset: number,
    length: number,
    real: Effect.Effect<Uint8Array, JailError>,
    tools: FaultTools
  ) => Effect.Effect<Uint8Array, JailError>
  readonly close?: (
    file: OpenedFile,
    real: Effect.Effect<FileStat | undefined, JailError>,
    tools: FaultTools
  ) => Effect.Effect<FileStat | undefined, JailError>
}

/** Which virtual paths a fault applies to: a predicate, one exact path, or every path. */
export type PathFilter = ((path: string) => boolean) | string | undefined

const matches = (filter: PathFilter, path: string) =>
  filter === undefined ? true : typeof filter === "string" ? path === filter : filter(path)

/** The JailError the real layer raises for `code` ("ENOSPC", "EIO", "EACCES"). */
export const errnoError = (op: JailOp, path: string, code: string): JailError => JailNative.errorFromErrno(op, path, code)

/** The controls of one faulty jail. */
export interface FaultyJail {
  /** The Jail layer: JailNative, wrapped. */
  readonly layer: Layer.Layer<Jail, JailUnavailable>
  /** Replaces the armed faults; applies from the next call on, open files included. */
  arm(faults: Faults): Effect.Effect<void>
  readonly disarm: Effect.Effect<void>
  /** How many times a fault fired so far. */
  readonly firedCount: () => number
  /** Completes once `count` faults have fired in all (default: one more than now). */
  awaitFired(count?: number): Effect.Effect<void>
}

/** A new faulty jail, with nothing armed. */
export const make = (): FaultyJail => {
  let faults: Faults = {}
  let fired = 0
  const waiters: Array<{ readonly count: number; readonly done: Deferred.Deferred<void> }> = []
  const tools: FaultTools = {
    fired: Effect.sync(() => {
      fired++
      for (const waiter of waiters.filter((w) => w.count <= fired)) {
        waiters.splice(waiters.indexOf(waiter), 1)
        Deferred.doneUnsafe(waiter.done, Effect.void)
      }
    })
  }

  const wrapFile = (real: FileHandle, opened: OpenedFile): FileHandle => ({
    ...real,
    read: (offset, length, into) =>
      Effect.suspend(() => {
        opened.reads++
        const call = real.read(offset, length, into)
        return faults.read ? faults.read(opened, offset, length, call, tools) : call
      }),
    write: (offset, data) =>
      Effect.suspend(() => {
        opened.writes++
        const realWrite = (at: number, bytes: Uint8Array) =>
          real.write(at, bytes).pipe(Effect.tap(() => Effect.sync(() => void (opened.written += bytes.length))))
        return faults.write ? faults.write(opened, offset, data, realWrite, tools) : realWrite(offset, data)
      }),
    // The addon's own upload thread writes without passing `write`: while a write
    // fault is armed it is hidden, so callers fall back to `write` and meet the fault.
    get receiveFrom(): FileHandle["receiveFrom"] {
      const receive = real.receiveFrom
      if (faults.write || receive === undefined) return undefined
      return (socketFd, offset, onProgress) =>
        Effect.suspend(() => {
          const run = (progress: Effect.Effect<void>) => receive(socketFd, offset, progress)
          return faults.receiveFrom ? faults.receiveFrom(opened, onProgress, run, tools) : run(onProgress)
        })
    },
    close: Effect.suspend(() => {
      opened.closes++
      return faults.close ? faults.close(opened, real.close, tools) : real.close
    })
  })

  const wrapHandle = (real: JailHandle): JailHandle => ({
    ...real,
    stat: (path) => Effect.suspend(() => (faults.stat ? faults.stat(path, real.stat(path), tools) : real.stat(path))),
    openFile: (path, mode) =>
      Effect.suspend(() => {
        const open = real.openFile(path, mode)
        return faults.openFile ? faults.openFile(path, mode, open, tools) : open
      }).pipe(Effect.map((file) => wrapFile(file, { path, mode, writes: 0, written: 0, reads: 0, closes: 0 })))
  })

  const layer = Layer.effect(
    Jail,
    Effect.map(JailNative.make(), (real) => Jail.of({ open: (root) => Effect.map(real.open(root), wrapHandle) }))
  )

  return {
    layer,
    arm: (next) => Effect.sync(() => void (faults = next)),
    disarm: Effect.sync(() => void (faults = {})),
    firedCount: () => fired,
    awaitFired: (count) =>
      Effect.suspend(() => {
        const target = count ?? fired + 1
        if (fired >= target) return Effect.void
        const done = Deferred.makeUnsafe<void>()
        waiters.push({ count: target, done })
        return Deferred.await(done)
      })
  }
}

// --- canned faults -------------------------------------------------------------------------

const failAfterBytes = (bytes: number, code: string, only: PathFilter, budgetOf: (file: OpenedFile) => object): Faults => {
  const claimed = new WeakMap<object, number>()
  return {
    write: (file, offset, data, real, tools) => {
      if (!matches(only, file.path)) return real(offset, data)
      const budget = budgetOf(file)
      const before = claimed.get(budget) ?? 0
      claimed.set(budget, Math.min(bytes, before + data.length))
      if (before + data.length <= bytes) return real(offset, data)
      const room = bytes - before
      return (room > 0 ? real(offset, data.subarray(0, room)) : Effect.void).pipe(
        Effect.andThen(tools.fired),
        Effect.andThen(Effect.fail(errnoError("write", file.path, code)))
      )
    }
  }
}

/**
 * A file may take `bytes` bytes (a per-file quota): the write that crosses the
 * limit really writes the part below it, then fails with `code` (as write(2)
 * does: a short write, then the error), and every later write to that file
 * fails at once. Bytes are counted when a write starts, whatever its offset, so
 * concurrent (pipelined) writes cannot overshoot the limit.
 */
export const writeFailsAfter = (bytes: number, code: string, only?: PathFilter): Faults =>
  failAfterBytes(bytes, code, only, (file) => file)

/**
 * The disk fills up after `bytes` bytes written to all matching files together:
 * like `writeFailsAfter`, but a retry in a new file (or a resumed upload) finds
 * the disk still full.
 */
export const diskFullAfter = (bytes: number, code: string, only?: PathFilter): Faults => {
  const disk = {}
  return failAfterBytes(bytes, code, only, () => disk)
}

/** The `n`-th write call on a file (1-based) fails with `code` without writing anything. */
export const nthWriteFails = (n: number, code: string, only?: PathFilter): Faults => ({
  write: (file, offset, data, real, tools) =>
    matches(only, file.path) && file.writes === n
      ? tools.fired.pipe(Effect.andThen(Effect.fail(errnoError("write", file.path, code))))
      : real(offset, data)
})

/** From the `n`-th read call on a file (1-based), every read fails with `code` (a failing device). */
export const readsFailFrom = (n: number, code: string, only?: PathFilter): Faults => ({
  read: (file, _offset, _length, real, tools) =>
    matches(only, file.path) && file.reads >= n
      ? tools.fired.pipe(Effect.andThen(Effect.fail(errnoError("read", file.path, code))))
      : real
})

/** Opening a matching file fails with `code` before anything is created. */
export const openFails = (code: string, only?: PathFilter): Faults => ({
  openFile: (path, _mode, real, tools) =>
    matches(only, path) ? tools.fired.pipe(Effect.andThen(Effect.fail(errnoError("open", path, code)))) : real
})

/** stat of a matching path fails with `code`. */
export const statFails = (code: string, only?: PathFilter): Faults => ({
  stat: (path, real, tools) =>
    matches(only, path) ? tools.fired.pipe(Effect.andThen(Effect.fail(errnoError("stat", path, code)))) : real
})

/**
 * The first close of a matching file fails with `code` after the real close
 * (Linux releases the fd even when close(2) reports EIO, as NFS does for a
 * write-back failure); a later close is the real no-op.
 */
export const closeFails = (code: string, only?: PathFilter): Faults => ({
  close: (file, real, tools) =>
    matches(only, file.path) && file.closes === 1
      ? real.pipe(Effect.andThen(tools.fired), Effect.andThen(Effect.fail(errnoError("close", file.path, code))))
      : real
})

/** Every write on a matching file waits for `gate` (fired when it starts waiting), then really writes. */
export const writesHeld = (gate: Deferred.Deferred<void>, only?: PathFilter): Faults => ({
  write: (file, offset, data, real, tools) =>
    matches(only, file.path) ? tools.fired.pipe(Effect.andThen(Deferred.await(gate)), Effect.andThen(real(offset, data))) : real(offset, data)
})

/** Every read on a matching file waits for `gate` (fired when it starts waiting), then really reads. */
export const readsHeld = (gate: Deferred.Deferred<void>, only?: PathFilter): Faults => ({
  read: (file, _offset, _length, real, tools) =>
    matches(only, file.path) ? tools.fired.pipe(Effect.andThen(Deferred.await(gate)), Effect.andThen(real)) : real
})

/** Runs `action` (a change on the host: unlink, truncate) right after the `n`-th read of a matching file returned. */
export const afterRead = <E>(n: number, action: Effect.Effect<void, E>, only?: PathFilter): Faults => ({
  read: (file, _offset, _length, real, tools) =>
    matches(only, file.path) && file.reads === n
      ? real.pipe(Effect.tap(() => action.pipe(Effect.orDie, Effect.andThen(tools.fired))))
      : real
})

/** Not a fault: every write on a matching file really happens, then counts as fired (to wait for progress). */
export const writesObserved = (only?: PathFilter): Faults => ({
  write: (file, offset, data, real, tools) => (matches(only, file.path) ? real(offset, data).pipe(Effect.andThen(tools.fired)) : real(offset, data))
})

/** Not a fault: an upload written by the addon's thread counts as fired each time it reports bytes on a matching file. */
export const receivesObserved = (only?: PathFilter): Faults => ({
  receiveFrom: (file, onProgress, real, tools) =>
    real(matches(only, file.path) ? Effect.andThen(onProgress, tools.fired) : onProgress)
})

/** Not a fault: every read on a matching file really happens, then counts as fired (to wait for progress). */
export const readsObserved = (only?: PathFilter): Faults => ({
  read: (file, _offset, _length, real, tools) => (matches(only, file.path) ? real.pipe(Effect.tap(() => tools.fired)) : real)
})
