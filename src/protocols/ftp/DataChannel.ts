/**
 * The data connection of one FTP session: the PASV/EPSV listener, the PORT/EPRT
 * connection, their TLS (PROT P), and the byte pumps RETR/STOR/LIST use.
 *
 * Security choices made here, each against a known attack:
 * - Passive port stealing: a passive listener hands out only a connection whose
 *   remote IP is the control connection's. Any other connection is destroyed at
 *   once and logged, and the listener keeps waiting, so the real client still
 *   gets its transfer. Ports are random within the range (PassivePorts.ts).
 * - FTP bounce (CERT CA-1997-27, RFC 2577): PORT/EPRT may only target the control
 *   connection's own IP, and never a privileged port (< 1024).
 * - Connection stealing from the same IP, e.g. behind a NAT (RFC 4217 §10.2,
 *   the FileZilla-documented attack): a PROT P data connection must resume the
 *   TLS session of *its own* control connection. Every control connection gets
 *   its own SecureContext with its own random session-ticket keys
 *   (`makeControlTlsOptions`), used by the control socket and by its data
 *   sockets alone. A ticket issued on another control connection cannot be
 *   decrypted there, so it does not resume, and a fresh handshake does not either;
 *   both are refused with `TlsSessionNotReused`. Resumption is by ticket only:
 *   TLS sockets that are not created by a `tls.Server` have no server-side session
 *   cache, so a TLS 1.2 session ID never resumes (TLS 1.3 resumes by ticket anyway).
 *   Clients that turned tickets off therefore need `requireSessionReuse: false`.
 * - Truncation (RFC 4217 §9, RFC 8446 §6.1): a TLS data connection is closed with
 *   close_notify, and an upload that ends without the client's close_notify fails
 *   with `Truncated`. Node 24 reports a TCP FIN without close_notify as a plain
 *   'end' on the TLS socket, exactly like a clean close, so the TLS layer is fed
 *   through a transport tap that knows when TCP itself reached EOF: the TLS
 *   stream's end is clean only if it came before the transport's.
 * - Cross-protocol attacks (ALPACA, CVE-2021-3618): the TLS options offer ALPN
 *   "ftp" only, so a client that asks for another protocol fails the handshake.
 *
 * Data sockets belong to a Scope (the prepared data connection of the session):
 * closing it destroys the listener and the socket, whatever state they are in.
 */
import { Data, Deferred, Duration, Effect, Exit, FiberSet, Result, Scope } from "effect"
import * as crypto from "node:crypto"
import * as net from "node:net"
import { Duplex } from "node:stream"
import * as tls from "node:tls"
import type { Received } from "../../services/Jail.js"
import { makePassivePortPool, type PassivePortPool } from "./PassivePorts.js"
import { release, releaseWritten } from "../common/ReleaseMemory.js"
import { unreadDescriptor } from "../common/SocketDescriptor.js"
import * as ReceiveBuffers from "./ReceiveBuffers.js"

// --- errors -------------------------------------------------------------------------------

/**
 * Why a data connection could not be set up or did not complete.
 * - AcceptTimeout: nobody (from the client's IP) connected to the passive port in time.
 * - PortsExhausted: no passive port could be reserved and bound.
 * - BadPort: PORT/EPRT named another host than the client, or a port below 1024.
 * - ConnectFailed: the active-mode connection was refused or timed out.
 * - TlsHandshakeFailed / TlsSessionNotReused: PROT P handshake failed, or did not
 *   resume the control connection's TLS session.
 * - Truncated: the peer went away mid-upload (TLS: without close_notify).
 * - Closed: the connection is gone (peer closed during a download, accept used twice).
 * @category errors
 */
export type DataChannelErrorReason =
  | "AcceptTimeout"
  | "PortsExhausted"
  | "BadPort"
  | "ConnectFailed"
  | "TlsHandshakeFailed"
  | "TlsSessionNotReused"
  | "Truncated"
  | "Closed"

/**
 * A data connection failed. `code` is an errno or OpenSSL code for the logs; it
 * never holds an address or a path, and is never sent to the client.
 * @category errors
 */
