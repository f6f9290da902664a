import { afterAll, assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import { TestClock } from "effect/testing"
import { execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import type { EventEmitter } from "node:events"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Duplex } from "node:stream"
import * as tls from "node:tls"
import * as DataChannel from "../../src/protocols/ftp/DataChannel.js"
import { makePassivePortPool } from "../../src/protocols/ftp/PassivePorts.js"

// --- fixtures -------------------------------------------------------------------------------------

// A throwaway self-signed certificate, made once for this file.
const certDir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-datachannel-"))
execFileSync("openssl", [
  "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=localhost",
  "-keyout", path.join(certDir, "key.pem"), "-out", path.join(certDir, "cert.pem")
], { stdio: "ignore" })
const key = fs.readFileSync(path.join(certDir, "key.pem"))
const cert = fs.readFileSync(path.join(certDir, "cert.pem"))
afterAll(() => fs.rmSync(certDir, { recursive: true, force: true }))

const MiB = 1024 * 1024
const ignore = () => {}
const sha256 = (data: Uint8Array) => crypto.createHash("sha256").update(data).digest("hex")

/** Resolves when `event` fires; the listener is attached right away, so nothing is missed. */
const on = (emitter: EventEmitter, event: string): Effect.Effect<void> => {
  const fired = Deferred.makeUnsafe<void>()
  emitter.once(event, () => Deferred.doneUnsafe(fired, Effect.void))
  return Deferred.await(fired)
}

/** Lets forked fibers run up to their next suspension. */
const settle = Effect.yieldNow.pipe(Effect.repeat({ times: 20 }))

/** Destroys the socket when the test's scope closes. */
const track = <S extends net.Socket>(socket: S): Effect.Effect<S, never, Scope.Scope> =>
  Effect.acquireRelease(Effect.sync(() => {
    socket.on("error", ignore)
    return socket
  }), (s) => Effect.sync(() => s.destroy()))

const listen = (server: net.Server, host = "127.0.0.1", port = 0) =>
  Effect.acquireRelease(
    Effect.callback<number, string>((resume) => {
      server.once("error", (error: NodeJS.ErrnoException) => resume(Effect.fail(error.code ?? "?")))
      server.listen(port, host, () => resume(Effect.succeed((server.address() as net.AddressInfo).port)))
    }),
    () => Effect.sync(() => void server.close())
  )

/** A plain control connection over loopback: `socket` is the server's side. */
const controlOn = (host: string, listenHost = host) =>
  Effect.gen(function*() {
    const server = net.createServer()
    const accepted = yield* Deferred.make<net.Socket>()
    server.on("connection", (socket) => Deferred.doneUnsafe(accepted, Effect.succeed(socket)))
    const port = yield* listen(server, listenHost)
    const client = yield* track(net.connect({ host, port }))
    const socket = yield* track(yield* Deferred.await(accepted))
    return { socket, client }
  })
const plainControl = controlOn("127.0.0.1")

/**
 * A TLS control connection as after AUTH TLS: the server side uses `options`
 * (one control connection's TLS options); the client keeps the session it got.
 */
const tlsControl = (options: tls.TLSSocketOptions, client: tls.ConnectionOptions = {}) =>
  Effect.gen(function*() {
    const server = net.createServer()
    const secured = yield* Deferred.make<tls.TLSSocket>()
    server.on("connection", (raw) => {
      const socket = new tls.TLSSocket(raw, { ...options, isServer: true })
      socket.on("error", ignore)
      socket.once("secure", () => {
        socket.write("200 secure\r\n")
        Deferred.doneUnsafe(secured, Effect.succeed(socket))
      })
    })
    const port = yield* listen(server)
    const session = yield* Deferred.make<Buffer>()
    const clientSocket = yield* track(tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false, ...client }))
    clientSocket.once("session", (s: Buffer) => Deferred.doneUnsafe(session, Effect.succeed(s)))
    const socket = yield* track(yield* Deferred.await(secured))
    return { socket, session: yield* Deferred.await(session) }
  })

const controlTls = () => DataChannel.makeControlTlsOptions({ key, cert })

/** Same idea as DataChannel's tap: tells whether the TLS stream ended before TCP did. */
class EofTap extends Duplex {
  eofForwarded = false
  readonly raw: net.Socket
  constructor(raw: net.Socket) {
    super({ allowHalfOpen: true })
    this.raw = raw
    this.once("end", () => void (this.eofForwarded = true))
    raw.on("data", (chunk: Buffer) => void (this.push(chunk) || raw.pause()))
    raw.on("end", () => this.push(null))
    raw.on("error", () => this.destroy())
    raw.on("close", () => void (raw.readableEnded || this.destroy()))
  }
  override _read() {
    this.raw.resume()
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void) {
    this.raw.write(chunk, callback)
  }
  override _final(callback: (error?: Error | null) => void) {
    this.raw.end(() => callback())
  }
  override _destroy(error: Error | null, callback: (error?: Error | null) => void) {
    this.raw.destroy()
    callback(error)
  }
}

/**
 * A TLS data client (the FTP client's side) that records whether the server
 * closed with close_notify, and hashes what it receives.
 */
