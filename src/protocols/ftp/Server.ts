/**
 * The FTP listeners: explicit FTPS (AUTH TLS) on `address`, and implicit FTPS
 * (TLS from the first byte) on `implicitTlsAddress` when configured. Each
 * accepted connection runs as a session fiber of the Sessions service, like SFTP.
 *
 * Every control connection gets its own TLS options (its own session-ticket
 * keys): its data connections must resume a TLS session issued on that same
 * control connection, so a session obtained on another control connection, or
 * none, cannot attach to the data port (RFC 4217 §10.2, passive port stealing).
 *
 * The ConnectionGuard decides at accept whether a connection is served at all
 * (caps on unauthenticated connections, bans): a refused one gets one 421 line
 * and is closed (on the implicit port it is closed before the TLS handshake).
 */
import { Context, Duration, Effect, FiberSet, Layer, type Scope } from "effect"
import * as net from "node:net"
import * as tls from "node:tls"
import type { Address } from "../../config/Address.js"
import type { ConnectionGuard, RefusalReason } from "../../services/ConnectionGuard.js"
import type { Events } from "../../services/Events.js"
import type { Jail } from "../../services/Jail.js"
import { type SessionControl, Sessions } from "../../services/Sessions.js"
import type { UserRegistry } from "../../services/UserRegistry.js"
import type * as Access from "../common/Access.js"
import { listen, type ListenError, serveConnection } from "../common/Listener.js"
import { type ControlChannel, make as makeControlChannel } from "./ControlChannel.js"
import { makeControlTlsOptions } from "./DataChannel.js"
import { makePassivePortPool } from "./PassivePorts.js"
import { formatReply, replyForRefusedConnection } from "./Replies.js"
import { serve } from "./Session.js"

/**
 * What the FTP listeners need.
 * @category models
 */
export interface FtpOptions {
  readonly address: Address
  readonly implicitTlsAddress: Address | undefined
  /** PEM certificate (chain) and key; without them AUTH TLS is not offered. */
  readonly tls: { readonly cert: Buffer; readonly key: Buffer } | undefined
  readonly passivePorts: string
  readonly passiveAddress: string | undefined
  readonly dataAcceptTimeout: Duration.Input
  readonly allowActiveMode: boolean
  readonly requireTls: boolean
  readonly requireSessionReuse: boolean
  readonly policy: Access.AccessPolicy
  readonly tempExtensions: ReadonlyArray<string>
  /** Failed PASS per connection before it is closed. Default 3. */
  readonly maxLoginAttempts?: number
  /** From accept until logged in. Default "1 minute". */
  readonly loginTimeout?: Duration.Input
}

/**
 * Running FTP listeners.
 * @category services
 */
export class FtpServer extends Context.Service<FtpServer, {
  readonly address: Address
  readonly implicitTlsAddress: Address | undefined
  /** Uses a new certificate and key for connections from now on; live ones keep theirs (SIGHUP). */
  reloadTls(pair: { readonly cert: Buffer; readonly key: Buffer }): Effect.Effect<void>
}>()("portcullis/protocols/ftp/FtpServer") {}

type Services = Sessions | UserRegistry | Events | Jail | ConnectionGuard

/** Longest command line, in bytes (ironport's limit). */
const maxLineBytes = 4096

/** The 421 line a connection refused at accept reads before the close. */
const refusedLine = (reason: RefusalReason) => {
  const { code, text } = replyForRefusedConnection(reason)
  return formatReply(code, text)
}

/** Completes the TLS handshake of an implicit-FTPS connection. */
const secure = (socket: net.Socket, options: tls.TLSSocketOptions) =>
  Effect.callback<tls.TLSSocket, Error>((resume) => {
    const wrapped = new tls.TLSSocket(socket, { ...options, isServer: true })
    wrapped.once("secure", () => resume(Effect.succeed(wrapped)))
    wrapped.once("error", (error) => resume(Effect.fail(error)))
  })

