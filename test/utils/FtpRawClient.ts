/**
 * A raw FTP client for adversarial tests: it sends exactly the bytes a test
 * asks for, reads replies (multi-line included, RFC 959 §4.2), upgrades the
 * control connection to TLS after AUTH TLS (keeping the TLS session the server
 * issues, for resuming it on data connections), and opens data connections from
 * a chosen local address, in clear or TLS, with or without a session to resume.
 * `ftpTestServer` starts the server under test (TestServer.ts with FTP on).
 *
 * Nothing here waits on a timer: replies, connections and closes are events,
 * turned into Effects with Queues and Deferreds. Every socket is destroyed when
 * the test's scope closes.
 */
import { Data, Deferred, Effect, Queue, type Scope } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import * as tls from "node:tls"
import ssh2 from "ssh2"
import { tempDir } from "./TempDir.js"
import { testServer, type TestServerOptions } from "./TestServer.js"

const ignore = () => {}

/**
 * One server reply: its code, and its lines as received (the first with the
 * code, the middle ones as they are, the last with the code).
 */
export interface FtpReply {
  readonly code: number
  readonly lines: ReadonlyArray<string>
  /** The lines joined with "\n". */
  readonly text: string
}

/** The control connection ended before the awaited reply arrived. */
export class FtpControlClosed extends Data.TaggedError("FtpControlClosed")<{
  /** How many replies the connection delivered in all before it closed. */
  readonly afterReplies: number
}> {}

/** A TLS handshake on the control connection failed. */
export class FtpTlsFailed extends Data.TaggedError("FtpTlsFailed")<{ readonly message: string }> {}

/** A reply with an unexpected code. */
export class UnexpectedReply extends Data.TaggedError("UnexpectedReply")<{
  readonly command: string
  readonly expected: ReadonlyArray<number>
  readonly reply: FtpReply
}> {
  override get message(): string {
    return `${this.command.slice(0, 80)}: expected ${this.expected.join("/")}, got ${this.reply.text}`
  }
}

type Incoming = { readonly _tag: "Reply"; readonly reply: FtpReply } | { readonly _tag: "Closed" }

/** Splits received bytes into reply lines and groups them into replies. */
const makeReplyParser = (emit: (reply: FtpReply) => void) => {
  let pending = Buffer.alloc(0)
  let multi: { code: string; lines: Array<string> } | undefined
  return (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk])
    while (true) {
      const end = pending.indexOf("\r\n")
      if (end === -1) return
      const line = pending.subarray(0, end).toString("utf8")
      pending = pending.subarray(end + 2)
      if (multi) {
        multi.lines.push(line)
        if (line.startsWith(`${multi.code} `) || line === multi.code) {
          const lines = multi.lines
          multi = undefined
          emit({ code: Number(lines[0]!.slice(0, 3)), lines, text: lines.join("\n") })
        }
        continue
      }
      const match = /^(\d{3})([ -]|$)/.exec(line)
      if (!match) {
        // Not a reply line: report it as is (code 0) so a test sees the garbage.
        emit({ code: 0, lines: [line], text: line })
        continue
      }
      if (match[2] === "-") multi = { code: match[1]!, lines: [line] }
      else emit({ code: Number(match[1]), lines: [line], text: line })
    }
  }
}

/** Resolves when `event` fires on `emitter` (listener attached right away). */
export const onceEvent = (emitter: NodeJS.EventEmitter, event: string): Effect.Effect<void> => {
  const fired = Deferred.makeUnsafe<void>()
  emitter.once(event, () => Deferred.doneUnsafe(fired, Effect.void))
  return Deferred.await(fired)
}

/** Destroys `socket` when the scope closes; swallows its errors. */
export const track = <S extends net.Socket>(socket: S): Effect.Effect<S, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      socket.on("error", ignore)
      return socket
    }),
    (s) => Effect.sync(() => s.destroy())
  )

/** The TLS client options a test gives: the server's certificate and, to resume, a session. */
export interface ClientTlsOptions {
  readonly ca: Buffer
  readonly session?: Buffer | undefined
  readonly maxVersion?: tls.SecureVersion | undefined
}

const tlsConnectOptions = (socket: net.Socket, options: ClientTlsOptions): tls.ConnectionOptions => ({
  socket,
  ca: options.ca,
  servername: "localhost",
  ...(options.session ? { session: options.session } : {}),
  ...(options.maxVersion ? { maxVersion: options.maxVersion } : {})
})