const tlsDataClient = (port: number, options: tls.ConnectionOptions = {}, localAddress?: string) =>
  Effect.gen(function*() {
    const raw = yield* track(net.connect({ host: "127.0.0.1", port, ...(localAddress ? { localAddress } : {}) }))
    const tap = new EofTap(raw)
    // host: the same (absent) SNI as the control connection; a different one would not resume.
    const socket = yield* track(tls.connect({ socket: tap, host: "127.0.0.1", rejectUnauthorized: false, ...options }))
    // Like any client whose socket is not half-open: answer the server's close with its own.
    socket.on("end", () => socket.end())
    let closeNotify: boolean | undefined
    const push = socket.push.bind(socket)
    socket.push = (chunk: unknown, encoding?: BufferEncoding) => {
      if (chunk === null && closeNotify === undefined) closeNotify = !tap.eofForwarded
      return push(chunk, encoding)
    }
    return { socket, closeNotify: () => closeNotify }
  })

/** Hashes everything `socket` receives; resolves at its end. */
const collect = (socket: net.Socket) => {
  const hash = crypto.createHash("sha256")
  let bytes = 0
  const done = Deferred.makeUnsafe<{ bytes: number; digest: string }>()
  socket.on("data", (chunk: Buffer) => {
    bytes += chunk.length
    hash.update(chunk)
  })
  socket.once("end", () => Deferred.doneUnsafe(done, Effect.succeed({ bytes, digest: hash.digest("hex") })))
  return { received: () => bytes, done: Deferred.await(done) }
}

const source = (data: Uint8Array, reads?: { count: number; highest: number }) => (offset: number, length: number) =>
  Effect.sync(() => {
    if (reads) {
      reads.count++
      reads.highest = Math.max(reads.highest, Math.min(offset + length, data.length))
    }
    return data.subarray(Math.min(offset, data.length), Math.min(offset + length, data.length))
  })

/** A free port above the ephemeral range, so no port-0 listener of another test takes it meanwhile. */
const quietRange = (size: number) => {
  const low = 61000 + crypto.randomInt(4000 - size)
  return { low, high: low + size - 1 }
}

// --- syntax --------------------------------------------------------------------------------------------------

describe("PORT / EPRT / PASV / EPSV syntax", () => {
  it("parsePort reads h1,h2,h3,h4,p1,p2", () => {
    assert.deepStrictEqual(DataChannel.parsePort("127,0,0,1,4,1"), { host: "127.0.0.1", port: 1025 })
    assert.deepStrictEqual(DataChannel.parsePort("192,168,1,20,195,80"), { host: "192.168.1.20", port: 50000 })
    assert.deepStrictEqual(DataChannel.parsePort("10,0,0,1,0,21"), { host: "10.0.0.1", port: 21 })
  })

  it("parsePort refuses out-of-range numbers, wrong counts, port 0 and trailing junk", () => {
    for (const argument of ["256,0,0,1,4,1", "127,0,0,1,256,0", "127,0,0,1,4,1000", "127,0,0,1,0,0", "127,0,0,1,4", "127,0,0,1,4,1,5",
      "127,0,0,1,4,1,", ",127,0,0,1,4,1", "127,0,0,1,4,1 ", " 127,0,0,1,4,1", "127,0,0,1,4,1x", "127,0,0,-1,4,1", "127,0,0,+1,4,1",
      "127,0,0,1,4,1\r", "127.0.0.1,4,1", "127,0,0,1,0x4,1", "", "1,2,3,4,5,6,7,8"]) {
      assert.isUndefined(DataChannel.parsePort(argument), JSON.stringify(argument))
    }
  })

  it("parseEprt reads IPv4 and IPv6 with any delimiter", () => {
    assert.deepStrictEqual(DataChannel.parseEprt("|1|132.235.1.2|6275|"), { host: "132.235.1.2", port: 6275 })
    assert.deepStrictEqual(DataChannel.parseEprt("|2|::1|6275|"), { host: "::1", port: 6275 })
    assert.deepStrictEqual(DataChannel.parseEprt("|2|1080::8:800:200C:417A|5282|"), { host: "1080::8:800:200c:417a", port: 5282 })
    assert.deepStrictEqual(DataChannel.parseEprt("!1!10.0.0.7!65535!"), { host: "10.0.0.7", port: 65535 })
    assert.deepStrictEqual(DataChannel.parseEprt("|2|::ffff:127.0.0.1|2000|"), { host: "127.0.0.1", port: 2000 })
  })

  it("parseEprt refuses bad families, addresses, ports and trailing junk", () => {
    for (const argument of ["|3|1.2.3.4|2000|", "|1|::1|2000|", "|2|1.2.3.4|2000|", "|1|256.1.1.1|2000|", "|1|01.2.3.4|2000|",
      "|1|1.2.3|2000|", "|1|1.2.3.4|0|", "|1|1.2.3.4|65536|", "|1|1.2.3.4|123456|", "|1|1.2.3.4|2000", "|1|1.2.3.4|2000||",
      "|1|1.2.3.4|2000|x", " |1|1.2.3.4|2000|", "|1| 1.2.3.4|2000|", "|1|1.2.3.4|+2000|", "|2|fe80::1%eth0|2000|", "|1||2000|",
      "||1.2.3.4|2000|", "|1|1.2.3.4||", "", "|", "\u00a71\u00a71.2.3.4\u00a72000\u00a7", " 1 1.2.3.4 2000 "]) {
      assert.isUndefined(DataChannel.parseEprt(argument), JSON.stringify(argument))
    }
  })

  it("formatPasv writes IPv4 only; formatEpsv writes |||port|", () => {
    assert.strictEqual(DataChannel.formatPasv("127.0.0.1", 1025), "127,0,0,1,4,1")
    assert.strictEqual(DataChannel.formatPasv("::ffff:203.0.113.7", 50000), "203,0,113,7,195,80")
    assert.isUndefined(DataChannel.formatPasv("::1", 50000))
    assert.isUndefined(DataChannel.formatPasv("127.0.0.1", 70000))
    assert.strictEqual(DataChannel.formatEpsv(50000), "|||50000|")
    // What PASV announces, PORT reads back.
    assert.deepStrictEqual(DataChannel.parsePort(DataChannel.formatPasv("10.1.2.3", 61234)!), { host: "10.1.2.3", port: 61234 })
  })

  it("normalizeIp makes IPv4-mapped addresses plain IPv4", () => {
    assert.strictEqual(DataChannel.normalizeIp("::ffff:127.0.0.1"), "127.0.0.1")
    assert.strictEqual(DataChannel.normalizeIp("::FFFF:10.0.0.1"), "10.0.0.1")
    assert.strictEqual(DataChannel.normalizeIp("FE80::1"), "fe80::1")
    assert.isUndefined(DataChannel.normalizeIp(undefined))
  })
})

