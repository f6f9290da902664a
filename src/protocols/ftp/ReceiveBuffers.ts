/**
 * What an upload's data socket receives, gathered into two reusable buffers:
 * the path of FTPS uploads (TLS runs in Node) and of jails without
 * `FileHandle.receiveFrom`; a plain upload is written by the addon's own thread
 * (DataChannel.receiveFile).
 *
 * Node hands a socket's bytes over in chunks of at most 64 KiB, each a fresh
 * allocation. Writing every chunk to the file meant four thread-pool round trips
 * per 256 KiB; concatenating them first doubled the allocations, and the garbage
 * collector then ran a full mark-compact every few dozen MiB. Here chunks are
 * copied into one of two fixed buffers while the other one is being written, so
 * the disk write of one batch overlaps the network reads of the next, and an
 * upload allocates nothing per chunk beyond what Node itself allocates.
 *
 * Memory is bounded: when both buffers are taken (one being written, one full)
 * the socket is paused, and TCP pushes back on the client.
 */
import { Effect } from "effect"
import type { Readable } from "node:stream"
import * as ReleaseMemory from "../common/ReleaseMemory.js"
import * as Waiter from "../common/Waiter.js"

/**
 * The next batch: `bytes` is a view of one of the two buffers, valid until the
 * following `next` call; empty at the end of the stream.
 * @category models
 */
export interface Batch {
  readonly bytes: Uint8Array
}

/**
 * The gathering side of one upload, made by `make`.
 * @category models
 */
export interface ReceiveBuffers {
  /**
   * Waits for bytes and returns all gathered so far (up to one buffer), or an
   * empty batch once the peer ended the stream. Fails with `onTruncated()` when
   * the socket closes before its end. A batch is returned at the latest when the
   * current burst of reads is over (setImmediate), so a slow client's bytes reach
   * the disk, and count as activity, as they arrive.
   */
  readonly next: <E>(onTruncated: () => E) => Effect.Effect<Batch, E>
  /** Stops listening to the socket. */
  readonly release: Effect.Effect<void>
}

/**
 * Starts gathering from `socket` (switching it to flowing mode) into two
 * buffers of `size` bytes.
 * @category constructors
 */
export const make = (socket: Readable, size: number): ReceiveBuffers => {
  const buffers = [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)] as const
  let current = 0
  let filled = 0
  let carry: Buffer | undefined
  let ended = socket.readableEnded
  let truncated = !ended && socket.destroyed
  const waiter = Waiter.make()
  let flushScheduled = false

  const copyIn = (chunk: Buffer): void => {
    const buffer = buffers[current]!
    const room = buffer.length - filled
    if (chunk.length <= room) {
      chunk.copy(buffer, filled)
      filled += chunk.length
    } else {
      chunk.copy(buffer, filled, 0, room)
      filled += room
      carry = chunk.subarray(room)
      socket.pause()
    }
  }
  const wake = () => {
    flushScheduled = false
    waiter.wake()
  }
  const onData = (chunk: Buffer) => {
    // Paused with a carry, a chunk Node had already read may still be emitted: keep it after the carry.
    if (carry) {
      carry = Buffer.concat([carry, chunk])
      return
    }
    copyIn(chunk)
    // Copied: its memory goes back now rather than at the next full GC (ReleaseMemory).
    if (carry === undefined) ReleaseMemory.release(chunk)
    if (filled === buffers[current]!.length) {
      socket.pause()
      waiter.wake()
    } else if (waiter.waiting() && !flushScheduled) {
      flushScheduled = true
      setImmediate(wake)
    }
  }
  const onEnd = () => {
    ended = true
    waiter.wake()
  }
  // A close after the end is the normal case; before it, the upload is incomplete.
  const onClose = () => {
    if (!ended) truncated = true
    waiter.wake()
  }
  socket.on("data", onData)
  socket.once("end", onEnd)
  socket.once("close", onClose)
  // A listener alone does not restart a socket that was paused explicitly (pauseOnConnect).
  socket.resume()

  /** Hands over the gathered bytes and switches to the other buffer. */
  const take = (): Batch => {
    const bytes = buffers[current]!.subarray(0, filled)
    current = 1 - current
    filled = 0
    if (carry) {
      const rest = carry
      carry = undefined
      copyIn(rest)
    }
    if (!carry) socket.resume()
    return { bytes }
  }

  const next = <E>(onTruncated: () => E): Effect.Effect<Batch, E> =>
    waiter.next<Batch, E>(() =>
      filled > 0
        ? Effect.succeed(take())
        : ended
        ? Effect.succeed({ bytes: new Uint8Array(0) })
        : truncated
        ? Effect.fail(onTruncated())
        : undefined
    )

  const release = Effect.sync(() => {
    waiter.clear()
    socket.off("data", onData)
    socket.off("end", onEnd)
    socket.off("close", onClose)
  })

  return { next, release }
}