export class DataChannelError extends Data.TaggedError("DataChannelError")<{
  readonly reason: DataChannelErrorReason
  readonly code?: string
}> {
  override get message(): string {
    return `data connection: ${this.reason}${this.code === undefined ? "" : ` (${this.code})`}`
  }
}

const failWith = (reason: DataChannelErrorReason, code?: string) =>
  Effect.fail(code === undefined ? new DataChannelError({ reason }) : new DataChannelError({ reason, code }))

// --- addresses and the PORT/EPRT/PASV/EPSV syntax ---------------------------------------------

/**
 * A host and port named by PORT or EPRT.
 * @category models
 */
export interface ActiveTarget {
  readonly host: string
  readonly port: number
}

/**
 * The canonical text of an IP address, so two spellings of one peer compare
 * equal: lower case, and IPv4-mapped IPv6 ("::ffff:1.2.3.4") as plain IPv4.
 * @category constructors
 */
export const normalizeIp = (address: string | undefined): string | undefined => {
  if (address === undefined || address === "") return undefined
  const lower = address.toLowerCase()
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(lower)
  return mapped?.[1] ?? lower
}

/**
 * Parses the argument of PORT, "h1,h2,h3,h4,p1,p2" (RFC 959 §4.1.2): six decimal
 * numbers 0-255, nothing else. Port 0 is not a port. Undefined when malformed.
 * @category constructors
 */
export const parsePort = (argument: string): ActiveTarget | undefined => {
  const parts = argument.split(",")
  if (parts.length !== 6) return undefined
  const numbers: Array<number> = []
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) return undefined
    const value = Number(part)
    if (value > 255) return undefined
    numbers.push(value)
  }
  const [h1, h2, h3, h4, p1, p2] = numbers as [number, number, number, number, number, number]
  const port = p1 * 256 + p2
  if (port === 0) return undefined
  return { host: `${h1}.${h2}.${h3}.${h4}`, port }
}

/**
 * Parses the argument of EPRT, "|1|132.235.1.2|6275|" or "|2|::1|6275|"
 * (RFC 2428 §2): a delimiter from ASCII 33-126, address family 1 (IPv4, dotted
 * quad without leading zeros) or 2 (IPv6, no zone), port 1-65535, nothing
 * trailing. Undefined when malformed.
 * @category constructors
 */
export const parseEprt = (argument: string): ActiveTarget | undefined => {
  const delimiter = argument[0]
  if (delimiter === undefined) return undefined
  const code = delimiter.charCodeAt(0)
  if (code < 33 || code > 126) return undefined
  const fields = argument.split(delimiter)
  if (fields.length !== 5 || fields[0] !== "" || fields[4] !== "") return undefined
  const [, family, address, portText] = fields as [string, string, string, string, string]
  if (!/^\d{1,5}$/.test(portText)) return undefined
  const port = Number(portText)
  if (port < 1 || port > 65535) return undefined
  if (family === "1" && net.isIPv4(address)) return { host: address, port }
  if (family === "2" && net.isIPv6(address) && !address.includes("%")) return { host: normalizeIp(address) ?? address, port }
  return undefined
}

/**
 * The PASV reply's "h1,h2,h3,h4,p1,p2" (RFC 959 §4.1.2). PASV can only express
 * IPv4: undefined for any other host, and the caller refuses PASV (EPSV works).
 * @category constructors
 */
export const formatPasv = (host: string, port: number): string | undefined => {
  const ip = normalizeIp(host)
  if (ip === undefined || !net.isIPv4(ip) || !Number.isInteger(port) || port < 0 || port > 65535) return undefined
  return `${ip.split(".").join(",")},${Math.floor(port / 256)},${port % 256}`
}

/**
 * The EPSV reply's "|||port|" (RFC 2428 §3).
 * @category constructors
 */
export const formatEpsv = (port: number): string => `|||${port}|`

/**
 * FTP bounce protection (RFC 2577 §3): an active-mode target must be the control
 * connection's own IP (`clientIp`) and an unprivileged port. Fails with BadPort.
 * @category constructors
 */