/**
 * A raw control connection.
 */
export interface FtpRawClient {
  /** The 220 greeting (or whatever the server sent first). */
  readonly greeting: FtpReply
  /** The TCP socket. */
  readonly raw: net.Socket
  /** The socket replies are read from and commands written to: raw, or TLS after `startTls`. */
  readonly socket: () => net.Socket
  readonly isTls: () => boolean
  /** The newest TLS session the server issued on this control connection (TLS 1.3: the newest ticket). */
  readonly session: () => Buffer | undefined
  /** Writes bytes exactly as given. */
  write(data: string | Uint8Array): Effect.Effect<void>
  /** Writes `line` + CRLF. */
  send(line: string): Effect.Effect<void>
  /** The next reply; fails when the connection closed first. */
  readonly reply: Effect.Effect<FtpReply, FtpControlClosed>
  /** Sends `line`, answers its reply. */
  command(line: string): Effect.Effect<FtpReply, FtpControlClosed>
  /** Sends `line`; fails with UnexpectedReply unless the reply's code is one of `codes`. */
  expect(line: string, ...codes: ReadonlyArray<number>): Effect.Effect<FtpReply, FtpControlClosed | UnexpectedReply>
  /** Reads the next reply; fails with UnexpectedReply unless its code is one of `codes`. */
  expectReply(...codes: ReadonlyArray<number>): Effect.Effect<FtpReply, FtpControlClosed | UnexpectedReply>
  /** How many replies arrived and were not taken yet. */
  readonly pendingReplies: () => number
  /** AUTH TLS, 234, then the TLS handshake over the same socket. */
  readonly startTls: Effect.Effect<void, FtpControlClosed | UnexpectedReply | FtpTlsFailed>
  /** The TLS handshake only (after the test itself got 234). */
  readonly upgrade: Effect.Effect<void, FtpTlsFailed>
  /** USER + PASS, expecting 331 then 230. */
  login(username: string, password?: string): Effect.Effect<void, FtpControlClosed | UnexpectedReply>
  /** AUTH TLS, PBSZ 0, PROT P, then login. */
  secureLogin(username: string, password?: string): Effect.Effect<void, FtpControlClosed | UnexpectedReply | FtpTlsFailed>
  /** PASV; the announced port. */
  readonly pasv: Effect.Effect<number, FtpControlClosed | UnexpectedReply>
  /** EPSV; the announced port. */
  readonly epsv: Effect.Effect<number, FtpControlClosed | UnexpectedReply>
  /** Completes when the TCP connection is fully closed. */
  readonly closed: Effect.Effect<void>
  readonly isClosed: () => boolean
  /** Every byte received on the control connection, decrypted, as UTF-8 (for "never contains" checks). */
  readonly transcript: () => string
}

export interface ConnectOptions {
  readonly host?: string
  readonly localAddress?: string
  /** Implicit FTPS: TLS from the first byte. */
  readonly implicitTls?: ClientTlsOptions
  /** For startTls: the server's certificate. */
  readonly ca?: Buffer
  /** For startTls: the highest TLS version to offer. */
  readonly maxVersion?: tls.SecureVersion
}

/** Parses "227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)." into a port (and checks the host). */
export const parsePasvReply = (reply: FtpReply): { host: string; port: number } | undefined => {
  const match = /\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)/.exec(reply.text)
  if (!match) return undefined
  const n = match.slice(1).map(Number)
  return { host: n.slice(0, 4).join("."), port: n[4]! * 256 + n[5]! }
}

/** Parses "229 Entering Extended Passive Mode (|||port|)". */
export const parseEpsvReply = (reply: FtpReply): number | undefined => {
  const match = /\(\|\|\|(\d+)\|\)/.exec(reply.text)
  return match ? Number(match[1]) : undefined
}

/**
 * Connects to an FTP server and reads its greeting. With `implicitTls`, the TLS
 * handshake happens first.
 */