// --- passive mode ------------------------------------------------------------------------------------------------

describe("passive", () => {
  it.effect("accepts the data connection from the control connection's IP", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const listener = yield* DataChannel.passive({ controlSocket: control.socket })
      assert.strictEqual(listener.host, "127.0.0.1")
      const accepting = yield* Effect.forkChild(listener.accept("receive"))
      const client = yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
      const socket = yield* Fiber.join(accepting)
      const received = collect(client)
      yield* DataChannel.writeAll(socket, Buffer.from("hello\r\n"))
      yield* DataChannel.closeData(socket)
      const { bytes } = yield* received.done
      assert.strictEqual(bytes, 7)
    }))

  it.effect("announces advertisedAddress when given", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const listener = yield* DataChannel.passive({ controlSocket: control.socket, advertisedAddress: "203.0.113.7" })
      assert.strictEqual(listener.host, "203.0.113.7")
    }))

  it.effect("over IPv6: listens on the control connection's address; PASV cannot express it, EPSV can", () =>
    Effect.gen(function*() {
      const control = yield* controlOn("::1")
      const listener = yield* DataChannel.passive({ controlSocket: control.socket })
      assert.strictEqual(listener.host, "::1")
      assert.isUndefined(DataChannel.formatPasv(listener.host, listener.port))
      assert.strictEqual(DataChannel.formatEpsv(listener.port), `|||${listener.port}|`)
      const accepting = yield* Effect.forkChild(listener.accept("receive"))
      const client = yield* track(net.connect({ host: "::1", port: listener.port }))
      const socket = yield* Fiber.join(accepting)
      const received = collect(client)
      yield* DataChannel.writeAll(socket, Buffer.from("v6"))
      yield* DataChannel.closeData(socket)
      assert.strictEqual((yield* received.done).bytes, 2)
    }))

  it.effect("a dual-stack listener's IPv4-mapped control connection gets an IPv4 data port that its client may use", () =>
    Effect.gen(function*() {
      const control = yield* controlOn("127.0.0.1", "::")
      assert.strictEqual(control.socket.remoteAddress, "::ffff:127.0.0.1")
      const listener = yield* DataChannel.passive({ controlSocket: control.socket })
      assert.strictEqual(listener.host, "127.0.0.1")
      assert.strictEqual(DataChannel.formatPasv(listener.host, listener.port), `127,0,0,1,${listener.port >> 8},${listener.port & 255}`)
      const accepting = yield* Effect.forkChild(listener.accept("receive"))
      yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
      yield* Fiber.join(accepting)
    }))

  it.effect("drops a connection from another IP and still accepts the real client afterwards", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const listener = yield* DataChannel.passive({ controlSocket: control.socket })
      const accepting = yield* Effect.forkChild(listener.accept("receive"))
      // 127.0.0.2 is loopback too: the same machine, but not the control connection's peer.
      const thief = yield* track(net.connect({ host: "127.0.0.1", port: listener.port, localAddress: "127.0.0.2" }))
      const thiefData = collect(thief)
      yield* on(thief, "close")
      assert.strictEqual(thiefData.received(), 0)
      yield* settle
      assert.isUndefined(accepting.pollUnsafe())
      const client = yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
      const socket = yield* Fiber.join(accepting)
      assert.strictEqual(socket.remotePort, client.localPort)
      const received = collect(client)
      yield* DataChannel.writeAll(socket, Buffer.from("yours"))
      yield* DataChannel.closeData(socket)
      assert.strictEqual((yield* received.done).bytes, 5)
    }))

  it.effect("takes one data connection per PASV: the listener closes once it has one", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const listener = yield* DataChannel.passive({ controlSocket: control.socket })
      const accepting = yield* Effect.forkChild(listener.accept("receive"))
      yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
      yield* Fiber.join(accepting)
      const second = yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
      const refused = Deferred.makeUnsafe<string>()
      second.once("error", (error: NodeJS.ErrnoException) => Deferred.doneUnsafe(refused, Effect.succeed(error.code ?? "")))
      assert.strictEqual(yield* Deferred.await(refused), "ECONNREFUSED")
      const again = yield* Effect.flip(listener.accept("receive"))
      assert.strictEqual(again.reason, "Closed")
    }))

  it.effect("accept times out on the Clock: still waiting just before the deadline, AcceptTimeout at it", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const listener = yield* DataChannel.passive({ controlSocket: control.socket })
      const accepting = yield* Effect.forkChild(Effect.flip(listener.accept("receive")))
      yield* settle
      yield* TestClock.adjust("29999 millis")
      yield* settle
      assert.isUndefined(accepting.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      const error = yield* Fiber.join(accepting)
      assert.strictEqual(error.reason, "AcceptTimeout")
      // The port is closed: a late client is refused.
      const late = yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
      const refused = Deferred.makeUnsafe<string>()
      late.once("error", (e: NodeJS.ErrnoException) => Deferred.doneUnsafe(refused, Effect.succeed(e.code ?? "")))
      assert.strictEqual(yield* Deferred.await(refused), "ECONNREFUSED")
    }))

  it.effect("honours a configured accept timeout", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const listener = yield* DataChannel.passive({ controlSocket: control.socket, acceptTimeout: "5 seconds" })
      const accepting = yield* Effect.forkChild(Effect.flip(listener.accept("receive")))
      yield* settle
      yield* TestClock.adjust("4999 millis")
      yield* settle
      assert.isUndefined(accepting.pollUnsafe())
      yield* TestClock.adjust("1 millis")
      assert.strictEqual((yield* Fiber.join(accepting)).reason, "AcceptTimeout")
    }))

  it.effect("binds within the range and reports exhaustion; a closed scope frees the port", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const range = quietRange(1)
      const ports = makePassivePortPool(range)
      const first = yield* Scope.make()
      const listener = yield* DataChannel.passive({ controlSocket: control.socket, ports }).pipe(Scope.provide(first))
      assert.strictEqual(listener.port, range.low)
      assert.strictEqual(ports.reserved(), 1)
      const exhausted = yield* Effect.flip(Effect.scoped(DataChannel.passive({ controlSocket: control.socket, ports })))
      assert.strictEqual(exhausted.reason, "PortsExhausted")
      assert.strictEqual(ports.reserved(), 1)
      yield* Scope.close(first, Exit.void)
      assert.strictEqual(ports.reserved(), 0)
      const again = yield* Effect.scoped(DataChannel.passive({ controlSocket: control.socket, ports }).pipe(Effect.map((l) => l.port)))
      assert.strictEqual(again, range.low)
    }))

  it.effect("skips a port of the range that another process holds", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const range = quietRange(2)
      const squatter = net.createServer()
      yield* listen(squatter, "127.0.0.1", range.low)
      const ports = makePassivePortPool(range)
      for (let i = 0; i < 10; i++) {
        const port = yield* Effect.scoped(DataChannel.passive({ controlSocket: control.socket, ports }).pipe(Effect.map((l) => l.port)))
        assert.strictEqual(port, range.high)
        assert.strictEqual(ports.reserved(), 0)
      }
      const single = makePassivePortPool({ low: range.low, high: range.low })
      const error = yield* Effect.flip(Effect.scoped(DataChannel.passive({ controlSocket: control.socket, ports: single })))
      assert.strictEqual(error.reason, "PortsExhausted")
      assert.strictEqual(error.code, "EADDRINUSE")
      assert.strictEqual(single.reserved(), 0)
    }))

  it.effect("10,000 PASV listeners whose scopes close keep the reserved count bounded", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const ports = makePassivePortPool(quietRange(16))
      let peak = 0
      for (let i = 0; i < 10_000; i++) {
        yield* Effect.scoped(Effect.gen(function*() {
          yield* DataChannel.passive({ controlSocket: control.socket, ports })
          peak = Math.max(peak, ports.reserved())
        }))
      }
      assert.strictEqual(peak, 1)
      assert.strictEqual(ports.reserved(), 0)
    }), 60_000)
})

