/**
 * The Sessions service on a FiberSet owned by the server's scope.
 *
 * Each session is its body raced against a watchdog fiber. The watchdog sleeps
 * on the Clock until the current deadline (handshake: fixed from the start;
 * idle: last activity + idle timeout), re-checks, and fails the race with
 * `SessionTimeout` once the deadline has really passed. No polling sweep and no
 * `Date.now`: TestClock drives every deadline in tests.
 *
 * When the layer's scope closes, the FiberSet interrupts every session.
 */
import { Clock, Deferred, Duration, Effect, Exit, Fiber, FiberSet, Layer, Option } from "effect"
import {
  type SessionControl,
  type SessionInfo,
  Sessions,
  SessionTimeout,
  type StartOptions
} from "../services/Sessions.js"

/**
 * Timeouts of every session. A zero duration disables that timeout. They cannot
 * change while the server runs.
 * @category models
 */
export interface SessionsOptions {
  /** From accept until authenticated. Default "30 seconds". */
  readonly handshakeTimeout?: Duration.Input
  /** Longest time without activity once authenticated. Default "15 minutes". */
  readonly idleTimeout?: Duration.Input
}

interface Live {
  info: SessionInfo
  fiber: Fiber.Fiber<void> | undefined
}

/**
 * Builds the Sessions service in the current scope.
 * @category constructors
 */
export const make = (options: SessionsOptions = {}) =>
  Effect.gen(function*() {
    const defaultHandshakeMs = Duration.toMillis(options.handshakeTimeout ?? "30 seconds")
    const idleMs = Duration.toMillis(options.idleTimeout ?? "15 minutes")
    const set = yield* FiberSet.make<void, never>()
    const stopped = yield* Deferred.make<void>()
    const drain = yield* Deferred.make<void>()
    const live = new Map<number, Live>()
    let nextId = 1

    const watchdog = (
      handshakeMs: number,
      startedAt: number,
      state: { lastActivity: number; authenticated: boolean },
      authenticated: Deferred.Deferred<void>
    ) =>
      Effect.gen(function*() {
        while (true) {
          const now = yield* Clock.currentTimeMillis
          if (!state.authenticated) {
            if (handshakeMs <= 0) {
              yield* Deferred.await(authenticated)
              continue
            }
            const deadline = startedAt + handshakeMs
            if (now >= deadline) return new SessionTimeout({ kind: "Handshake" })
            // Wake early on login: the idle deadline may come before the handshake one.
            yield* Effect.raceFirst(Effect.sleep(deadline - now), Deferred.await(authenticated))
            continue
          }
          if (idleMs <= 0) return yield* Effect.never
          const deadline = state.lastActivity + idleMs
          if (now >= deadline) return new SessionTimeout({ kind: "Idle" })
          yield* Effect.sleep(deadline - now)
        }
      })

    const start = <E, R>(start: StartOptions, body: (control: SessionControl) => Effect.Effect<void, E, R>) =>
      Effect.gen(function*() {
        if (Deferred.isDoneUnsafe(stopped)) return false
        const id = nextId++
        const startedAt = yield* Clock.currentTimeMillis
        const state = { lastActivity: startedAt, authenticated: false }
        const authenticated = yield* Deferred.make<void>()
        const entry: Live = {
          info: { id, protocol: start.protocol, clientIp: start.clientIp, username: undefined, startedAtMs: startedAt },
          fiber: undefined
        }
        const control: SessionControl = {
          id,
          touch: Clock.currentTimeMillis.pipe(Effect.map((now) => void (state.lastActivity = now))),
          authenticated: (username) =>
            Effect.gen(function*() {
              state.lastActivity = yield* Clock.currentTimeMillis
              state.authenticated = true
              entry.info = { ...entry.info, username }
              yield* Deferred.succeed(authenticated, undefined)
            }),
          draining: Deferred.await(drain)
        }
        const ended = Effect.exit(Effect.scoped(body(control))).pipe(Effect.map((exit) => ({ _tag: "Ended" as const, exit })))
        // The timeout hook runs while the body is still alive (its socket still open),
        // then the body is interrupted and its scope closes.
        const timedOut = watchdog(
          start.handshakeTimeout === undefined ? defaultHandshakeMs : Duration.toMillis(start.handshakeTimeout),
          startedAt,
          state,
          authenticated
        ).pipe(
          Effect.tap((timeout) =>
            Effect.logInfo(`session timed out (${timeout.kind})`).pipe(
              Effect.andThen(start.onTimeout ? start.onTimeout(timeout) : Effect.void),
              Effect.catchCause(() => Effect.void)
            )
          )
        )
        const session = Effect.raceFirst(ended, timedOut).pipe(
          Effect.flatMap((outcome) => {
            if (outcome._tag === "SessionTimeout") return Effect.void
            return Exit.isFailure(outcome.exit) && !Exit.hasInterrupts(outcome.exit)
              ? Effect.logDebug("session ended with an error", outcome.exit.cause)
              : Effect.void
          }),
          // A session's own failures end that session only; the set never sees them.
          Effect.catchCause((cause) => Effect.logError("session defect", cause)),
          Effect.ensuring(Effect.sync(() => live.delete(id))),
          Effect.annotateLogs({ session: id, protocol: start.protocol, clientIp: start.clientIp })
        )
        live.set(id, entry)
        entry.fiber = yield* FiberSet.run(set, session)
        return true
      })

    const stopAccepting = Deferred.succeed(stopped, undefined)

    const shutdown = (deadline: Duration.Input) =>
      Effect.gen(function*() {
        yield* stopAccepting
        yield* Deferred.succeed(drain, undefined)
        const drained = yield* FiberSet.awaitEmpty(set).pipe(Effect.timeoutOption(deadline))
        if (Option.isSome(drained)) return { forced: 0 }
        const forced = yield* FiberSet.size(set)
        yield* FiberSet.clear(set)
        return { forced }
      })

    yield* Effect.addFinalizer(() => stopAccepting)

    return Sessions.of({
      start,
      list: Effect.sync(() => Array.from(live.values(), (l) => l.info)),
      endUser: (username) =>
        Effect.gen(function*() {
          const fibers = Array.from(live.values()).filter((l) => l.info.username === username).flatMap((l) => l.fiber ? [l.fiber] : [])
          yield* Effect.forEach(fibers, Fiber.interrupt, { discard: true, concurrency: "unbounded" })
          return fibers.length
        }),
      accepting: Effect.sync(() => !Deferred.isDoneUnsafe(stopped)),
      stopped: Deferred.await(stopped),
      close: stopAccepting.pipe(Effect.asVoid),
      shutdown,
      awaitEmpty: FiberSet.awaitEmpty(set)
    })
  })

/**
 * The Sessions service; closing the layer's scope interrupts every session.
 * @category layers
 */
export const layer = (options: SessionsOptions = {}): Layer.Layer<Sessions> => Layer.effect(Sessions, make(options))
