/**
 * The bytes of an SSH channel, taken by the session loop in batches.
 *
 * The channel is read in flowing mode: every chunk ssh2 pushes is appended to
 * the current batch, and the loop is woken once per burst (a microtask after
 * the first chunk), so the SSH packets decrypted from one socket read are taken
 * together. While the loop does not take them (its request budget is spent),
 * the batch grows to `maxBatchBytes` and then the channel is paused: ssh2's
 * stream buffer fills and it stops granting window, which stops the client.
 *
 * An idle channel costs four listeners and one pending callback; an async
 * iterator over the stream, which this replaces, kept a generator, promises and
 * a Stream pull loop alive for every idle session.
 */
import { Effect } from "effect"
import type { Readable } from "node:stream"
import * as Waiter from "../common/Waiter.js"

/**
 * Reading side of one channel, made by `make`.
 * @category models
 */
export interface ChannelChunks<E> {
  /**
   * The chunks received since the last call, at least one; an empty array once
   * the channel ended cleanly. Fails with `onBroken()` when the channel closed
   * or failed before its end.
   */
  readonly next: Effect.Effect<ReadonlyArray<Buffer>, E>
  /** Stops listening to the channel's data. */
  readonly release: Effect.Effect<void>
}

/**
 * Starts reading `channel` (switching it to flowing mode).
 * @category constructors
 */
export const make = <E>(channel: Readable, maxBatchBytes: number, onBroken: () => E): ChannelChunks<E> => {
  let batch: Array<Buffer> = []
  let batchBytes = 0
  let ended = false
  let broken = false
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
    batch.push(chunk)
    batchBytes += chunk.length
    if (batchBytes >= maxBatchBytes) channel.pause()
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
