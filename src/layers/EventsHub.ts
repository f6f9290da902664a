/**
 * The Events service on one dropping queue per subscriber.
 *
 * A shared bounded PubSub would let the slowest subscriber decide for everyone
 * (either block publishers or drop for all). Here each subscriber owns a queue
 * of `capacity` events: publishing offers to each queue without waiting, and a
 * full queue loses that one event, which is counted. The first loss of a
 * subscriber and then every tenfold count (1, 10, 100, …) is logged, so a lagging
 * consumer is visible without a log line per lost event.
 *
 * When the layer's scope closes, every queue is ended (not shut down), so
 * subscribers still receive what was buffered and their streams then finish.
 */
import { Cause, Effect, Layer, Queue, type Scope, Stream } from "effect"
import { type AuthEvent, type DroppedEvents, Events, type UploadCompleted } from "../services/Events.js"

/**
 * Buffer sizes, per subscriber. They cannot change while running.
 * @category models
 */
export interface EventsOptions {
  /** Upload events buffered per subscriber. Default 1024. Must be at least 1. */
  readonly uploadCapacity?: number
  /** Auth events buffered per subscriber. Default 1024. Must be at least 1. */
  readonly authCapacity?: number
}

interface Hub<A> {
  readonly publish: (event: A) => Effect.Effect<void>
  readonly subscribe: Effect.Effect<Stream.Stream<A>, never, Scope.Scope>
  readonly dropped: () => number
  readonly end: Effect.Effect<void>
}

const makeHub = <A>(name: string, capacity: number): Hub<A> => {
  const subscribers = new Set<{ queue: Queue.Queue<A, Cause.Done>; dropped: number }>()
  let dropped = 0
  let ended = false
  const publish = (event: A) =>
    Effect.suspend(() => {
      const lagging: Array<number> = []
      for (const subscriber of subscribers) {
        if (Queue.offerUnsafe(subscriber.queue, event)) continue
        subscriber.dropped++
        dropped++
        if (Number.isInteger(Math.log10(subscriber.dropped))) lagging.push(subscriber.dropped)
      }
      return Effect.forEach(
        lagging,
        (count) => Effect.logWarning(`an ${name} subscriber is not keeping up: ${count} events dropped for it`),
        { discard: true }
      )
    })
  const subscribe = Effect.acquireRelease(
    Effect.gen(function*() {
      const subscriber = { queue: yield* Queue.dropping<A, Cause.Done>(capacity), dropped: 0 }
      if (ended) yield* Queue.end(subscriber.queue)
      else subscribers.add(subscriber)
      return subscriber
    }),
    // Ending (not shutting down) the queue lets the stream deliver what is buffered, then finish.
    (subscriber) => Effect.sync(() => subscribers.delete(subscriber)).pipe(Effect.andThen(Queue.end(subscriber.queue)))
  ).pipe(Effect.map((subscriber) => Stream.fromQueue(subscriber.queue)))
  const end = Effect.suspend(() => {
    ended = true
    return Effect.forEach(subscribers, (s) => Queue.end(s.queue), { discard: true })
  })
  return { publish, subscribe, dropped: () => dropped, end }
}

/**
 * Builds the Events service in the current scope.
 * @category constructors
 */
export const make = (options: EventsOptions = {}) =>
  Effect.gen(function*() {
    const uploads = makeHub<UploadCompleted>("upload event", Math.max(1, options.uploadCapacity ?? 1024))
    const auth = makeHub<AuthEvent>("auth event", Math.max(1, options.authCapacity ?? 1024))
    yield* Effect.addFinalizer(() => Effect.andThen(uploads.end, auth.end))
    return Events.of({
      publishUpload: uploads.publish,
      publishAuth: auth.publish,
      subscribeUploads: uploads.subscribe,
      subscribeAuth: auth.subscribe,
      uploads: Stream.unwrap(uploads.subscribe),
      authEvents: Stream.unwrap(auth.subscribe),
      dropped: Effect.sync((): DroppedEvents => ({ uploads: uploads.dropped(), auth: auth.dropped() }))
    })
  })

/**
 * The Events service with per-subscriber dropping buffers.
 * @category layers
 */
export const layer = (options: EventsOptions = {}): Layer.Layer<Events> => Layer.effect(Events, make(options))