// --- active mode -------------------------------------------------------------------------------------------------

describe("active", () => {
  it.effect("refuses a target on another IP or a privileged port (FTP bounce), without connecting", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const other = yield* Effect.flip(Effect.scoped(DataChannel.active({ controlSocket: control.socket, direction: "receive", target: { host: "127.0.0.2", port: 2000 } })))
      assert.strictEqual(other.reason, "BadPort")
      const privileged = yield* Effect.flip(Effect.scoped(DataChannel.active({ controlSocket: control.socket, direction: "receive", target: { host: "127.0.0.1", port: 25 } })))
      assert.strictEqual(privileged.reason, "BadPort")
      assert.strictEqual((yield* Effect.flip(DataChannel.checkActiveTarget({ host: "10.0.0.1", port: 5000 }, "127.0.0.1"))).reason, "BadPort")
      assert.strictEqual((yield* Effect.flip(DataChannel.checkActiveTarget({ host: "127.0.0.1", port: 1023 }, "127.0.0.1"))).reason, "BadPort")
      yield* DataChannel.checkActiveTarget({ host: "127.0.0.1", port: 1024 }, "::ffff:127.0.0.1")
    }))

  it.effect("connects back to the client's data port", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const clientListener = net.createServer()
      const arrived = yield* Deferred.make<net.Socket>()
      clientListener.on("connection", (socket) => Deferred.doneUnsafe(arrived, Effect.succeed(socket)))
      const port = yield* listen(clientListener)
      const socket = yield* DataChannel.active({ controlSocket: control.socket, direction: "receive", target: { host: "127.0.0.1", port } })
      const client = yield* track(yield* Deferred.await(arrived))
      const received = collect(client)
      yield* DataChannel.writeAll(socket, Buffer.from("active"))
      yield* DataChannel.closeData(socket)
      assert.strictEqual((yield* received.done).bytes, 6)
    }))

  it.effect("reports ConnectFailed when nobody listens", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const server = net.createServer()
      const port = yield* Effect.scoped(listen(server))
      const error = yield* Effect.flip(Effect.scoped(DataChannel.active({ controlSocket: control.socket, direction: "receive", target: { host: "127.0.0.1", port } })))
      assert.strictEqual(error.reason, "ConnectFailed")
      assert.strictEqual(error.code, "ECONNREFUSED")
    }))
})

// --- TLS ------------------------------------------------------------------------------------------------------------

