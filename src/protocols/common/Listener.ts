/**
 * What SFTP and FTP listeners share: binding the TCP listener, and turning an
 * accepted connection into a session once the ConnectionGuard admits it.
 */
import { Data, Effect, type Scope } from "effect"
import type * as net from "node:net"
import { type Address, formatAddress } from "../../config/Address.js"
import { ConnectionGuard, type RefusalReason } from "../../services/ConnectionGuard.js"
import { type SessionControl, Sessions, type StartOptions } from "../../services/Sessions.js"

/**
 * The listener could not bind its address.
 * @category errors
 */
export class ListenError extends Data.TaggedError("ListenError")<{
  readonly protocol: "sftp" | "ftp"
  readonly address: string
  readonly code: string
}> {
  override get message(): string {
    return `cannot listen on ${this.address} (${this.protocol}): ${this.code}`
  }
}

/**
 * Binds `server` to `address`; the result is the bound address (the real port for port 0).
 * @category constructors
 */
export const listen = (protocol: ListenError["protocol"], server: net.Server, address: Address) =>
  Effect.callback<Address, ListenError>((resume) => {
    const onError = (error: NodeJS.ErrnoException) =>
      resume(Effect.fail(new ListenError({ protocol, address: formatAddress(address), code: error.code ?? "EUNKNOWN" })))
    server.once("error", onError)
    server.listen(address.port, address.host, () => {
      server.off("error", onError)
      const bound = server.address()
      resume(Effect.succeed(typeof bound === "object" && bound ? { host: address.host, port: bound.port } : address))
    })
  })

/**
 * Runs one accepted connection. The ConnectionGuard is asked first: a refused
 * connection never becomes a session; `refuse` closes it (FTP says 421 first),
 * before any handshake work. An admitted one runs as a session that holds a
 * pre-authentication slot until it authenticates (`control.authenticated`) or
 * ends, whichever comes first, so authenticated sessions never count.
 * @category constructors
 */
export const serveConnection = <E, R>(
  socket: net.Socket,
  start: StartOptions,
  body: (control: SessionControl) => Effect.Effect<void, E, R>,
  refuse: (reason: RefusalReason) => void
): Effect.Effect<void, never, ConnectionGuard | Sessions | Exclude<R, Scope.Scope>> =>
  Effect.gen(function*() {
    const guard = yield* ConnectionGuard
    const sessions = yield* Sessions
    const admission = yield* guard.admit(start.clientIp)
    if (admission._tag === "Refused") {
      // A reset while the refusal is written must not become an unhandled 'error'.
      socket.on("error", () => {})
      return refuse(admission.reason)
    }
    const { slot } = admission
    const started = yield* sessions.start(start, (control) =>
      Effect.addFinalizer(() => slot.release).pipe(
        Effect.andThen(body({
          id: control.id,
          touch: control.touch,
          draining: control.draining,
          authenticated: (username) => Effect.andThen(control.authenticated(username), slot.release)
        }))
      ))
    if (!started) {
      yield* slot.release
      socket.destroy()
    }
  })
