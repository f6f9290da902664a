/**
 * The SFTP listener: accepts TCP connections, runs each as a session fiber, and
 * lets ssh2 carry the SSH transport and authentication of that connection.
 *
 * The listener owns the accept loop (node:net) and hands each socket to ssh2 with
 * `Server.injectSocket`, so the session fiber owns the socket: when the session
 * ends (client gone, timeout, shutdown, user removed) its scope destroys it.
 *
 * Authentication goes through UserRegistry only. A public key is accepted only
 * once its signature verified here: a "query" (no signature) is answered with
 * "this key would do" and never authorises anything (the CVE-2024-45337 class).
 * At most `maxAuthAttempts` rejected attempts per connection, then it is closed,
 * and at most `maxSessionsPerConnection` session channels open at once.
 * The ConnectionGuard decides at accept whether a connection is served at all
 * (caps on unauthenticated connections, bans); a refused one is closed before
 * the SSH identification line. Every rejected credential counts toward a ban of
 * the client's IP, and a banned client's attempts are refused unchecked.
 * Only the "sftp" subsystem is served: shell, exec, pty, env, X11, agent and
 * port forwarding requests have no handler, and ssh2 refuses them.
 */
import { Context, Deferred, type Duration, Effect, FiberSet, Layer, type Scope } from "effect"
import * as net from "node:net"
import ssh2 from "ssh2"
import type { Address } from "../../config/Address.js"
import { ConnectionGuard } from "../../services/ConnectionGuard.js"
import { Events, LoginFailed, LoginSucceeded, Logout } from "../../services/Events.js"
import { Jail, type JailHandle } from "../../services/Jail.js"
import type { Principal } from "../../services/Principal.js"
import { type SessionControl, Sessions } from "../../services/Sessions.js"
import { type Credentials, UserRegistry } from "../../services/UserRegistry.js"
import * as Access from "../common/Access.js"
import { listen, ListenError, serveConnection } from "../common/Listener.js"
import { releaseWritten } from "../common/ReleaseMemory.js"

export { ListenError } from "../common/Listener.js"
import { type AlgorithmKind, effective } from "./Algorithms.js"
import * as InboundBuffers from "./InboundBuffers.js"
import * as PacketMemory from "./PacketMemory.js"
import * as PaddingPool from "./PaddingPool.js"
import { serveChannel, type SftpLimits } from "./Session.js"

/**
 * What the SFTP listener needs to run.
 * @category models
 */
export interface SftpOptions {
  readonly address: Address
  /** Private host keys, PEM or OpenSSH format. At least one. */
  readonly hostKeys: ReadonlyArray<string | Buffer>
  /** Pinned algorithm lists; an empty list means the defaults of Algorithms.ts. */
  readonly algorithms: Readonly<Record<AlgorithmKind, ReadonlyArray<string>>>
  readonly handshakeTimeout: Duration.Input
  readonly policy: Access.AccessPolicy
  /** Uploads to these suffixes are announced only when renamed to a final name. */
  readonly tempExtensions: ReadonlyArray<string>
  /** Rejected authentication attempts per connection before it is closed. Default 6. */
  readonly maxAuthAttempts?: number
  /**
   * Session channels open at once per connection (OpenSSH's MaxSessions). Each
   * SFTP channel has its own handle table and request budget, so without a cap
   * one login could multiply them. Default 10.
   */
  readonly maxSessionsPerConnection?: number
  readonly limits?: Partial<SftpLimits>
}

/**
 * A running SFTP listener.
 * @category services
 */
export class SftpServer extends Context.Service<SftpServer, {
  /** The bound address (the real port when the config asked for port 0). */
  readonly address: Address
}>()("portcullis/protocols/sftp/SftpServer") {}

type Services = Sessions | UserRegistry | Events | Jail | ConnectionGuard

/** ssh2 announces a connection only after the client's version line: find it by its remote address. */
const connectionKey = (ip: string | undefined, port: number | undefined) => `${ip ?? "?"}|${port ?? 0}`

/** Verifies a signed public-key request; a query (no signature) is not verified here. */
const signatureValid = (ctx: ssh2.PublicKeyAuthContext): boolean => {
  if (!ctx.signature || !ctx.blob) return false
  const key = ssh2.utils.parseKey(ctx.key.data)
  if (key instanceof Error) return false
  return key.verify(ctx.blob, ctx.signature, ctx.hashAlgo)
}

/**
 * Builds the listener: binds, accepts, and stops accepting when Sessions stops.
 * @category constructors
 */
