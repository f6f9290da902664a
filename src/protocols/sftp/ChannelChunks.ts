/**
 * The bytes of an SSH channel, framed as they arrive and taken by the session
 * loop in batches.
 *
 * The channel is read in flowing mode: every chunk ssh2 pushes is framed at
 * once, synchronously (the SFTP packet reader copies it into the packets'
 * own buffers), and what it completes is appended to the current batch. So a
 * chunk, a view into the SSH connection's socket read, is done with before
 * ssh2 goes on parsing, and the connection can free that read (InboundBuffers;
 * `onFramed` tells it). The loop is woken once per burst (a microtask after
 * the first chunk), so the packets decrypted from one socket read are taken
 * together. While the loop does not take them (its request budget is spent),
 * the batch grows to `maxBatchBytes` and then the channel is paused: ssh2's
 * stream buffer fills and it stops granting window, which stops the client.
 *
 * An idle channel costs four listeners and one pending callback; an async
 * iterator over the stream, which this replaces, kept a generator, promises and
 * a Stream pull loop alive for every idle session.
 */
import { Effect, Result } from "effect"
import type { Readable } from "node:stream"
import * as Waiter from "../common/Waiter.js"

/**
 * Reading side of one channel, made by `make`.
 * @category models
 */
export interface ChannelChunks<E> {
  /**
   * The items framed since the last call, at least one; an empty array once
   * the channel ended cleanly. Fails with `onBroken()` when the channel closed
   * or failed before its end, and with the framing error once `frame` failed
   * (after the items framed before it).
   */
  readonly next: Effect.Effect<ReadonlyArray<Buffer>, E>
  /** Stops listening to the channel's data. */
  readonly release: Effect.Effect<void>
}

/**
 * How `make` reads a channel.
 * @category models
 */
export interface ChannelChunksOptions<E> {
  /** Framed bytes gathered while the loop is busy before the channel is paused. */
  readonly maxBatchBytes: number
  /**
   * Turns a chunk into the items it completes. Runs synchronously when the
   * chunk arrives and must not keep the chunk: it is not used afterwards.
   */
  readonly frame: (chunk: Buffer) => Result.Result<ReadonlyArray<Buffer>, E>
  /** The error when the channel closes or fails before its end. */
  readonly onBroken: () => E
  /** Told about each chunk once it has been framed. */
  readonly onFramed?: (chunk: Buffer) => void
}

/**
 * Starts reading `channel` (switching it to flowing mode).
 * @category constructors
 */
export const make = <E>(channel: Readable, options: ChannelChunksOptions<E>): ChannelChunks<E> => {
  const { frame, maxBatchBytes, onBroken, onFramed } = options
  let batch: Array<Buffer> = []
  let batchBytes = 0
  let ended = false
  let broken = false
  let failure: Result.Failure<ReadonlyArray<Buffer>, E> | undefined
  const waiter = Waiter.make()
  let wakeScheduled = false

  const wake = () => {
    wakeScheduled = false
    waiter.wake()
  }
  const scheduleWake = () => {
    if (waiter.waiting() && !wakeScheduled) {
      wakeScheduled = true
      queueMicrotask(wake)
    }
  }
  const onData = (chunk: Buffer) => {
    if (failure !== undefined) return
    const framed = frame(chunk)
    onFramed?.(chunk)
    if (Result.isFailure(framed)) {
      failure = framed
      channel.pause()
    } else if (framed.success.length > 0) {
      for (const item of framed.success) {
        batch.push(item)
        batchBytes += item.length
      }
      if (batchBytes >= maxBatchBytes) channel.pause()
    } else return
    scheduleWake()
  }
  const onEnd = () => {
    ended = true
    scheduleWake()
  }
  // A close after the end is the normal case; before it (or an error), the channel is broken.
  const onBroken_ = () => {
    if (!ended) broken = true
    scheduleWake()
  }
  channel.on("data", onData)
  channel.once("end", onEnd)
  channel.once("close", onBroken_)
  // Stays after release: a late error without a listener would be an uncaught exception.
  channel.on("error", onBroken_)

  const take = (): ReadonlyArray<Buffer> => {
    const taken = batch
    batch = []
    batchBytes = 0
    if (channel.isPaused()) channel.resume()
    return taken
  }
  const next = waiter.next<ReadonlyArray<Buffer>, E>(() =>
    batch.length > 0
      ? Effect.succeed(take())
      : failure !== undefined
      ? Effect.fail(failure.failure)
      : ended
      ? Effect.succeed([])
      : broken
      ? Effect.fail(onBroken())
      : undefined
  )

  const release = Effect.sync(() => {
    waiter.clear()
    channel.off("data", onData)
    channel.off("end", onEnd)
    channel.off("close", onBroken_)
  })

  return { next, release }
}
