/**
 * Positional reads and writes on one fd, gathered while the fd is busy.
 *
 * Every `node:fs` call is a round trip through libuv's thread pool, and on the
 * machines we measured, handing a request to a pool thread cost the event loop
 * 25 to 200 µs (the woken thread often preempts it): the largest single cost of
 * an SFTP download once the garbage collector was out of the way. An SFTP client
 * pipelines up to 64 requests of 256 KiB on one handle. Here the first request
 * goes to the kernel at once; the ones that arrive while a call runs wait for it,
 * then go together: each run of adjacent ranges as one preadv (pwritev) into
 * (from) the requests' own buffers. Nothing is copied, and no request waits
 * longer than the call in progress.
 *
 * Overlapping or non-adjacent ranges go in separate calls, issued together, so
 * their order is as undefined as it was with one call each. Appends are never
 * gathered: the kernel ignores positions on an O_APPEND fd.
 */
import * as fs from "node:fs"

/**
 * The gathered I/O of one fd, made by `make`.
 * @category models
 */
export interface GatheredIo {
  /** Reads up to `into.length` bytes at `offset` into `into`; resolves with the count (0 at the end of file). */
  read(offset: number, into: Uint8Array): Promise<number>
  /** Writes all of `data` at `offset`. */
  write(offset: number, data: Uint8Array): Promise<void>
}

interface Pending {
  readonly offset: number
  readonly buffer: Uint8Array
  readonly resolve: (bytes: number) => void
  readonly reject: (error: unknown) => void
}

/** Bytes and buffers of one gathered call at most. */
const maxRunBytes = 8 * 1024 * 1024
const maxRunBuffers = 64

/** Sorts by offset and cuts the queue into runs of adjacent ranges. */
const runsOf = (queue: ReadonlyArray<Pending>): ReadonlyArray<ReadonlyArray<Pending>> => {
  // One request alone on an idle fd, the usual case for small files: nothing to sort.
  if (queue.length === 1) return [queue]
  const sorted = [...queue].sort((a, b) => a.offset - b.offset)
  const runs: Array<Array<Pending>> = []
  let run: Array<Pending> = []
  let end = -1
  let bytes = 0
  for (const pending of sorted) {
    const adjacent = pending.offset === end && run.length < maxRunBuffers && bytes + pending.buffer.length <= maxRunBytes
    if (!adjacent && run.length > 0) {
      runs.push(run)
      run = []
      bytes = 0
    }
    run.push(pending)
    end = pending.offset + pending.buffer.length
    bytes += pending.buffer.length
  }
  if (run.length > 0) runs.push(run)
  return runs
}

/**
 * The two `node:fs` calls used; a test passes wrappers of the real ones to count them.
 * @category models
 */
export interface VectorIo {
  readonly readv: typeof fs.readv
  readonly writev: typeof fs.writev
}

/** Reads one run with preadv: the first requests get full buffers, a short read ends the later ones at EOF. */
const readRun = (sys: VectorIo, fd: number, run: ReadonlyArray<Pending>, done: () => void): void => {
  sys.readv(fd, run.map((p) => p.buffer), run[0]!.offset, (error, bytesRead) => {
    let rest = bytesRead
    for (const pending of run) {
      if (error) pending.reject(error)
      else {
        const bytes = Math.min(rest, pending.buffer.length)
        rest -= bytes
        pending.resolve(bytes)
      }
    }
    done()
  })
}

/** Writes one run with pwritev, continuing after a short write until every byte is written. */
const writeRun = (sys: VectorIo, fd: number, run: ReadonlyArray<Pending>, position: number | null, done: () => void): void => {
  const total = run.reduce((sum, p) => sum + p.buffer.length, 0)
  const step = (written: number): void => {
    if (written === total) {
      for (const pending of run) pending.resolve(pending.buffer.length)
      return done()
    }
    // The buffers from `written` on: whole ones after the first partly written one.
    const buffers: Array<Uint8Array> = []
    let skip = written
    for (const { buffer } of run) {
      if (skip >= buffer.length) skip -= buffer.length
      else {
        buffers.push(skip > 0 ? buffer.subarray(skip) : buffer)
        skip = 0
      }
    }
    sys.writev(fd, buffers, position === null ? null : position + written, (error, bytes) => {
      if (error) {
        for (const pending of run) pending.reject(error)
        return done()
      }
      step(written + bytes)
    })
  }
  step(0)
}

/**
 * Gathers the positional I/O of `fd`. With `append`, writes go one at a time
 * in arrival order, at the end of the file.
 * @category constructors
 */
export const make = (fd: number, options: { readonly append: boolean; readonly sys?: VectorIo }): GatheredIo => {
  const sys = options.sys ?? fs
  const lane = (issue: (run: ReadonlyArray<Pending>, done: () => void) => void, gather: boolean) => {
    let busy = false
    let queue: Array<Pending> = []
    const flush = (): void => {
      if (queue.length === 0) {
        busy = false
        return
      }
      busy = true
      const runs = gather ? runsOf(queue) : [queue.slice(0, 1)]
      queue = gather ? [] : queue.slice(1)
      let left = runs.length
      for (const run of runs) issue(run, () => void (--left === 0 && flush()))
    }
    return (offset: number, buffer: Uint8Array) =>
      new Promise<number>((resolve, reject) => {
        queue.push({ offset, buffer, resolve, reject })
        if (!busy) flush()
      })
  }
  const read = lane((run, done) => readRun(sys, fd, run, done), true)
  const write = lane((run, done) => writeRun(sys, fd, run, options.append ? null : run[0]!.offset, done), !options.append)
  return {
    read: (offset, into) => read(offset, into),
    write: (offset, data) => write(offset, data).then(() => undefined)
  }
}