export const make = (options: SftpOptions): Effect.Effect<SftpServer["Service"], ListenError, Services | Scope.Scope> =>
  Effect.gen(function*() {
    const sessions = yield* Sessions
    const registry = yield* UserRegistry
    const events = yield* Events
    const jails = yield* Jail
    const guard = yield* ConnectionGuard
    const maxAuthAttempts = options.maxAuthAttempts ?? 6
    const maxSessions = options.maxSessionsPerConnection ?? 10
    const keyAlgorithms = effective("publicKeyAlgorithms", options.algorithms.publicKeyAlgorithms)

    const ssh = new ssh2.Server({
      hostKeys: [...options.hostKeys],
      algorithms: {
        // The config schema checked every name against ssh2's own lists.
        kex: effective("kex", options.algorithms.kex) as Array<ssh2.KexAlgorithm>,
        cipher: effective("ciphers", options.algorithms.ciphers) as Array<ssh2.CipherAlgorithm>,
        hmac: effective("macs", options.algorithms.macs) as Array<ssh2.MacAlgorithm>,
        compress: ["none"]
      },
      ident: "Portcullis"
    })
    const pending = new Map<string, (client: ssh2.Connection) => void>()
    ssh.on("connection", (client, info) => {
      const attach = pending.get(connectionKey(info.ip, info.port))
      if (attach) attach(client)
      else client.end()
    })
    // Per-connection errors surface on each connection below; the shared server has nothing to add.
    ssh.on("error", () => {})

    /** One connection, from accept to close. */
    const session = (socket: net.Socket, clientIp: string) => (control: SessionControl) =>
      Effect.gen(function*() {
        yield* Effect.addFinalizer(() => Effect.sync(() => socket.destroy()))
        const run = yield* FiberSet.makeRuntime<never>()
        const key = connectionKey(socket.remoteAddress, socket.remotePort)
        const attached = yield* Deferred.make<ssh2.Connection>()
        let inbound: InboundBuffers.InboundBuffers | undefined
        // The connection is over: the socket or ssh2 closed, or shutdown found it idle.
        const over = yield* Deferred.make<void>()
        const ended = Deferred.await(over)
        const loggedIn = yield* Deferred.make<{ principal: Principal; method: "password" | "publickey" }>()
        const jailReady = yield* Deferred.make<{ principal: Principal; jail: JailHandle }>()
        pending.set(key, (client) => {
          // Now, before the key exchange: from then on its reads are freed once used,
          // and the packets it sends are padded from the pool.
          inbound = InboundBuffers.attach(client)
          PaddingPool.attach(client)
          Deferred.doneUnsafe(attached, Effect.succeed(client))
        })
        yield* Effect.addFinalizer(() => Effect.sync(() => pending.delete(key)))
        socket.once("close", () => Deferred.doneUnsafe(over, Effect.void))
        // On shutdown the session leaves once no SFTP channel has work in progress.
        let draining = false
        let activeChannels = 0
        yield* Effect.forkScoped(control.draining.pipe(Effect.andThen(Effect.sync(() => {
          draining = true
          if (activeChannels === 0) Deferred.doneUnsafe(over, Effect.void)
        }))))
        // Socket and protocol errors end the session through the close events; unhandled they would crash the process.
        socket.on("error", () => {})
        // Whatever ssh2 writes while it handles incoming bytes (window adjusts release
        // queued data one 32 KiB packet at a time) leaves in one writev per tick.
        socket.prependListener("data", () => {
          socket.cork()
          process.nextTick(() => socket.uncork())
        })
        // Once written, the packets' memory is freed, or reused for the next packets.
        releaseWritten(socket, PacketMemory.giveBack)
        ssh.injectSocket(socket)

        const client = yield* Effect.raceFirst(Deferred.await(attached), ended.pipe(Effect.andThen(Effect.interrupt)))
        pending.delete(key)
        client.on("error", () => {})
        client.on("close", () => Deferred.doneUnsafe(over, Effect.void))

        let failures = 0
        let accepted: { principal: Principal; method: "password" | "publickey" } | undefined
        /** Rejects `ctx`; the connection is closed once it used up its attempts, or when its client is banned. */
        const refuse = (ctx: ssh2.AuthContext, counts: boolean, banned = false) => {
          if (counts) failures++
          if (banned || failures >= maxAuthAttempts) {
            ctx.reject()
            client.end()
          } else ctx.reject(["password", "publickey"])
        }
        /** A rejected credential (never a query): it counts toward a ban of the client's IP, and is announced. */
        const rejectCredential = (ctx: ssh2.AuthContext, method: "password" | "publickey") =>
          guard.recordFailure(clientIp).pipe(
            Effect.flatMap((banned) => Effect.sync(() => refuse(ctx, true, banned))),
            Effect.andThen(events.publishAuth(new LoginFailed({ protocol: "sftp", username: ctx.username, clientIp, method })))
          )
        const attempt = (ctx: ssh2.AuthContext, credentials: Credentials, method: "password" | "publickey", query: boolean) =>
          registry.authenticate(credentials).pipe(
            Effect.matchEffect({
              onFailure: () => (query ? Effect.sync(() => refuse(ctx, true)) : rejectCredential(ctx, method)),
              onSuccess: (principal) =>
                Effect.sync(() => {
                  if (!query) accepted = { principal, method }
                  ctx.accept()
                })
            })
          )
        const decide = (ctx: ssh2.AuthContext): Effect.Effect<void> => {
          switch (ctx.method) {
            case "password":
              return attempt(ctx, { _tag: "Password", username: ctx.username, password: ctx.password }, "password", false)
            case "publickey": {
              // A query asks "would this key do?": answer it, but authorise only a verified signature.
              const signed = ctx.signature !== undefined
              if (!keyAlgorithms.includes(ctx.key.algo) || (signed && !signatureValid(ctx))) {
                return signed ? rejectCredential(ctx, "publickey") : Effect.sync(() => refuse(ctx, true))
              }
              const credentials: Credentials = { _tag: "PublicKey", username: ctx.username, algorithm: ctx.key.algo, key: ctx.key.data }
              return attempt(ctx, credentials, "publickey", !signed)
            }
            default:
              // "none" is how clients ask which methods exist; it is not an attempt.
              return Effect.sync(() => refuse(ctx, ctx.method !== "none"))
          }
        }
        client.on("authentication", (ctx) => {
          if (accepted) return ctx.reject()
          // A banned client's connections still waiting to log in get no further attempt.
          run(guard.isBanned(clientIp).pipe(Effect.flatMap((banned) => (banned ? Effect.sync(() => refuse(ctx, false, true)) : decide(ctx)))))
        })
        client.on("ready", () => {
          if (accepted) Deferred.doneUnsafe(loggedIn, Effect.succeed(accepted))
          else client.end()
        })
        let openSessions = 0
        client.on("session", (acceptSession, rejectSession) => {
          if (openSessions >= maxSessions) return rejectSession()
          openSessions++
          const sshSession = acceptSession()
          sshSession.once("close", () => void openSessions--)
          sshSession.on("subsystem", (acceptSubsystem, rejectSubsystem, info) => {
            // ssh2 passes no reject function when the request wants no reply (an exception here would end the connection).
            if (info.name !== "sftp") return rejectSubsystem?.()
            const channel: ssh2.ServerChannel | undefined = acceptSubsystem()
            // undefined when this session already runs a subsystem: the second request is ignored.
            if (channel === undefined) return
            activeChannels++
            run(Deferred.await(jailReady).pipe(
              Effect.flatMap(({ jail, principal }) =>
                serveChannel(channel, {
                  principal,
                  jail,
                  access: Access.make(principal, options.policy),
                  control,
                  clientIp,
                  tempExtensions: options.tempExtensions,
                  limits: options.limits ?? {},
                  transport: socket,
                  framed: inbound?.framed ?? (() => {})
                })
              ),
              Effect.provideService(Events, events),
              Effect.ensuring(Effect.sync(() => {
                activeChannels--
                if (draining && activeChannels === 0) Deferred.doneUnsafe(over, Effect.void)
              }))
            ))
          })
        })

        // Wait for login (or the end of the connection), then open the user's jail for this session.
        const login = yield* Effect.raceFirst(Deferred.await(loggedIn), ended.pipe(Effect.as(undefined)))
        if (!login) return
        const { method, principal } = login
        yield* control.authenticated(principal.username)
        yield* events.publishAuth(new LoginSucceeded({ protocol: "sftp", username: principal.username, clientIp, method }))
        yield* Effect.addFinalizer(() => events.publishAuth(new Logout({ protocol: "sftp", username: principal.username, clientIp })))
        const jail = yield* jails.open(principal.root).pipe(Effect.tapError((error) => Effect.logWarning("cannot open the user's root", error)))
        yield* Deferred.succeed(jailReady, { principal, jail })
        yield* ended
      })

    const server = net.createServer({ noDelay: true })
    const runSession = yield* FiberSet.makeRuntime<Services>()
    server.on("connection", (socket) => {
      const clientIp = socket.remoteAddress ?? "unknown"
      runSession(serveConnection(
        socket,
        { protocol: "sftp", clientIp, handshakeTimeout: options.handshakeTimeout },
        session(socket, clientIp),
        // Refused: closed before ssh2 sees it, so not even the identification line is sent.
        () => socket.destroy()
      ))
    })
    const address = yield* Effect.acquireRelease(listen("sftp", server, options.address), () =>
      Effect.sync(() => server.close()))
    // Stop accepting as soon as the server closes or shuts down; live sessions are Sessions' business.
    yield* Effect.forkScoped(sessions.stopped.pipe(Effect.andThen(Effect.sync(() => server.close()))))
    return SftpServer.of({ address })
  })

/**
 * The SFTP listener as a layer; it stops accepting when its scope closes.
 * @category layers
 */
export const layer = (options: SftpOptions): Layer.Layer<SftpServer, ListenError, Services> =>
  Layer.effect(SftpServer, make(options))