describe("TLS data connections", () => {
  for (const version of ["TLSv1.3", "TLSv1.2"] as const) {
    describe(version, () => {
      it.effect("accept a data connection that resumes its own control connection's session, twice", () =>
        Effect.gen(function*() {
          const options = controlTls()
          const control = yield* tlsControl(options, { maxVersion: version })
          for (let i = 0; i < 2; i++) {
            yield* Effect.scoped(Effect.gen(function*() {
              const listener = yield* DataChannel.passive({ controlSocket: control.socket, tls: options, requireSessionReuse: true })
              const accepting = yield* Effect.forkChild(listener.accept("receive"))
              const client = yield* tlsDataClient(listener.port, { session: control.session, maxVersion: version })
              const socket = yield* Fiber.join(accepting)
              assert.instanceOf(socket, tls.TLSSocket)
              assert.isTrue((socket as tls.TLSSocket).isSessionReused())
              assert.strictEqual((socket as tls.TLSSocket).getProtocol(), version)
              const received = collect(client.socket)
              yield* DataChannel.writeAll(socket, Buffer.from("secret"))
              yield* DataChannel.closeData(socket)
              assert.strictEqual((yield* received.done).bytes, 6)
            }))
          }
        }))

      it.effect("refuse a fresh TLS session", () =>
        Effect.gen(function*() {
          const options = controlTls()
          const control = yield* tlsControl(options, { maxVersion: version })
          const listener = yield* DataChannel.passive({ controlSocket: control.socket, tls: options, requireSessionReuse: true })
          const accepting = yield* Effect.forkChild(Effect.flip(listener.accept("receive")))
          const client = yield* tlsDataClient(listener.port, { maxVersion: version })
          const error = yield* Fiber.join(accepting)
          assert.strictEqual(error.reason, "TlsSessionNotReused")
          yield* on(client.socket, "close")
        }))

      it.effect("refuse a session obtained on another control connection of the same server", () =>
        Effect.gen(function*() {
          const victim = controlTls()
          const victimControl = yield* tlsControl(victim, { maxVersion: version })
          // Same certificate, same server, another control connection (the attacker's).
          const attackerControl = yield* tlsControl(controlTls(), { maxVersion: version })
          const listener = yield* DataChannel.passive({ controlSocket: victimControl.socket, tls: victim, requireSessionReuse: true })
          const accepting = yield* Effect.forkChild(Effect.flip(listener.accept("receive")))
          yield* tlsDataClient(listener.port, { session: attackerControl.session, maxVersion: version })
          assert.strictEqual((yield* Fiber.join(accepting)).reason, "TlsSessionNotReused")
        }))

      it.effect("accept a fresh session when requireSessionReuse is off", () =>
        Effect.gen(function*() {
          const options = controlTls()
          const control = yield* tlsControl(options, { maxVersion: version })
          const listener = yield* DataChannel.passive({ controlSocket: control.socket, tls: options, requireSessionReuse: false })
          const accepting = yield* Effect.forkChild(listener.accept("receive"))
          yield* tlsDataClient(listener.port, { maxVersion: version })
          const socket = yield* Fiber.join(accepting)
          assert.isFalse((socket as tls.TLSSocket).isSessionReused())
        }))

      it.effect("close with close_notify: the client sees a clean TLS end after the last byte", () =>
        Effect.gen(function*() {
          const options = controlTls()
          const control = yield* tlsControl(options, { maxVersion: version })
          const listener = yield* DataChannel.passive({ controlSocket: control.socket, tls: options })
          const accepting = yield* Effect.forkChild(listener.accept("receive"))
          const client = yield* tlsDataClient(listener.port, { session: control.session, maxVersion: version })
          const socket = yield* Fiber.join(accepting)
          const data = crypto.randomBytes(3 * MiB + 17)
          const received = collect(client.socket)
          yield* DataChannel.sendFile(socket, source(data), 0)
          yield* DataChannel.closeData(socket)
          const got = yield* received.done
          assert.strictEqual(got.digest, sha256(data))
          assert.isTrue(client.closeNotify())
        }))

      for (const slowDisk of [false, true]) {
        it.effect(`an upload that ends with close_notify completes; one that ends with a bare TCP FIN is Truncated${slowDisk ? " (slow disk)" : ""}`, () =>
          Effect.gen(function*() {
            // A slow disk leaves the end of the TLS stream unread while TCP's EOF arrives: the order must not matter.
            const pace = slowDisk
              ? Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
              : Effect.void
            const options = controlTls()
            const control = yield* tlsControl(options, { maxVersion: version })
            const data = crypto.randomBytes(2 * MiB + 5)

            // Clean: the client ends its TLS stream (close_notify, then FIN).
            yield* Effect.scoped(Effect.gen(function*() {
              const listener = yield* DataChannel.passive({ controlSocket: control.socket, tls: options })
              const accepting = yield* Effect.forkChild(listener.accept("receive"))
              const client = yield* tlsDataClient(listener.port, { session: control.session, maxVersion: version })
              const socket = yield* Fiber.join(accepting)
              const target = Buffer.alloc(data.length)
              client.socket.end(data)
              const { bytes } = yield* DataChannel.receiveFile(socket, { write: (offset, chunk) => pace.pipe(Effect.andThen(Effect.sync(() => target.set(chunk, offset)))) }, 0)
              assert.strictEqual(bytes, data.length)
              assert.strictEqual(sha256(target), sha256(data))
              yield* DataChannel.closeData(socket)
            }))

            // Truncated: the client closes TCP without close_notify, as a cut connection or an attacker would.
            yield* Effect.scoped(Effect.gen(function*() {
              const listener = yield* DataChannel.passive({ controlSocket: control.socket, tls: options })
              const accepting = yield* Effect.forkChild(listener.accept("receive"))
              const raw = yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
              const client = yield* track(tls.connect({ socket: raw, host: "127.0.0.1", session: control.session, rejectUnauthorized: false, maxVersion: version }))
              const socket = yield* Fiber.join(accepting)
              client.write(data, () => raw.end())
              let written = 0
              const error = yield* Effect.flip(DataChannel.receiveFile(socket, { write: (_offset, chunk) => pace.pipe(Effect.andThen(Effect.sync(() => void (written += chunk.length)))) }, 0))
              assert.strictEqual(error.reason, "Truncated")
              assert.strictEqual(written, data.length)
              assert.isTrue(socket.destroyed)
            }))
          }))
      }
    })
  }

  it.effect("a data connection that names another server (SNI) than its control connection does not resume", () =>
    Effect.gen(function*() {
      const options = controlTls()
      const control = yield* tlsControl(options, { servername: "ftp.example" })
      const listener = yield* DataChannel.passive({ controlSocket: control.socket, tls: options })
      const accepting = yield* Effect.forkChild(Effect.flip(listener.accept("receive")))
      yield* tlsDataClient(listener.port, { session: control.session, servername: "other.example" })
      assert.strictEqual((yield* Fiber.join(accepting)).reason, "TlsSessionNotReused")
      // The same name as the control connection resumes.
      const again = yield* DataChannel.passive({ controlSocket: control.socket, tls: options })
      const second = yield* Effect.forkChild(again.accept("receive"))
      yield* tlsDataClient(again.port, { session: control.session, servername: "ftp.example" })
      assert.isTrue(((yield* Fiber.join(second)) as tls.TLSSocket).isSessionReused())
    }))

  it.effect("a TLS 1.2 client without session tickets cannot resume (session IDs are not cached): refused", () =>
    Effect.gen(function*() {
      const options = controlTls()
      const noTickets = { maxVersion: "TLSv1.2", secureOptions: crypto.constants.SSL_OP_NO_TICKET } as const
      const control = yield* tlsControl(options, noTickets)
      const listener = yield* DataChannel.passive({ controlSocket: control.socket, tls: options })
      const accepting = yield* Effect.forkChild(Effect.flip(listener.accept("receive")))
      yield* tlsDataClient(listener.port, { ...noTickets, session: control.session })
      assert.strictEqual((yield* Fiber.join(accepting)).reason, "TlsSessionNotReused")
    }))

  it.effect("refuses TLS 1.1 and an ALPN protocol other than ftp (ALPACA)", () =>
    Effect.gen(function*() {
      const options = controlTls()
      const control = yield* tlsControl(options)
      for (const client of [{ ALPNProtocols: ["http/1.1"] }, { minVersion: "TLSv1", maxVersion: "TLSv1.1", ciphers: "DEFAULT@SECLEVEL=0" }] as const) {
        yield* Effect.scoped(Effect.gen(function*() {
          const listener = yield* DataChannel.passive({ controlSocket: control.socket, tls: options })
          const accepting = yield* Effect.forkChild(Effect.flip(listener.accept("receive")))
          yield* tlsDataClient(listener.port, { ...client, session: control.session })
          const error = yield* Fiber.join(accepting)
          assert.strictEqual(error.reason, "TlsHandshakeFailed")
          assert.strictEqual(error.code, "ALPNProtocols" in client ? "ERR_SSL_NO_APPLICATION_PROTOCOL" : "ERR_SSL_UNSUPPORTED_PROTOCOL")
        }))
      }
      // ALPN "ftp", or none, is fine.
      const listener = yield* DataChannel.passive({ controlSocket: control.socket, tls: options })
      const accepting = yield* Effect.forkChild(listener.accept("receive"))
      yield* tlsDataClient(listener.port, { ALPNProtocols: ["ftp"], session: control.session })
      const socket = yield* Fiber.join(accepting)
      assert.strictEqual((socket as tls.TLSSocket).alpnProtocol, "ftp")
    }))

  it.effect("a foreign IP cannot even start a TLS handshake on the passive port", () =>
    Effect.gen(function*() {
      const options = controlTls()
      const control = yield* tlsControl(options)
      const listener = yield* DataChannel.passive({ controlSocket: control.socket, tls: options })
      const accepting = yield* Effect.forkChild(listener.accept("receive"))
      const thief = yield* tlsDataClient(listener.port, { session: control.session }, "127.0.0.2")
      yield* on(thief.socket, "close")
      const client = yield* tlsDataClient(listener.port, { session: control.session })
      const socket = yield* Fiber.join(accepting)
      const received = collect(client.socket)
      yield* DataChannel.writeAll(socket, Buffer.from("ok"))
      yield* DataChannel.closeData(socket)
      assert.strictEqual((yield* received.done).bytes, 2)
      assert.isTrue(client.closeNotify())
    }))

  it.effect("active mode under PROT P: the server is the TLS server and checks resumption too", () =>
    Effect.gen(function*() {
      const options = controlTls()
      const control = yield* tlsControl(options)
      const connectBack = (session: Buffer | undefined) =>
        Effect.gen(function*() {
          const clientListener = net.createServer()
          const client = yield* Deferred.make<tls.TLSSocket>()
          clientListener.on("connection", (raw) => {
            raw.on("error", ignore)
            const secure = tls.connect({ socket: raw, host: "127.0.0.1", rejectUnauthorized: false, ...(session ? { session } : {}) })
            secure.on("error", ignore)
            Deferred.doneUnsafe(client, Effect.succeed(secure))
          })
          const port = yield* listen(clientListener)
          const socket = yield* Effect.result(DataChannel.active({ controlSocket: control.socket, direction: "receive", tls: options, target: { host: "127.0.0.1", port } }))
          yield* track(yield* Deferred.await(client))
          return socket
        })
      const resumed = yield* Effect.scoped(connectBack(control.session).pipe(Effect.map((r) => r._tag)))
      assert.strictEqual(resumed, "Success")
      const fresh = yield* Effect.scoped(connectBack(undefined))
      assert.isTrue(fresh._tag === "Failure" && fresh.failure.reason === "TlsSessionNotReused")
    }))
})