export const checkActiveTarget = (target: ActiveTarget, clientIp: string): Effect.Effect<void, DataChannelError> => {
  const sameHost = normalizeIp(target.host) !== undefined && normalizeIp(target.host) === normalizeIp(clientIp)
  const unprivileged = Number.isInteger(target.port) && target.port >= 1024 && target.port <= 65535
  return sameHost && unprivileged ? Effect.void : failWith("BadPort")
}

// --- TLS ----------------------------------------------------------------------------------------

/** Lifetime of session tickets, in seconds: a control connection may idle for long before a transfer. */
const ticketLifetimeSeconds = 24 * 60 * 60

/**
 * The TLS options of one control connection, for its AUTH TLS upgrade (or the
 * implicit-FTPS handshake) and for every PROT P data connection it opens. Call it
 * once per control connection: each call builds its own SecureContext with fresh
 * random ticket keys, which is what binds data connections to their control
 * connection (see the module header). TLS 1.2 is the minimum whatever `base`
 * says; ALPN offers "ftp" only.
 * @category constructors
 */
export const makeControlTlsOptions = (base: tls.SecureContextOptions): tls.TLSSocketOptions => ({
  secureContext: tls.createSecureContext({
    ...base,
    minVersion: base.minVersion === "TLSv1.3" ? "TLSv1.3" : "TLSv1.2",
    // Per control connection, never shared: a ticket from another connection does not decrypt here.
    ticketKeys: crypto.randomBytes(48),
    // The tickets die with the control connection; let them outlive a long idle period of it.
    sessionTimeout: base.sessionTimeout ?? ticketLifetimeSeconds
  }),
  ALPNProtocols: ["ftp"],
  requestCert: false
})

/**
 * Sits between the TCP socket and the TLS layer and remembers whether the
 * transport's EOF has been passed up. Node feeds a non-socket stream to TLS
 * through a JS stream wrapper that forwards this stream's 'end' as EOF; the
 * listener registered here runs before that one.
 */
class TransportTap extends Duplex {
  readonly #raw: net.Socket
  #eofForwarded = false

  constructor(raw: net.Socket) {
    super({ allowHalfOpen: true })
    this.#raw = raw
    // Only TLS writes here, a fresh copy of each record batch.
    releaseWritten(raw)
    this.once("end", () => {
      this.#eofForwarded = true
    })
    raw.on("data", (chunk: Buffer) => {
      if (!this.push(chunk)) raw.pause()
    })
    raw.on("end", () => this.push(null))
    raw.on("error", () => this.destroy())
    // A close after a clean EOF leaves buffered bytes to be read; any other close ends everything.
    raw.on("close", () => {
      if (!raw.readableEnded) this.destroy()
    })
  }

  get eofForwarded(): boolean {
    return this.#eofForwarded
  }

  override _read(): void {
    this.#raw.resume()
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#raw.write(chunk, callback)
  }

  // TLS hands over a batch of 16 KiB records at a time: one writev instead of a write each.
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.#raw.cork()
    chunks.forEach(({ chunk }, i) => this.#raw.write(chunk, i === chunks.length - 1 ? callback : undefined))
    this.#raw.uncork()
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#raw.end(() => callback())
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#raw.destroy()
    callback(error)
  }
}

/**
 * A server-side TLS data socket that knows whether its stream ended with the
 * peer's close_notify: the end of the TLS stream is pushed either when OpenSSL
 * reads close_notify, or when the transport's EOF reaches it; the tap tells which.
 */
class DataTlsSocket extends tls.TLSSocket {
  readonly #tap: TransportTap
  #closeNotify: boolean | undefined

  constructor(raw: net.Socket, options: tls.TLSSocketOptions) {
    const tap = new TransportTap(raw)
    super(tap, { ...options, isServer: true })
    this.#tap = tap
    // Runs after the TLS layer's own listener, which copied the bytes into OpenSSL.
    tap.on("data", release)
  }

  override push(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk === null && this.#closeNotify === undefined) this.#closeNotify = !this.#tap.eofForwarded
    return super.push(chunk, encoding)
  }

  /** True once the stream ended with close_notify; false while open or after a bare TCP EOF. */
  get closeNotifyReceived(): boolean {
    return this.#closeNotify === true
  }
}

const ignore = () => {}