/**
 * Builds the listeners; they stop accepting when Sessions stops.
 * @category constructors
 */
export const make = (options: FtpOptions): Effect.Effect<FtpServer["Service"], ListenError, Services | Scope.Scope> =>
  Effect.gen(function*() {
    const sessions = yield* Sessions
    const context = yield* Effect.context<Services>()
    const passivePorts = makePassivePortPool(options.passivePorts)
    let currentTls = options.tls
    const tlsOptions = currentTls ? () => makeControlTlsOptions({ cert: currentTls!.cert, key: currentTls!.key }) : undefined
    const sessionOptions = {
      policy: options.policy,
      tempExtensions: options.tempExtensions,
      requireTls: options.requireTls,
      requireSessionReuse: options.requireSessionReuse,
      allowActiveMode: options.allowActiveMode,
      passiveAddress: options.passiveAddress,
      passivePorts,
      dataAcceptTimeout: options.dataAcceptTimeout,
      tlsOptions,
      maxLoginAttempts: options.maxLoginAttempts ?? 3
    }
    if (!options.requireSessionReuse && options.tls) {
      yield* Effect.logWarning("ftp.requireSessionReuse is off: TLS data connections are not bound to their control connection")
    }

    /** One control connection; `holder` lets the idle-timeout hook answer 421 on it. */
    const connection = (socket: net.Socket, implicit: boolean, holder: { control?: ControlChannel }) => (session: SessionControl) =>
      Effect.gen(function*() {
        yield* Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
        // Socket errors end the session through its close event; unhandled they would crash the process.
        socket.on("error", () => {})
        const controlTls = implicit && tlsOptions ? tlsOptions() : undefined
        const controlSocket = controlTls ? yield* secure(socket, controlTls) : socket
        const control = yield* makeControlChannel(controlSocket, { maxLineBytes })
        holder.control = control
        yield* serve(control, session, sessionOptions, controlTls)
      })

    const runSession = yield* FiberSet.makeRuntime<Services>()
    const accept = (implicit: boolean) => (socket: net.Socket) => {
      socket.setNoDelay(true)
      const holder: { control?: ControlChannel } = {}
      runSession(
        serveConnection(
          socket,
          {
            protocol: "ftp",
            clientIp: (socket.remoteAddress ?? "unknown").replace(/^::ffff:/, ""),
            handshakeTimeout: options.loginTimeout ?? Duration.minutes(1),
            onTimeout: () => (holder.control ? holder.control.sendNow(421, "Timeout: closing control connection") : Effect.void)
          },
          connection(socket, implicit, holder),
          // The implicit port speaks TLS from the first byte: no clear-text line there, and no handshake work.
          (reason) => (implicit ? socket.destroy() : socket.end(refusedLine(reason), () => socket.destroy()))
        ).pipe(Effect.provide(context))
      )
    }

    const explicit = net.createServer(accept(false))
    const address = yield* Effect.acquireRelease(listen("ftp", explicit, options.address), () => Effect.sync(() => explicit.close()))
    let implicitTlsAddress: Address | undefined
    if (options.implicitTlsAddress) {
      const implicit = net.createServer(accept(true))
      implicitTlsAddress = yield* Effect.acquireRelease(listen("ftp", implicit, options.implicitTlsAddress), () => Effect.sync(() => implicit.close()))
      yield* Effect.forkScoped(sessions.stopped.pipe(Effect.andThen(Effect.sync(() => implicit.close()))))
    }
    yield* Effect.forkScoped(sessions.stopped.pipe(Effect.andThen(Effect.sync(() => explicit.close()))))
    return FtpServer.of({
      address,
      implicitTlsAddress,
      reloadTls: (pair) => Effect.sync(() => void (currentTls = pair))
    })
  })

/**
 * The FTP listeners as a layer.
 * @category layers
 */
export const layer = (options: FtpOptions): Layer.Layer<FtpServer, ListenError, Services> => Layer.effect(FtpServer, make(options))
