/**
 * The Sessions service: every accepted connection, as a fiber the server owns.
 *
 * A listener hands each accepted connection to `start`, which forks the
 * protocol's session body into a set owned by the server's scope and watches it
 * with the Clock: a session that has not authenticated within the handshake
 * timeout, or that stays inactive for the idle timeout, is ended. Because both
 * deadlines are Clock sleeps, tests prove them with TestClock, without waiting.
 *
 * `close` stops accepting and lets sessions run on; `shutdown(deadline)` stops
 * accepting, asks sessions to finish, waits, and interrupts whatever is left at
 * the deadline. Interruption runs each session's finalizers (files closed,
 * partial uploads never announced).
 */
import { Context, Data, type Duration, type Effect, type Scope } from "effect"
import type { Protocol } from "./Protocol.js"

/**
 * A live session, as listed.
 * @category models
 */
export interface SessionInfo {
  readonly id: number
  readonly protocol: Protocol
  readonly clientIp: string
  /** Set once the session authenticated. */
  readonly username: string | undefined
  readonly startedAtMs: number
}

/**
 * What a running session body can tell the server, and hear from it.
 * @category models
 */
export interface SessionControl {
  readonly id: number
  /** Records activity (a request, a command, transferred bytes): the idle timer restarts. */
  readonly touch: Effect.Effect<void>
  /** Ends the handshake phase: from now on the idle timeout applies. */
  authenticated(username: string): Effect.Effect<void>
  /** Completes when shutdown asks sessions to finish: leave after the current request. */
  readonly draining: Effect.Effect<void>
}

/**
 * Why the server ended a session on its own.
 * @category errors
 */
export class SessionTimeout extends Data.TaggedError("SessionTimeout")<{
  readonly kind: "Handshake" | "Idle"
}> {}

/**
 * Options of `start`.
 * @category models
 */
export interface StartOptions {
  readonly protocol: Protocol
  readonly clientIp: string
  /** Overrides the server's handshake timeout for this session (SFTP has its own). */
  readonly handshakeTimeout?: Duration.Input
  /**
   * Runs after the body was interrupted by a timeout, before the session's scope
   * closes: the place for FTP's "421" line. Should be short; its failure is ignored.
   */
  readonly onTimeout?: (timeout: SessionTimeout) => Effect.Effect<void>
}

/**
 * Live sessions of one server.
 * @category services
 */
export class Sessions extends Context.Service<Sessions, {
  /**
   * Forks `body` as a new session. Returns false without running it when the
   * server no longer accepts connections; the caller then closes the socket.
   * Whatever the body fails with is logged at the end of the session. The body runs
   * in its own scope, closed when the session ends: the place for its socket.
   */
  start<E, R>(
    options: StartOptions,
    body: (control: SessionControl) => Effect.Effect<void, E, R>
  ): Effect.Effect<boolean, never, Exclude<R, Scope.Scope>>
  readonly list: Effect.Effect<ReadonlyArray<SessionInfo>>
  /** Interrupts every session of `username`; returns how many. */
  endUser(username: string): Effect.Effect<number>
  /** Whether new connections are accepted. */
  readonly accepting: Effect.Effect<boolean>
  /** Completes when the server stops accepting; listeners close their sockets then. */
  readonly stopped: Effect.Effect<void>
  /** Stops accepting; live sessions run on until they end. */
  readonly close: Effect.Effect<void>
  /**
   * Stops accepting, signals `draining`, waits for sessions to end, and interrupts
   * the rest once `deadline` has passed. Returns how many had to be interrupted.
   */
  shutdown(deadline: Duration.Input): Effect.Effect<{ readonly forced: number }>
  /** Completes when no session is left. */
  readonly awaitEmpty: Effect.Effect<void>
}>()("portcullis/services/Sessions") {}