/**
 * Which way a data connection carries the bytes. Only a receiving connection
 * needs to tell a close_notify from a bare TCP end, which takes the transport
 * tap (a JavaScript hop per TLS record batch); a sending one runs TLS straight on
 * the TCP handle, in C++, and ends with its own close_notify.
 * @category models
 */
export type Direction = "send" | "receive"

/**
 * Runs the server side of the TLS handshake on a fresh data connection (always
 * the TLS server, also in active mode: RFC 4217 §7), then checks resumption.
 */
const secureData = (raw: net.Socket, options: tls.TLSSocketOptions, requireSessionReuse: boolean, direction: Direction) =>
  Effect.callback<DataSocket, DataChannelError>((resume) => {
    const socket = direction === "receive" ? new DataTlsSocket(raw, options) : new tls.TLSSocket(raw, { ...options, isServer: true })
    // Errors also surface as 'close' or a failed write, where the pumps report them.
    socket.on("error", ignore)
    const detach = () => {
      socket.off("secure", onSecure)
      socket.off("error", onError)
      socket.off("close", onClose)
    }
    const onSecure = () => {
      detach()
      if (requireSessionReuse && !socket.isSessionReused()) {
        socket.destroy()
        resume(failWith("TlsSessionNotReused"))
      } else resume(Effect.succeed(socket))
    }
    const onError = (error: NodeJS.ErrnoException) => {
      detach()
      socket.destroy()
      resume(failWith("TlsHandshakeFailed", error.code))
    }
    const onClose = () => {
      detach()
      resume(failWith("TlsHandshakeFailed"))
    }
    socket.once("secure", onSecure)
    socket.once("error", onError)
    socket.once("close", onClose)
    return Effect.sync(() => {
      detach()
      socket.destroy()
    })
  }).pipe(
    Effect.tapError((error) =>
      error.reason === "TlsSessionNotReused"
        ? Effect.logWarning("TLS data connection refused: it did not resume its control connection's TLS session")
        : Effect.logInfo("TLS handshake on a data connection failed", error)
    )
  )

// --- passive and active mode -----------------------------------------------------------------------

/**
 * A data socket: plain TCP, or TLS (PROT P) once the handshake completed.
 * @category models
 */
export type DataSocket = net.Socket | tls.TLSSocket

/**
 * What every data connection of a session needs to know.
 * @category models
 */
export interface DataChannelOptions {
  /** The control connection (plain or TLS); only its remote IP may connect or be connected to. */
  readonly controlSocket: net.Socket
  /** PROT P: this control connection's TLS options (`makeControlTlsOptions`). Absent: clear data. */
  readonly tls?: tls.TLSSocketOptions | undefined
  /** Refuse a TLS data connection that does not resume the control connection's session. Default true. */
  readonly requireSessionReuse?: boolean | undefined
}

/**
 * Options of PASV/EPSV.
 * @category models
 */
export interface PassiveOptions extends DataChannelOptions {
  /** The listener's port range. Absent: the port the OS picks (port 0). */
  readonly ports?: PassivePortPool | undefined
  /** Address to bind. Default: the control connection's local address. */
  readonly bindHost?: string | undefined
  /** Address to announce (behind NAT). Default: the control connection's local address. */
  readonly advertisedAddress?: string | undefined
  /** How long `accept` waits for the client, TLS handshake included. Default 30 seconds; zero waits forever. */
  readonly acceptTimeout?: Duration.Input | undefined
}

/**
 * A bound passive listener.
 * @category models
 */
export interface PassiveListener {
  readonly port: number
  /** The address to announce in the 227 reply. */
  readonly host: string
  /**
   * The data connection: the first one from the client's IP (others are dropped),
   * after the TLS handshake under PROT P. Can be used once; the listener stops
   * listening as soon as that connection arrived.
   */
  accept(direction: Direction): Effect.Effect<DataSocket, DataChannelError>
}

/**
 * Options of PORT/EPRT.
 * @category models
 */
export interface ActiveOptions extends DataChannelOptions {
  readonly target: ActiveTarget
  /** Which way the transfer goes (see Direction). */
  readonly direction: Direction
  /** How long connecting may take, TLS handshake included. Default 30 seconds; zero waits forever. */
  readonly connectTimeout?: Duration.Input | undefined
}