export const connect = (
  port: number,
  options: ConnectOptions = {}
): Effect.Effect<FtpRawClient, FtpControlClosed | FtpTlsFailed, Scope.Scope> =>
  Effect.gen(function*() {
    const host = options.host ?? "127.0.0.1"
    const raw = yield* track(net.connect({ host, port, ...(options.localAddress ? { localAddress: options.localAddress } : {}) }))
    raw.setNoDelay(true)
    const queue = yield* Queue.unbounded<Incoming>()
    const closedDeferred = Deferred.makeUnsafe<void>()
    raw.once("close", () => Deferred.doneUnsafe(closedDeferred, Effect.void))
    let transcript = ""
    let current: net.Socket = raw
    let secure: tls.TLSSocket | undefined
    let session: Buffer | undefined
    let replyCount = 0
    let endedReading = false

    const parser = makeReplyParser((reply) => {
      replyCount++
      Queue.offerUnsafe(queue, { _tag: "Reply", reply })
    })
    const onData = (chunk: Buffer) => {
      transcript += chunk.toString("utf8")
      parser(chunk)
    }
    const onEnd = () => {
      if (endedReading) return
      endedReading = true
      Queue.offerUnsafe(queue, { _tag: "Closed" })
    }
    const attach = (socket: net.Socket) => {
      socket.on("data", onData)
      socket.once("close", onEnd)
    }
    const detach = (socket: net.Socket) => {
      socket.off("data", onData)
      socket.off("close", onEnd)
    }

    const handshake = (tlsOptions: ClientTlsOptions) =>
      Effect.callback<void, FtpTlsFailed>((resume) => {
        detach(raw)
        const socket = tls.connect(tlsConnectOptions(raw, tlsOptions))
        socket.on("error", ignore)
        socket.on("session", (s: Buffer) => void (session = s))
        secure = socket
        current = socket
        const onSecure = () => {
          socket.off("error", onError)
          socket.off("close", onClose)
          attach(socket)
          resume(Effect.void)
        }
        const onError = (error: Error) => {
          socket.off("secureConnect", onSecure)
          socket.off("close", onClose)
          attach(socket)
          resume(Effect.fail(new FtpTlsFailed({ message: error.message })))
        }
        const onClose = () => {
          socket.off("secureConnect", onSecure)
          socket.off("error", onError)
          onEnd()
          resume(Effect.fail(new FtpTlsFailed({ message: "closed during the handshake" })))
        }
        socket.once("secureConnect", onSecure)
        socket.once("error", onError)
        socket.once("close", onClose)
      })

    if (options.implicitTls) yield* handshake(options.implicitTls)
    else attach(raw)

    const reply: Effect.Effect<FtpReply, FtpControlClosed> = Queue.take(queue).pipe(
      Effect.flatMap((incoming) => {
        if (incoming._tag === "Reply") return Effect.succeed(incoming.reply)
        // Keep the marker for the next reader.
        Queue.offerUnsafe(queue, incoming)
        return Effect.fail(new FtpControlClosed({ afterReplies: replyCount }))
      })
    )
    const write = (data: string | Uint8Array) =>
      Effect.sync(() => {
        if (!current.destroyed && current.writable) current.write(data)
      })
    const send = (line: string) => write(`${line}\r\n`)
    const command = (line: string) => send(line).pipe(Effect.andThen(reply))
    const check = (what: string, codes: ReadonlyArray<number>) => (got: FtpReply) =>
      codes.includes(got.code) ? Effect.succeed(got) : Effect.fail(new UnexpectedReply({ command: what, expected: codes, reply: got }))
    const expect = (line: string, ...codes: ReadonlyArray<number>) => command(line).pipe(Effect.flatMap(check(line, codes)))
    const expectReply = (...codes: ReadonlyArray<number>) => reply.pipe(Effect.flatMap(check("(reply)", codes)))

    const upgrade = Effect.suspend(() => {
      if (!options.ca) return Effect.die(new Error("connect({ ca }) is needed for AUTH TLS"))
      return handshake({ ca: options.ca, maxVersion: options.maxVersion })
    })
    const startTls = expect("AUTH TLS", 234).pipe(Effect.andThen(upgrade))
    const login = (username: string, password = `${username}-password`) =>
      expect(`USER ${username}`, 331).pipe(Effect.andThen(expect(`PASS ${password}`, 230)), Effect.asVoid)
    const secureLogin = (username: string, password?: string) =>
      Effect.gen(function*() {
        if (!secure) yield* startTls
        yield* expect("PBSZ 0", 200)
        yield* expect("PROT P", 200)
        yield* login(username, password)
      })
    const greeting = yield* reply

    return {
      greeting,
      raw,
      socket: () => current,
      isTls: () => secure !== undefined,
      session: () => session,
      write,
      send,
      reply,
      command,
      expect,
      expectReply,
      pendingReplies: () => Queue.sizeUnsafe(queue),
      startTls,
      upgrade,
      login,
      secureLogin,
      pasv: expect("PASV", 227).pipe(Effect.map((r) => parsePasvReply(r)!.port)),
      epsv: expect("EPSV", 229).pipe(Effect.map((r) => parseEpsvReply(r)!)),
      closed: Deferred.await(closedDeferred),
      isClosed: () => Deferred.isDoneUnsafe(closedDeferred),
      transcript: () => transcript
    } satisfies FtpRawClient
  })