// --- transfers ------------------------------------------------------------------------------------------------------------

describe("sendFile / receiveFile", () => {
  const data = crypto.randomBytes(20 * MiB)
  const digest = sha256(data)

  it.effect("20 MiB download and upload in clear, checksums match", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      yield* Effect.scoped(Effect.gen(function*() {
        const listener = yield* DataChannel.passive({ controlSocket: control.socket })
        const accepting = yield* Effect.forkChild(listener.accept("receive"))
        const client = yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
        const socket = yield* Fiber.join(accepting)
        const received = collect(client)
        const { bytes } = yield* DataChannel.sendFile(socket, source(data), 0)
        yield* DataChannel.closeData(socket)
        assert.strictEqual(bytes, data.length)
        assert.deepStrictEqual(yield* received.done, { bytes: data.length, digest })
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const listener = yield* DataChannel.passive({ controlSocket: control.socket })
        const accepting = yield* Effect.forkChild(listener.accept("receive"))
        const client = yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
        const socket = yield* Fiber.join(accepting)
        const target = Buffer.alloc(data.length)
        client.end(data)
        const { bytes } = yield* DataChannel.receiveFile(socket, { write: (offset, chunk) => Effect.sync(() => target.set(chunk, offset)) }, 0)
        yield* DataChannel.closeData(socket)
        assert.strictEqual(bytes, data.length)
        assert.strictEqual(sha256(target), digest)
      }))
    }))

  it.effect("20 MiB download and upload over TLS, checksums match", () =>
    Effect.gen(function*() {
      const options = controlTls()
      const control = yield* tlsControl(options)
      yield* Effect.scoped(Effect.gen(function*() {
        const listener = yield* DataChannel.passive({ controlSocket: control.socket, tls: options })
        const accepting = yield* Effect.forkChild(listener.accept("receive"))
        const client = yield* tlsDataClient(listener.port, { session: control.session })
        const socket = yield* Fiber.join(accepting)
        const received = collect(client.socket)
        yield* DataChannel.sendFile(socket, source(data), 0)
        yield* DataChannel.closeData(socket)
        assert.deepStrictEqual(yield* received.done, { bytes: data.length, digest })
        assert.isTrue(client.closeNotify())
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const listener = yield* DataChannel.passive({ controlSocket: control.socket, tls: options })
        const accepting = yield* Effect.forkChild(listener.accept("receive"))
        const client = yield* tlsDataClient(listener.port, { session: control.session })
        const socket = yield* Fiber.join(accepting)
        const target = Buffer.alloc(data.length)
        client.socket.end(data)
        const { bytes } = yield* DataChannel.receiveFile(socket, { write: (offset, chunk) => Effect.sync(() => target.set(chunk, offset)) }, 0)
        yield* DataChannel.closeData(socket)
        assert.strictEqual(bytes, data.length)
        assert.strictEqual(sha256(target), digest)
      }))
    }))

  it.effect("REST: sendFile and receiveFile start at the given offset", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const offset = 7 * MiB + 3
      yield* Effect.scoped(Effect.gen(function*() {
        const listener = yield* DataChannel.passive({ controlSocket: control.socket })
        const accepting = yield* Effect.forkChild(listener.accept("receive"))
        const client = yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
        const socket = yield* Fiber.join(accepting)
        const received = collect(client)
        const { bytes } = yield* DataChannel.sendFile(socket, source(data), offset)
        yield* DataChannel.closeData(socket)
        assert.strictEqual(bytes, data.length - offset)
        assert.deepStrictEqual(yield* received.done, { bytes: data.length - offset, digest: sha256(data.subarray(offset)) })
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const listener = yield* DataChannel.passive({ controlSocket: control.socket })
        const accepting = yield* Effect.forkChild(listener.accept("receive"))
        const client = yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
        const socket = yield* Fiber.join(accepting)
        const offsets: Array<number> = []
        client.end(data.subarray(0, MiB))
        const { bytes } = yield* DataChannel.receiveFile(socket, { write: (at) => Effect.sync(() => void offsets.push(at)) }, offset)
        assert.strictEqual(bytes, MiB)
        assert.strictEqual(offsets[0], offset)
        yield* DataChannel.closeData(socket)
      }))
    }))

  it.live("a client that does not read makes the download stall, not the server buffer the file", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const listener = yield* DataChannel.passive({ controlSocket: control.socket })
      const accepting = yield* Effect.forkChild(listener.accept("receive"))
      const client = yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
      client.pause()
      const socket = yield* Fiber.join(accepting)
      const reads = { count: 0, highest: 0 }
      let peakWritable = 0
      // sendFile reads chunk k + 1, then waits for chunk k's write. The stall is real once,
      // a full event-loop turn after a read (write callbacks of completed writes have run by
      // then), bytes are still waiting in the socket: the kernel's buffers are full and the
      // client reads nothing, so that write never completes and no further read follows.
      const stalled = yield* Deferred.make<void>()
      const loopTurn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      const watched = (offset: number, length: number) =>
        source(data, reads)(offset, length).pipe(
          Effect.tap(() => Effect.sync(() => void (peakWritable = Math.max(peakWritable, socket.writableLength)))),
          Effect.tap(() => loopTurn),
          Effect.tap(() => socket.writableLength > 0 ? Deferred.succeed(stalled, undefined) : Effect.void)
        )
      const sending = yield* Effect.forkChild(DataChannel.sendFile(socket, watched, 0))
      yield* Deferred.await(stalled)
      const readsAtStall = reads.count
      yield* loopTurn
      assert.strictEqual(reads.count, readsAtStall, "parked: no read after the stall")
      assert.isUndefined(sending.pollUnsafe())
      // What the server read ahead sits in kernel buffers plus at most two chunks in the process.
      assert.isBelow(reads.highest, data.length / 2)
      assert.isAtMost(peakWritable, 2 * DataChannel.chunkSize)
      assert.isAtMost(socket.writableLength, 2 * DataChannel.chunkSize)
      const received = collect(client)
      client.resume()
      yield* Fiber.join(sending)
      yield* DataChannel.closeData(socket)
      assert.deepStrictEqual(yield* received.done, { bytes: data.length, digest })
    }))

  it.effect("a slow disk makes the upload wait, not the server buffer it", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const listener = yield* DataChannel.passive({ controlSocket: control.socket })
      const accepting = yield* Effect.forkChild(listener.accept("receive"))
      const client = yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
      const socket = yield* Fiber.join(accepting)
      client.end(data)
      let peak = 0
      let largest = 0
      const hash = crypto.createHash("sha256")
      // Each write waits for the event loop to turn twice, so the client is always ahead of the disk.
      const slowWrite = (_offset: number, chunk: Uint8Array) =>
        Effect.promise(() => new Promise<void>((resolve) => setImmediate(() => setImmediate(resolve)))).pipe(
          Effect.tap(() => Effect.sync(() => {
            hash.update(chunk)
            largest = Math.max(largest, chunk.length)
            peak = Math.max(peak, socket.readableLength)
          }))
        )
      const { bytes } = yield* DataChannel.receiveFile(socket, { write: slowWrite }, 0)
      yield* DataChannel.closeData(socket)
      assert.strictEqual(bytes, data.length)
      assert.strictEqual(hash.digest("hex"), digest)
      // Node's socket buffer (1 MiB) plus one chunk read past it; batches are at most one staging buffer.
      assert.isAtMost(peak, 2 * DataChannel.chunkSize)
      assert.isAtMost(largest, DataChannel.chunkSize)
    }))

  it.effect("interrupting a transfer (ABOR) destroys the data socket: the client sees no clean end", () =>
    Effect.gen(function*() {
      const options = controlTls()
      const control = yield* tlsControl(options)
      const listener = yield* DataChannel.passive({ controlSocket: control.socket, tls: options })
      const accepting = yield* Effect.forkChild(listener.accept("receive"))
      const client = yield* tlsDataClient(listener.port, { session: control.session })
      client.socket.pause()
      const socket = yield* Fiber.join(accepting)
      const firstRead = yield* Deferred.make<void>()
      const read = (offset: number, length: number) =>
        Deferred.succeed(firstRead, undefined).pipe(Effect.andThen(source(data)(offset, length)))
      const sending = yield* Effect.forkChild(DataChannel.sendFile(socket, read, 0))
      yield* Deferred.await(firstRead)
      const closed = on(client.socket, "close")
      yield* Fiber.interrupt(sending)
      assert.isTrue(socket.destroyed)
      yield* closed
      assert.notStrictEqual(client.closeNotify(), true)
    }))

  it.effect("a client that goes away mid-download fails sendFile with Closed", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const listener = yield* DataChannel.passive({ controlSocket: control.socket })
      const accepting = yield* Effect.forkChild(listener.accept("receive"))
      const client = yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
      const socket = yield* Fiber.join(accepting)
      let reads = 0
      const read = (offset: number, length: number) =>
        Effect.sync(() => {
          if (++reads === 3) client.resetAndDestroy()
        }).pipe(Effect.andThen(source(data)(offset, length)))
      const error = yield* Effect.flip(DataChannel.sendFile(socket, read, 0))
      assert.strictEqual(error.reason, "Closed")
      assert.isTrue(socket.destroyed)
    }))

  it.effect("a reset mid-upload is Truncated, in clear too", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const listener = yield* DataChannel.passive({ controlSocket: control.socket })
      const accepting = yield* Effect.forkChild(listener.accept("receive"))
      const client = yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
      const socket = yield* Fiber.join(accepting)
      client.write(data.subarray(0, MiB), () => client.resetAndDestroy())
      const error = yield* Effect.flip(DataChannel.receiveFile(socket, { write: () => Effect.void }, 0))
      assert.strictEqual(error.reason, "Truncated")
    }))

  it.effect("a failing storage read ends the download abruptly", () =>
    Effect.gen(function*() {
      const control = yield* plainControl
      const listener = yield* DataChannel.passive({ controlSocket: control.socket })
      const accepting = yield* Effect.forkChild(listener.accept("receive"))
      const client = yield* track(net.connect({ host: "127.0.0.1", port: listener.port }))
      const socket = yield* Fiber.join(accepting)
      const closed = on(client, "close")
      const error = yield* Effect.flip(DataChannel.sendFile(socket, () => Effect.fail("EIO" as const), 0))
      assert.strictEqual(error, "EIO")
      yield* closed
    }))
})