/** Binding a random port of the range is retried this often when another process holds it. */
const maxBindAttempts = 8

const anyPort = makePassivePortPool()

const withTimeout = <A>(
  effect: Effect.Effect<A, DataChannelError>,
  timeout: Duration.Input | undefined,
  onTimeout: () => Effect.Effect<A, DataChannelError>
): Effect.Effect<A, DataChannelError> => {
  const duration = Duration.fromInputUnsafe(timeout ?? "30 seconds")
  return Duration.isZero(duration) ? effect : effect.pipe(Effect.timeoutOrElse({ duration, orElse: onTimeout }))
}

const listenOn = (server: net.Server, host: string, port: number) =>
  Effect.callback<number, string>((resume) => {
    const onError = (error: NodeJS.ErrnoException) => resume(Effect.fail(error.code ?? "EUNKNOWN"))
    server.once("error", onError)
    server.listen({ host, port }, () => {
      server.off("error", onError)
      const bound = server.address()
      resume(Effect.succeed(typeof bound === "object" && bound !== null ? bound.port : port))
    })
    // Interrupted mid-bind: nobody would ever close this listener otherwise.
    return Effect.sync(() => void server.close())
  })

/** Codes after which another port of the range may work. */
const retryableBindCodes = new Set(["EADDRINUSE", "EACCES"])

/**
 * PASV/EPSV: reserves a port, binds a listener on it, and returns the address to
 * announce and the effect that waits for the client's connection. The port, the
 * listener and the accepted socket are released when the scope closes.
 * @category constructors
 */
export const passive = (options: PassiveOptions): Effect.Effect<PassiveListener, DataChannelError, Scope.Scope> =>
  Effect.gen(function*() {
    const clientIp = normalizeIp(options.controlSocket.remoteAddress)
    const localIp = normalizeIp(options.controlSocket.localAddress)
    if (clientIp === undefined || localIp === undefined) return yield* failWith("Closed")
    const scope = yield* Effect.scope
    const log = yield* FiberSet.makeRuntime<never>()
    const arrived = yield* Deferred.make<net.Socket>()
    let connection: net.Socket | undefined
    let handedOut: DataSocket | undefined
    let listener: net.Server | undefined
    const stopListening = () => {
      if (listener?.listening) listener.close()
    }
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        stopListening()
        handedOut?.destroy()
        connection?.destroy()
      })
    )

    const makeServer = () => {
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true, highWaterMark: socketBufferSize })
      server.on("error", ignore)
      server.on("connection", (socket) => {
        socket.on("error", ignore)
        const ip = normalizeIp(socket.remoteAddress)
        if (ip !== clientIp) {
          // Passive port stealing: only the control connection's peer may use this port.
          socket.destroy()
          log(Effect.logWarning("data connection from a foreign address refused", { expected: clientIp, actual: ip ?? "unknown" }))
          return
        }
        if (connection !== undefined) return void socket.destroy()
        connection = socket
        stopListening()
        Deferred.doneUnsafe(arrived, Effect.succeed(socket))
      })
      return server
    }

    // Bind a random port of the range; ports that fail stay reserved until a bind succeeded, so no retry repeats one.
    const pool = options.ports ?? anyPort
    const host = normalizeIp(options.bindHost) ?? localIp
    const attempts = pool.range ? Math.min(maxBindAttempts, pool.range.high - pool.range.low + 1) : 1
    const failed = yield* Scope.fork(scope)
    let port: number | undefined
    let lastCode: string | undefined
    for (let attempt = 0; attempt < attempts && port === undefined; attempt++) {
      const reservation = yield* Scope.fork(scope)
      const reserved = yield* Effect.result(pool.reserve.pipe(Scope.provide(reservation)))
      if (Result.isFailure(reserved)) break
      const server = makeServer()
      const bound = yield* Effect.result(listenOn(server, host, reserved.success))
      if (Result.isSuccess(bound)) {
        port = bound.success
        listener = server
      } else {
        lastCode = bound.failure
        yield* Scope.addFinalizer(failed, Scope.close(reservation, Exit.void))
        if (!retryableBindCodes.has(bound.failure)) break
      }
    }
    yield* Scope.close(failed, Exit.void)
    if (port === undefined) return yield* failWith("PortsExhausted", lastCode)

    let used = false
    const tlsOptions = options.tls
    const requireSessionReuse = options.requireSessionReuse ?? true
    const wait = (direction: Direction) =>
      Deferred.await(arrived).pipe(
        Effect.flatMap((raw): Effect.Effect<DataSocket, DataChannelError> =>
          tlsOptions ? secureData(raw, tlsOptions, requireSessionReuse, direction) : Effect.succeed(raw)
        ),
        Effect.tap((socket) => Effect.sync(() => void (handedOut = socket)))
      )
    const accept = (direction: Direction) => Effect.suspend(() => {
      if (used) return failWith("Closed")
      used = true
      return withTimeout(wait(direction), options.acceptTimeout, () => failWith("AcceptTimeout")).pipe(
        // One try per PASV: whatever failed, this port takes no other connection.
        Effect.tapError(() =>
          Effect.sync(() => {
            stopListening()
            connection?.destroy()
          })
        )
      )
    })
    return { port, host: options.advertisedAddress ?? localIp, accept }
  })