// --- data connections ---------------------------------------------------------------------------

/**
 * A data connection from the client's side.
 */
export interface FtpDataConnection {
  readonly raw: net.Socket
  /** The socket to read and write: raw, or TLS. */
  readonly socket: net.Socket
  readonly tls: tls.TLSSocket | undefined
  /** Whether the TLS handshake resumed a session; undefined in clear or before the handshake. */
  readonly sessionReused: () => boolean | undefined
  /** Completes when the TCP connection (or the TLS handshake) is established; fails if it broke first. */
  readonly connected: Effect.Effect<void, Error>
  /** Bytes received so far. */
  readonly received: () => number
  /** Everything received, once the connection is fully closed. */
  readonly done: Effect.Effect<Buffer>
  /** Completes when the TCP connection is closed. */
  readonly closed: Effect.Effect<void>
  readonly isClosed: () => boolean
  /** Completes when the peer ended its side (everything before was read), or the connection closed. */
  readonly ended: Effect.Effect<void>
  /** What was received so far. */
  readonly data: () => Buffer
}

export interface DataConnectOptions {
  readonly host?: string
  readonly localAddress?: string
  /** PROT P: the TLS options (certificate, session to resume). */
  readonly tls?: ClientTlsOptions | undefined
  /** Keep the data connection half-open after the server's FIN (default false: answer with our FIN). */
  readonly allowHalfOpen?: boolean
  /** Do not read (the socket starts paused); `socket.resume()` starts reading. */
  readonly paused?: boolean
}

/** Connects to a passive data port. */
export const openData = (port: number, options: DataConnectOptions = {}): Effect.Effect<FtpDataConnection, never, Scope.Scope> =>
  Effect.gen(function*() {
    const raw = yield* track(net.connect({
      host: options.host ?? "127.0.0.1",
      port,
      allowHalfOpen: options.allowHalfOpen ?? false,
      ...(options.localAddress ? { localAddress: options.localAddress } : {})
    }))
    const secure = options.tls ? yield* track(tls.connect(tlsConnectOptions(raw, options.tls))) : undefined
    return yield* wrapData(raw, secure, options.paused ?? false, false)
  })

/** PASV, `STOR name` answered 150, then the passive data connection, connected: an upload under way. */
export const passiveStor = (client: FtpRawClient, name: string, options: DataConnectOptions = {}) =>
  Effect.gen(function*() {
    const port = yield* client.pasv
    yield* client.expect(`STOR ${name}`, 150)
    const data = yield* openData(port, options)
    yield* data.connected
    return data
  })

/** Wraps a data socket the server opened to us (active mode), optionally as TLS client. */
export const acceptedData = (raw: net.Socket, options: { readonly tls?: ClientTlsOptions | undefined; readonly paused?: boolean } = {}) =>
  Effect.gen(function*() {
    yield* track(raw)
    const secure = options.tls ? yield* track(tls.connect(tlsConnectOptions(raw, options.tls))) : undefined
    return yield* wrapData(raw, secure, options.paused ?? false, true)
  })

