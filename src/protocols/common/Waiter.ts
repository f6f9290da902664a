/**
 * One loop waiting for what a stream's event handlers gather.
 *
 * ChannelChunks (SFTP channels) and ReceiveBuffers (FTP uploads) collect what a
 * stream emits and hand it over when their loop asks. The loop calls
 * `next(attempt)`: `attempt` returns the outcome when there is one and
 * undefined while there is none; the event handlers call `wake()` when
 * something changed, and the attempt runs again. An interrupted `next` stops
 * waiting.
 */
import { Effect } from "effect"

/**
 * The waiting side of one consumer, made by `make`.
 * @category models
 */
export interface Waiter {
  /** Whether a `next` is waiting. */
  readonly waiting: () => boolean
  /** Runs the waiting `next`'s attempt again, if one waits. */
  readonly wake: () => void
  /** Waits until `attempt` gives an outcome; an attempt must change nothing when it gives none. */
  readonly next: <A, E>(attempt: () => Effect.Effect<A, E> | undefined) => Effect.Effect<A, E>
  /** Forgets a waiting `next`, which then never resumes. */
  readonly clear: () => void
}

/**
 * A waiter with nobody waiting yet.
 * @category constructors
 */
export const make = (): Waiter => {
  let waiter: (() => void) | undefined
  return {
    waiting: () => waiter !== undefined,
    wake: () => waiter?.(),
    next: <A, E>(attempt: () => Effect.Effect<A, E> | undefined) =>
      Effect.callback<A, E>((resume) => {
        const settle = (): boolean => {
          const outcome = attempt()
          if (outcome === undefined) return false
          waiter = undefined
          resume(outcome)
          return true
        }
        if (settle()) return
        waiter = () => void settle()
        return Effect.sync(() => {
          waiter = undefined
        })
      }),
    clear: () => {
      waiter = undefined
    }
  }
}