/**
 * PORT/EPRT: connects to the client's data port, after the bounce check, and
 * runs the TLS handshake (as the TLS server) under PROT P. The socket is
 * destroyed when the scope closes.
 * @category constructors
 */
export const active = (options: ActiveOptions): Effect.Effect<DataSocket, DataChannelError, Scope.Scope> =>
  Effect.gen(function*() {
    const clientIp = normalizeIp(options.controlSocket.remoteAddress)
    const localIp = normalizeIp(options.controlSocket.localAddress)
    if (clientIp === undefined || localIp === undefined) return yield* failWith("Closed")
    yield* checkActiveTarget(options.target, clientIp)
    const held: Array<DataSocket> = []
    yield* Effect.addFinalizer(() => Effect.sync(() => held.forEach((socket) => socket.destroy())))
    const connect = Effect.callback<net.Socket, DataChannelError>((resume) => {
      // From the address the client talks to, so a multi-homed server does not surprise its firewall.
      const socket = net.connect({ host: normalizeIp(options.target.host) ?? options.target.host, port: options.target.port, localAddress: localIp, allowHalfOpen: true, noDelay: true })
      held.push(socket)
      socket.on("error", ignore)
      const onConnect = () => {
        socket.off("error", onError)
        // As a passive connection is (pauseOnConnect): an upload's bytes stay in the kernel
        // for its reader, which may be the addon's thread (receiveFile); Node would start
        // reading on the next tick otherwise.
        if (options.direction === "receive" && !options.tls) socket.pause()
        resume(Effect.succeed(socket))
      }
      const onError = (error: NodeJS.ErrnoException) => {
        socket.off("connect", onConnect)
        socket.destroy()
        resume(failWith("ConnectFailed", error.code))
      }
      socket.once("connect", onConnect)
      socket.once("error", onError)
      return Effect.sync(() => socket.destroy())
    })
    const tlsOptions = options.tls
    const requireSessionReuse = options.requireSessionReuse ?? true
    const open = connect.pipe(
      Effect.flatMap((raw): Effect.Effect<DataSocket, DataChannelError> =>
        tlsOptions ? secureData(raw, tlsOptions, requireSessionReuse, options.direction) : Effect.succeed(raw)
      ),
      Effect.tap((socket) => Effect.sync(() => void held.push(socket)))
    )
    return yield* withTimeout(open, options.connectTimeout, () => failWith("ConnectFailed", "ETIMEDOUT"))
  })

// --- transfers ------------------------------------------------------------------------------------------

/**
 * Bytes read from storage per write to the data socket in `sendFile`. With one
 * read ahead, a download holds two chunks in memory, however slow the client.
 * 1 MiB: this machine's thread-pool round trip and socket write cost tens of
 * microseconds each, and 256 KiB chunks made a loopback download 1.6 times slower.
 * @category models
 */