const wrapData = (raw: net.Socket, secure: tls.TLSSocket | undefined, paused: boolean, accepted: boolean) =>
  Effect.sync((): FtpDataConnection => {
    const socket: net.Socket = secure ?? raw
    const chunks: Array<Buffer> = []
    let bytes = 0
    const closed = Deferred.makeUnsafe<void>()
    const connected = Deferred.makeUnsafe<void, Error>()
    raw.once("close", () => {
      Deferred.doneUnsafe(connected, Effect.fail(new Error("closed before connected")))
      Deferred.doneUnsafe(closed, Effect.void)
    })
    let reused: boolean | undefined
    if (secure) {
      secure.once("secureConnect", () => {
        reused = secure.isSessionReused()
        Deferred.doneUnsafe(connected, Effect.void)
      })
    }
    else if (accepted) Deferred.doneUnsafe(connected, Effect.void)
    else raw.once("connect", () => Deferred.doneUnsafe(connected, Effect.void))
    socket.on("error", (error) => Deferred.doneUnsafe(connected, Effect.fail(error)))
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk)
      bytes += chunk.length
    })
    // Adding a 'data' listener starts the flow: pause afterwards.
    if (paused) socket.pause()
    // The socket's own 'close' comes after every 'data' event.
    const socketClosed = Deferred.makeUnsafe<void>()
    socket.once("close", () => Deferred.doneUnsafe(socketClosed, Effect.void))
    const ended = Deferred.makeUnsafe<void>()
    socket.once("end", () => Deferred.doneUnsafe(ended, Effect.void))
    socket.once("close", () => Deferred.doneUnsafe(ended, Effect.void))
    return {
      raw,
      socket,
      tls: secure,
      sessionReused: () => reused,
      connected: Deferred.await(connected),
      received: () => bytes,
      done: Deferred.await(socketClosed).pipe(Effect.andThen(Deferred.await(closed)), Effect.map(() => Buffer.concat(chunks))),
      closed: Deferred.await(closed),
      isClosed: () => Deferred.isDoneUnsafe(closed),
      ended: Deferred.await(ended),
      data: () => Buffer.concat(chunks)
    }
  })

/** SHA-256 in hex. */
export const sha256 = (data: Uint8Array) => crypto.createHash("sha256").update(data).digest("hex")

/** A listener for active mode (PORT/EPRT) on `host`, port 0; the connections it receives, in order. */
export const activeListener = (host = "127.0.0.1") =>
  Effect.gen(function*() {
    const server = net.createServer({ allowHalfOpen: false })
    const connections = yield* Queue.unbounded<net.Socket>()
    let count = 0
    server.on("connection", (socket) => {
      count++
      socket.on("error", ignore)
      Queue.offerUnsafe(connections, socket)
    })
    const port = yield* Effect.acquireRelease(
      Effect.callback<number>((resume) => {
        server.listen(0, host, () => resume(Effect.succeed((server.address() as net.AddressInfo).port)))
      }),
      () => Effect.sync(() => void server.close())
    )
    return {
      port,
      host,
      /** The next connection the server made to us. */
      next: Queue.take(connections),
      /** How many connections arrived so far. */
      count: () => count,
      /** PORT's argument for this listener. */
      portArgument: `${host.split(".").join(",")},${Math.floor(port / 256)},${port % 256}`
    }
  })

// --- the server -----------------------------------------------------------------------------------

/**
 * An Ed25519 host key that ssh2 can parse. ssh2 1.17's generateKeyPairSync strips
 * every leading zero byte of the public key (lib/keygen.js, "Remove leading zero
 * bytes"), so about 1 key in 256 comes out 31 bytes long and is refused when the
 * server loads it: generate until the key parses.
 */
export const validHostKey = (): string => {
  for (;;) {
    const key = ssh2.utils.generateKeyPairSync("ed25519", {}).private
    const parsed = ssh2.utils.parseKey(key)
    if (!(parsed instanceof Error) && parsed.isPrivateKey()) return key
  }
}

/**
 * `testServer` with FTP on (fields of `options.ftp` override the defaults), and
 * an SFTP host key that always loads (see `validHostKey`).
 */
export const ftpTestServer = (options: Omit<TestServerOptions, "ftp"> & { readonly ftp?: TestServerOptions["ftp"] } = {}) =>
  Effect.gen(function*() {
    const dir = yield* tempDir("portcullis-hostkey-")
    const hostKeyFile = path.join(dir, "host_ed25519")
    fs.writeFileSync(hostKeyFile, validHostKey())
    return yield* testServer({
      ...options,
      ftp: options.ftp ?? {},
      sftp: { address: "127.0.0.1:0", ...options.sftp, hostKeyFiles: [hostKeyFile] }
    })
  })
