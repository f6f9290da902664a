/**
 * The Events service: what happened, for the application embedding the server.
 *
 * Two hubs: completed uploads and authentication events. Publishing never
 * blocks or slows a session: each subscriber has its own bounded buffer, and
 * when it is full the event is dropped for that subscriber only, counted, and
 * logged. A slow consumer therefore loses events instead of stalling transfers.
 */
import { Context, Data, type Effect, type Scope, type Stream } from "effect"
import type { Protocol } from "./Protocol.js"

/**
 * A file was written and closed cleanly. Never published for a failed,
 * interrupted or disconnected upload.
 * @category models
 */
export class UploadCompleted extends Data.TaggedClass("UploadCompleted")<{
  readonly protocol: Protocol
  readonly username: string
  /** The client's virtual path ("/incoming/a.csv"). */
  readonly path: string
  /** The host path of the file, for the application to pick it up. */
  readonly fullPath: string
  readonly clientIp: string
  /** Size in bytes when the file was closed. */
  readonly size: number
}> {}

/**
 * A login succeeded.
 * @category models
 */
export class LoginSucceeded extends Data.TaggedClass("LoginSucceeded")<{
  readonly protocol: Protocol
  readonly username: string
  readonly clientIp: string
  readonly method: "password" | "publickey"
}> {}

/**
 * A login attempt failed (one event per attempt).
 * @category models
 */
export class LoginFailed extends Data.TaggedClass("LoginFailed")<{
  readonly protocol: Protocol
  readonly username: string
  readonly clientIp: string
  readonly method: "password" | "publickey"
}> {}

/**
 * An authenticated session ended, for any reason.
 * @category models
 */
export class Logout extends Data.TaggedClass("Logout")<{
  readonly protocol: Protocol
  readonly username: string
  readonly clientIp: string
}> {}

/**
 * Authentication events.
 * @category models
 */
export type AuthEvent = LoginSucceeded | LoginFailed | Logout

/**
 * Events lost because a subscriber's buffer was full, per hub, since the start.
 * @category models
 */
export interface DroppedEvents {
  readonly uploads: number
  readonly auth: number
}

/**
 * Event hubs.
 * @category services
 */
export class Events extends Context.Service<Events, {
  /** Never blocks; see the module header for what happens when a subscriber lags. */
  publishUpload(event: UploadCompleted): Effect.Effect<void>
  publishAuth(event: AuthEvent): Effect.Effect<void>
  /**
   * Subscribes now (events published after this returns are delivered) and gives
   * the stream of them. The subscription ends with the scope, and the stream ends
   * when the server shuts down, after every buffered event was delivered.
   */
  readonly subscribeUploads: Effect.Effect<Stream.Stream<UploadCompleted>, never, Scope.Scope>
  readonly subscribeAuth: Effect.Effect<Stream.Stream<AuthEvent>, never, Scope.Scope>
  /** Like subscribeUploads, but subscribes when the stream starts running. */
  readonly uploads: Stream.Stream<UploadCompleted>
  readonly authEvents: Stream.Stream<AuthEvent>
  readonly dropped: Effect.Effect<DroppedEvents>
}>()("portcullis/services/Events") {}