export const chunkSize = 1024 * 1024

/**
 * How much a data socket buffers before it stops reading from the kernel. While
 * an upload's previous write is on disk, up to this much arrives, and the next
 * write takes it all at once (64 KiB, the default, meant four times as many
 * writes, each a thread-pool round trip).
 */
const socketBufferSize = 1024 * 1024

/**
 * Ends a data connection so the peer sees it break. In clear, destroy() sends a
 * FIN, and a stream-mode transfer has no other end-of-file marker: the client
 * would keep a cut download as whole. A TCP reset is an error for it. Under TLS
 * the missing close_notify already says so (and a TLS socket has no TCP handle).
 */
const abort = (socket: DataSocket) => {
  if (socket instanceof tls.TLSSocket || socket.destroyed) socket.destroy()
  else socket.resetAndDestroy()
}

const destroyOnFailure = (socket: DataSocket) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  // ABOR, shutdown or a failed read/write: the peer must see an abrupt end, never a clean one.
  Effect.onError(effect, () => Effect.sync(() => abort(socket)))

/** Writes `bytes`; the Deferred completes when they were handed to the kernel, or fails when the socket broke. */
const startWrite = (socket: DataSocket, bytes: Uint8Array) =>
  Effect.gen(function*() {
    const written = yield* Deferred.make<void, DataChannelError>()
    if (socket.destroyed || !socket.writable) return yield* failWith("Closed")
    socket.write(bytes, (error) => Deferred.doneUnsafe(written, error ? failWith("Closed", codeOf(error)) : Effect.void))
    return written
  })

const codeOf = (error: Error): string | undefined => {
  const code: unknown = (error as NodeJS.ErrnoException).code
  return typeof code === "string" ? code : undefined
}

/**
 * Writes `bytes` and waits only if the socket's buffer is full ('drain'), so
 * many small writes (listing lines) are batched by the socket.
 * @category constructors
 */
export const writeAll = (socket: DataSocket, bytes: Uint8Array): Effect.Effect<void, DataChannelError> =>
  Effect.callback<void, DataChannelError>((resume) => {
    if (socket.destroyed || !socket.writable) return resume(failWith("Closed"))
    if (socket.write(bytes)) return resume(Effect.void)
    const detach = () => {
      socket.off("drain", onDrain)
      socket.off("close", onClose)
    }
    const onDrain = () => {
      detach()
      resume(Effect.void)
    }
    const onClose = () => {
      detach()
      resume(failWith("Closed"))
    }
    socket.once("drain", onDrain)
    socket.once("close", onClose)
    return Effect.sync(detach)
  })

/**
 * RETR: sends the file from `startOffset` to its end (an empty read), reading the
 * next chunk while the previous one is being written, and never more: memory
 * stays at two chunks for any file and any client speed. Interruption (ABOR,
 * shutdown) or any failure destroys the socket.
 * @category constructors
 */
export const sendFile = <E>(
  socket: DataSocket,
  read: (offset: number, length: number, into: Uint8Array) => Effect.Effect<Uint8Array, E>,
  startOffset = 0
): Effect.Effect<{ readonly bytes: number }, E | DataChannelError> =>
  Effect.gen(function*() {
    let offset = startOffset
    let inFlight: Deferred.Deferred<void, DataChannelError> | undefined
    // Chunk k is read into buffers[k % 2] only after the write of chunk k - 2 (same
    // buffer) completed: two allocations per transfer instead of one per chunk,
    // which at 1 MiB chunks is most of the garbage collector's work.
    const buffers = [Buffer.allocUnsafe(chunkSize), Buffer.allocUnsafe(chunkSize)] as const
    for (let k = 0;; k++) {
      const chunk = yield* read(offset, chunkSize, buffers[k % 2]!)
      if (inFlight) yield* Deferred.await(inFlight)
      if (chunk.length === 0) break
      inFlight = yield* startWrite(socket, chunk)
      offset += chunk.length
    }
    return { bytes: offset - startOffset }
  }).pipe(destroyOnFailure(socket))

/**
 * Where an upload goes: `write` takes one batch at an offset; `receiveFrom`,
 * when the jail has it (FileHandle.receiveFrom), takes the whole upload from
 * the socket's fd and reports a socket failure as `socketError`.
 * @category models
 */
export interface UploadSink<E> {
  readonly write: (offset: number, data: Uint8Array) => Effect.Effect<void, E>
  readonly receiveFrom?: ((socketFd: number, offset: number) => Effect.Effect<Received, E>) | undefined
}

/**
 * STOR/APPE: writes what the peer sends at `startOffset` onwards until it ends
 * the stream. A plain TCP connection that Node has not read from goes to
 * `sink.receiveFrom` when there is one: a thread of the addon reads and writes
 * each chunk, which is about twice as fast as reading on the event loop and
 * writing from the thread pool. Otherwise (TLS, or no receiveFrom) it is
 * written in batches of up to `chunkSize` gathered while the previous batch is
 * written (see ReceiveBuffers); `data` is valid only until its write completes.
 * Either way a slow disk pushes back on the client through TCP instead of
 * filling memory.
 * A TLS stream that ends without close_notify, or a connection reset, fails with
 * Truncated: the file is incomplete and must not be announced. Interruption or
 * any failure destroys the socket.
 * @category constructors
 */
export const receiveFile = <E>(
  socket: DataSocket,
  sink: UploadSink<E>,
  startOffset = 0
): Effect.Effect<{ readonly bytes: number }, E | DataChannelError> => {
  const fd = sink.receiveFrom === undefined ? undefined : unreadDescriptor(socket)
  return (sink.receiveFrom !== undefined && fd !== undefined
    ? receiveNatively(sink.receiveFrom, fd, startOffset)
    : receiveBatches(socket, sink.write, startOffset)).pipe(destroyOnFailure(socket))
}

const receiveNatively = <E>(
  receiveFrom: NonNullable<UploadSink<E>["receiveFrom"]>,
  fd: number,
  startOffset: number
): Effect.Effect<{ readonly bytes: number }, E | DataChannelError> =>
  Effect.flatMap(receiveFrom(fd, startOffset), ({ bytes, socketError }) =>
    socketError === undefined ? Effect.succeed({ bytes }) : failWith("Truncated", socketError))

const receiveBatches = <E>(
  socket: DataSocket,
  write: (offset: number, data: Uint8Array) => Effect.Effect<void, E>,
  startOffset: number
): Effect.Effect<{ readonly bytes: number }, E | DataChannelError> =>
  Effect.gen(function*() {
    let offset = startOffset
    const received = ReceiveBuffers.make(socket, chunkSize)
    yield* Effect.gen(function*() {
      while (true) {
        const { bytes } = yield* received.next(() => new DataChannelError({ reason: "Truncated" }))
        if (bytes.length === 0) break
        yield* write(offset, bytes)
        offset += bytes.length
      }
    }).pipe(Effect.ensuring(received.release))
    if (socket instanceof DataTlsSocket && !socket.closeNotifyReceived) {
      yield* Effect.logWarning("TLS data connection ended without close_notify: upload truncated")
      return yield* failWith("Truncated")
    }
    return { bytes: offset - startOffset }
  })

/**
 * How long `closeData` waits for the peer to close its side.
 * @category models
 */
export const closeLinger: Duration.Input = "10 seconds"

/**
 * Ends a data connection the way that lets the client trust the transfer: the
 * TLS close_notify (or, in clear, the FIN) goes out after the last byte, then the
 * peer gets up to `linger` (default `closeLinger`) to close its side, and the
 * socket is destroyed in any case. Anything the peer still sends is discarded.
 * @category constructors
 */
export const closeData = (socket: DataSocket, linger: Duration.Input = closeLinger): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (socket.destroyed) return Effect.void
    return Effect.callback<void>((resume) => {
      const onClose = () => resume(Effect.void)
      socket.once("close", onClose)
      // Reading on lets the peer's FIN (and its close_notify) arrive, which is what ends the socket.
      socket.resume()
      socket.end()
      return Effect.sync(() => void socket.off("close", onClose))
    }).pipe(Effect.timeoutOption(linger), Effect.asVoid)
  }).pipe(Effect.ensuring(Effect.sync(() => void socket.destroy())))
