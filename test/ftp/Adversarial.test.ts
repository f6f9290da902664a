/**
 * The FTP/FTPS side of the security checklist (sections B, C, D and F), each
 * pitfall a named test against a real server over raw sockets on loopback:
 * FTP bounce, passive port stealing and exhaustion, STARTTLS injection, the
 * TLS policy, data TLS session binding and truncation, long lines, reply
 * floods, reply injection, Telnet IAC, the pre-login surface, login attempts,
 * REST/ALLO, ABOR and QUIT mid-transfer.
 *
 * Every wait is on a socket event, a reply or a published event; TestClock
 * (it.effect) never moves, so no server timeout can fire behind a test's back.
 * The one exception is the reply-flood test: a server that throttles correctly
 * shows nothing but silence, so that test turns the event loop until the
 * server's socket is paused and idle (no timer, no timing assertion).
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Option, Queue, Stream } from "effect"
import * as crypto from "node:crypto"
import diagnostics from "node:diagnostics_channel"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import type * as tls from "node:tls"
import { Events, type UploadCompleted } from "../../src/services/Events.js"
import { Sessions } from "../../src/services/Sessions.js"
import {
  activeListener,
  acceptedData,
  connect,
  type DataConnectOptions,
  type FtpRawClient,
  type FtpReply,
  ftpTestServer,
  onceEvent,
  openData,
  passiveStor,
  parsePasvReply,
  sha256,
  track
} from "../utils/FtpRawClient.js"
import type { TestServerOptions } from "../utils/TestServer.js"

const MiB = 1024 * 1024

/** A server with FTP whose control connection may stay in clear (the test is not about TLS). */
const plainServer = (ftp: NonNullable<TestServerOptions["ftp"]> = {}) =>
  ftpTestServer({ ftp: { requireTLS: false, ...ftp } })

/** Every reply until the server closes the connection. */
const repliesUntilClosed = (client: FtpRawClient) =>
  Effect.gen(function*() {
    const replies: Array<FtpReply> = []
    while (true) {
      const next = yield* Effect.result(client.reply)
      if (next._tag === "Failure") return replies
      replies.push(next.success)
    }
  })

/** Completed uploads, from now on, in a queue. */
const uploads = (context: Context.Context<Events>) =>
  Effect.gen(function*() {
    const stream: Stream.Stream<UploadCompleted> = yield* Context.get(context, Events).subscribeUploads
    return yield* Stream.toQueue(stream, { capacity: "unbounded" })
  })

/** PASV, the command (expecting 150), the data connection; what arrived and the final reply. */
const download = (client: FtpRawClient, line: string, options: DataConnectOptions = {}) =>
  Effect.gen(function*() {
    const port = yield* client.pasv
    yield* client.expect(line, 150)
    const data = yield* openData(port, options)
    const bytes = yield* data.done
    const reply = yield* client.reply
    return { bytes, reply, data }
  })

/** PASV, STOR (expecting 150), sends `content` and ends the stream; the final reply. */
const upload = (client: FtpRawClient, name: string, content: Uint8Array, options: DataConnectOptions = {}) =>
  Effect.gen(function*() {
    const port = yield* client.pasv
    yield* client.expect(`STOR ${name}`, 150)
    const data = yield* openData(port, options)
    yield* data.connected
    data.socket.end(content)
    yield* data.closed
    return yield* client.reply
  })

const entries = (dir: string) => fs.readdirSync(dir).sort()

describe("FTP data channel (checklist B)", () => {
  it.effect("PORT/EPRT to another host or to a privileged port: 501 before any connection; own IP ≥ 1024 works", () =>
    Effect.gen(function*() {
      const server = yield* plainServer({ allowActiveMode: true })
      const root = server.roots["alice"]!
      fs.writeFileSync(path.join(root, "hello.txt"), "hello, active mode\n")
      const client = yield* connect(server.ftpPort)
      yield* client.login("alice")
      // A listener on another loopback address: a bounce target the server must never reach.
      const elsewhere = yield* activeListener("127.0.0.2")
      const bounces = [
        "PORT 10,0,0,1,4,1",
        "EPRT |1|10.0.0.1|1025|",
        `PORT ${elsewhere.portArgument}`,
        `EPRT |1|127.0.0.2|${elsewhere.port}|`,
        "PORT 127,0,0,1,0,21",
        "EPRT |1|127.0.0.1|25|",
        "PORT 127,0,0,1,3,255",
        "EPRT |2|::1|2000|",
        "EPRT |2|::ffff:10.0.0.1|2000|"
      ]
      for (const line of bounces) {
        const reply = yield* client.command(line)
        assert.strictEqual(reply.code, 501, `${line} → ${reply.text}`)
        // Nothing was prepared: a transfer now has no data connection at all.
        const list = yield* client.command("LIST")
        assert.strictEqual(list.code, 425, `LIST after ${line} → ${list.text}`)
      }
      assert.strictEqual(elsewhere.count(), 0, "the server never connected to the bounce target")
      yield* client.expect("PWD", 257)

      // Back to the control connection's own IP on an unprivileged port.
      const mine = yield* activeListener("127.0.0.1")
      yield* client.expect(`PORT ${mine.portArgument}`, 200)
      yield* client.expect("LIST", 150)
      const listing = yield* acceptedData(yield* mine.next)
      assert.include((yield* listing.done).toString("utf8"), "hello.txt")
      yield* client.expectReply(226)

      yield* client.expect(`EPRT |1|127.0.0.1|${mine.port}|`, 200)
      yield* client.expect("RETR hello.txt", 150)
      const file = yield* acceptedData(yield* mine.next)
      assert.strictEqual((yield* file.done).toString("utf8"), "hello, active mode\n")
      yield* client.expectReply(226)

      // An upload over a connection the server made (written by the addon's thread, as passive ones are).
      const content = crypto.randomBytes(4 * 1024 * 1024 + 17)
      yield* client.expect(`PORT ${mine.portArgument}`, 200)
      yield* client.expect("STOR up.bin", 150)
      const upload = yield* acceptedData(yield* mine.next)
      upload.socket.end(content)
      yield* upload.closed
      yield* client.expectReply(226)
      assert.isTrue(fs.readFileSync(path.join(root, "up.bin")).equals(content))
    }))

  it.effect("PORT/EPRT are 502 while active mode is off", () =>
    Effect.gen(function*() {
      const server = yield* plainServer()
      const client = yield* connect(server.ftpPort)
      yield* client.login("alice")
      const mine = yield* activeListener("127.0.0.1")
      yield* client.expect(`PORT ${mine.portArgument}`, 502)
      yield* client.expect(`EPRT |1|127.0.0.1|${mine.port}|`, 502)
      yield* client.expect("LIST", 425)
      assert.strictEqual(mine.count(), 0)
    }))

  it.effect("passive stealing: a connection from 127.0.0.2 is dropped without data; the real client gets its RETR", () =>
    Effect.gen(function*() {
      const server = yield* plainServer()
      const secret = crypto.randomBytes(256 * 1024)
      fs.writeFileSync(path.join(server.roots["alice"]!, "secret.bin"), secret)
      const client = yield* connect(server.ftpPort)
      yield* client.login("alice")
      for (const mode of ["PASV", "EPSV"] as const) {
        const port = mode === "PASV" ? yield* client.pasv : yield* client.epsv
        // Before the transfer command…
        const early = yield* openData(port, { localAddress: "127.0.0.2" })
        assert.strictEqual((yield* early.done).length, 0, `${mode}: early thief got data`)
        yield* client.expect("RETR secret.bin", 150)
        // …and while the server waits for the data connection.
        const late = yield* openData(port, { localAddress: "127.0.0.2" })
        assert.strictEqual((yield* late.done).length, 0, `${mode}: thief got data`)
        const data = yield* openData(port)
        assert.strictEqual(sha256(yield* data.done), sha256(secret), `${mode}: the real client's download`)
        yield* client.expectReply(226)
      }
    }))

  it.effect("10,000 PASV without connecting: every reply 227 (or 425), memory bounded, the ports go back to the pool", () =>
    Effect.gen(function*() {
      const server = yield* plainServer({ passivePorts: "31000-31003" })
      fs.writeFileSync(path.join(server.roots["alice"]!, "f.txt"), "x")
      const first = yield* connect(server.ftpPort)
      yield* first.login("alice")
      const rssBefore = process.memoryUsage().rss
      const counts = { 227: 0, 425: 0 }
      const chunk = 250
      for (let sent = 0; sent < 10_000; sent += chunk) {
        yield* first.write("PASV\r\n".repeat(chunk))
        for (let i = 0; i < chunk; i++) {
          const reply = yield* first.reply
          assert.include([227, 425], reply.code, reply.text)
          counts[reply.code as 227 | 425]++
          if (reply.code === 227) {
            const port = parsePasvReply(reply)!.port
            assert.isTrue(port >= 31000 && port <= 31003, `port ${port} in range`)
          }
        }
      }
      const rssAfter = process.memoryUsage().rss
      assert.strictEqual(counts[227] + counts[425], 10_000)
      assert.isAbove(counts[227], 0)
      assert.isBelow(rssAfter - rssBefore, 200 * MiB)
      yield* first.expect("NOOP", 200)

      // Each PASV replaced the one before: the first session holds one port, and a second session still gets one.
      const second = yield* connect(server.ftpPort)
      yield* second.login("alice")
      const { bytes, reply } = yield* download(second, "NLST")
      assert.strictEqual(reply.code, 226)
      assert.strictEqual(bytes.toString("utf8"), "f.txt\r\n")
      // And the first session's last passive port still works.
      const last = yield* first.pasv
      yield* first.expect("RETR f.txt", 150)
      const data = yield* openData(last)
      assert.strictEqual((yield* data.done).toString(), "x")
      yield* first.expectReply(226)
    }), 120_000)

  it.effect("passive ports are capped by the range and go back to the pool when a session ends", () =>
    Effect.gen(function*() {
      // Outside the ephemeral range and the harness's default range, so no other test holds these ports.
      const server = yield* plainServer({ passivePorts: "31010-31011" })
      const auth = yield* Stream.toQueue(yield* Context.get(server.context, Events).subscribeAuth, { capacity: "unbounded" })
      const logout = Effect.gen(function*() {
        while ((yield* Queue.take(auth))._tag !== "Logout") {
          // logins of the sessions above
        }
      })
      const sessions: Array<FtpRawClient> = []
      for (let i = 0; i < 3; i++) {
        const client = yield* connect(server.ftpPort)
        yield* client.login("alice")
        sessions.push(client)
      }
      const [first, second, third] = sessions as [FtpRawClient, FtpRawClient, FtpRawClient]
      const a = yield* first.pasv
      const b = yield* second.epsv
      assert.deepStrictEqual([a, b].sort(), [31010, 31011])
      yield* third.expect("PASV", 425)
      // A session that goes away (QUIT) frees its port.
      yield* first.expect("QUIT", 221)
      yield* first.closed
      yield* logout
      assert.include([31010, 31011], yield* third.pasv)
      yield* second.expect("EPSV", 229)
      // So does one that just disconnects: once its session has ended (its logout event), the port is free.
      second.raw.destroy()
      yield* logout
      const fourth = yield* connect(server.ftpPort)
      yield* fourth.login("alice")
      const reply = yield* fourth.command("PASV")
      assert.strictEqual(reply.code, 227, reply.text)
    }))

  it.effect("after 226 the session is ready at once: a command sent on receipt of 226 is never 503 (300 transfers)", () =>
    Effect.gen(function*() {
      const server = yield* plainServer()
      fs.writeFileSync(path.join(server.roots["alice"]!, "f.txt"), "x")
      const client = yield* connect(server.ftpPort)
      yield* client.login("alice")
      // The client answers each 226 with its next command right away, as pipelining clients do.
      for (let i = 0; i < 300; i++) {
        const { bytes, reply } = yield* download(client, "NLST")
        assert.strictEqual(reply.code, 226)
        assert.strictEqual(bytes.toString(), "f.txt\r\n")
      }
      yield* client.expect("NOOP", 200)
    }), 120_000)

  it.effect("REST beyond the end of the file: RETR refused with 554 and no data", () =>
    Effect.gen(function*() {
      const server = yield* plainServer()
      fs.writeFileSync(path.join(server.roots["alice"]!, "ten.bin"), "0123456789")
      const client = yield* connect(server.ftpPort)
      yield* client.login("alice")
      yield* client.expect("REST 100", 350)
      const port = yield* client.pasv
      const data = yield* openData(port)
      const first = yield* client.command("RETR ten.bin")
      const final = first.code === 150 ? yield* client.reply : first
      assert.strictEqual(final.code, 554, final.text)
      assert.strictEqual((yield* data.done).length, 0)
      // REST applies once: the next RETR is whole.
      const whole = yield* download(client, "RETR ten.bin")
      assert.strictEqual(whole.reply.code, 226)
      assert.strictEqual(whole.bytes.toString(), "0123456789")
      // A REST inside the file works.
      yield* client.expect("REST 7", 350)
      const tail = yield* download(client, "RETR ten.bin")
      assert.strictEqual(tail.bytes.toString(), "789")
    }))

  it.effect("ALLO 100 then a STOR of 50 bytes: 552 and no upload event", () =>
    Effect.gen(function*() {
      const server = yield* plainServer()
      const events = yield* uploads(server.context)
      const client = yield* connect(server.ftpPort)
      yield* client.login("alice")
      yield* client.expect("ALLO 100", 200)
      const short = yield* upload(client, "short.bin", Buffer.alloc(50, 7))
      assert.strictEqual(short.code, 552, short.text)
      // ALLO applies to one transfer: the next STOR completes and is the first event.
      const whole = yield* upload(client, "whole.bin", Buffer.alloc(50, 8))
      assert.strictEqual(whole.code, 226)
      const event = yield* Queue.take(events)
      assert.strictEqual(event.path, "/whole.bin")
      assert.strictEqual(event.size, 50)
      assert.isTrue(Option.isNone(yield* Queue.poll(events)))
    }))

  it.effect("ABOR during a large RETR: 426 then 226, the control connection stays usable", () =>
    Effect.gen(function*() {
      const server = yield* plainServer()
      fs.writeFileSync(path.join(server.roots["alice"]!, "big.bin"), crypto.randomBytes(16 * MiB))
      const client = yield* connect(server.ftpPort)
      yield* client.login("alice")
      const port = yield* client.pasv
      yield* client.expect("RETR big.bin", 150)
      // A client that does not read and never closes its side: the transfer cannot finish by itself.
      const data = yield* openData(port, { paused: true, allowHalfOpen: true })
      yield* data.connected
      yield* client.expect("NOOP", 200)
      yield* client.expect("PWD", 503)
      yield* client.expect("ABOR", 426)
      yield* client.expectReply(226)
      yield* client.expect("NOOP", 200)
      yield* client.expect("PWD", 257)
      // The server closed the data connection: its FIN comes after whatever it had sent.
      data.socket.resume()
      yield* data.ended
      // ABOR without a transfer.
      yield* client.expect("ABOR", 225)
    }))

  it.effect("ABOR during a STOR: 426 then 226, and the aborted upload is never announced", () =>
    Effect.gen(function*() {
      const server = yield* plainServer()
      const events = yield* uploads(server.context)
      const client = yield* connect(server.ftpPort)
      yield* client.login("alice")
      const data = yield* passiveStor(client, "aborted.bin")
      data.socket.write(crypto.randomBytes(MiB))
      yield* client.expect("ABOR", 426)
      yield* client.expectReply(226)
      yield* data.closed
      yield* client.expect("NOOP", 200)
      const done = yield* upload(client, "done.bin", Buffer.from("whole"))
      assert.strictEqual(done.code, 226)
      assert.strictEqual((yield* Queue.take(events)).path, "/done.bin")
      assert.isTrue(Option.isNone(yield* Queue.poll(events)))

      // QUIT in the middle of a STOR ends it the same way.
      const quitData = yield* passiveStor(client, "quit.bin")
      quitData.socket.write(crypto.randomBytes(MiB))
      yield* client.send("QUIT")
      const last = yield* repliesUntilClosed(client)
      assert.notInclude(last.map((r) => r.code), 226)
      assert.include(last.map((r) => r.code), 221)
      yield* quitData.closed
      assert.isTrue(Option.isNone(yield* Queue.poll(events)), "no completion event for the upload cut by QUIT")
    }))
})

describe("FTPS (checklist C)", () => {
  it.effect("STARTTLS injection: a command pipelined after AUTH TLS closes the connection", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer()
      const ca = fs.readFileSync(server.certFile)

      // In one write.
      const injected = yield* connect(server.ftpPort, { ca })
      yield* injected.write("AUTH TLS\r\nUSER alice\r\n")
      const replies = yield* repliesUntilClosed(injected)
      assert.deepStrictEqual(replies.filter((r) => r.code !== 234).map((r) => r.text), [], "nothing but (at most) 234")
      yield* injected.closed

      // A partial line after AUTH TLS counts too.
      const partial = yield* connect(server.ftpPort, { ca })
      yield* partial.write("AUTH TLS\r\nUS")
      assert.deepStrictEqual((yield* repliesUntilClosed(partial)).filter((r) => r.code !== 234).map((r) => r.text), [])

      // Plaintext after 234 goes to the TLS handshake, which fails: never executed.
      const late = yield* connect(server.ftpPort, { ca })
      yield* late.expect("AUTH TLS", 234)
      yield* late.write("USER alice\r\nPASS alice-password\r\n")
      assert.deepStrictEqual((yield* repliesUntilClosed(late)).map((r) => r.text), [])

      // Commands pipelined *before* AUTH TLS are fine: only bytes after it are refused.
      const eager = yield* connect(server.ftpPort, { ca })
      yield* eager.write("FEAT\r\nAUTH TLS\r\n")
      yield* eager.expectReply(211)
      yield* eager.expectReply(234)
      yield* eager.upgrade
      yield* eager.expect("PBSZ 0", 200)

      // The server still serves.
      const honest = yield* connect(server.ftpPort, { ca })
      yield* honest.secureLogin("alice")
      yield* honest.expect("PWD", 257)
    }))

  // Found by test/fuzz: the session's last step waited for the callback of
  // end() on a socket destroyed after it ended and before it finished, which
  // never comes; the session stayed (holding its pre-auth slot, or its jail
  // after login) until the login or idle timeout.
  it.effect("a client that sends AUTH TLS and vanishes: its session ends at once, before or after login", () =>
    Effect.gen(function*() {
      const server = yield* plainServer()
      for (const login of [false, true]) {
        for (let i = 0; i < 5; i++) {
          const client = yield* connect(server.ftpPort)
          if (login) yield* client.login("alice")
          yield* client.write("AUTH TLS\r\n")
          client.raw.destroy()
        }
      }
      // TestClock never moves here: only the sessions noticing their sockets end them.
      yield* Context.get(server.context, Sessions).awaitEmpty
    }))

  it.effect("requireTLS: USER/PASS in clear 534, PBSZ/PROT before AUTH 503, PROT before PBSZ 503, PROT C/CCC 534, PROT S/E 504", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer()
      const client = yield* connect(server.ftpPort, { ca: fs.readFileSync(server.certFile) })
      assert.include([534, 530], (yield* client.command("USER alice")).code)
      assert.include([534, 530, 503], (yield* client.command("PASS alice-password")).code)
      yield* client.expect("PBSZ 0", 503)
      yield* client.expect("PROT P", 503)
      yield* client.expect("CCC", 534)
      yield* client.startTls
      yield* client.expect("PROT P", 503)
      yield* client.expect("PBSZ 0", 200)
      yield* client.expect("PROT C", 534)
      yield* client.expect("PROT S", 504)
      yield* client.expect("PROT E", 504)
      yield* client.expect("CCC", 534)
      yield* client.expect("AUTH TLS", 503)
      yield* client.login("alice")
      yield* client.expect("PROT C", 534)
      yield* client.expect("CCC", 534)
      yield* client.expect("PROT P", 200)
      yield* client.expect("NOOP", 200)
      assert.isTrue(client.isTls())
    }))

  it.effect("requireTLS: without PROT P, no file data ever flows in clear", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer()
      fs.writeFileSync(path.join(server.roots["alice"]!, "confidential.txt"), "top secret contents")
      const client = yield* connect(server.ftpPort, { ca: fs.readFileSync(server.certFile) })
      yield* client.startTls
      yield* client.login("alice")
      // The client never sent PBSZ/PROT: the protection level is still Clear.
      const pasv = yield* client.command("PASV")
      if (pasv.code !== 227) return assert.isAtLeast(pasv.code, 500, pasv.text)
      const port = parsePasvReply(pasv)!.port
      const data = yield* openData(port, { allowHalfOpen: true })
      yield* data.connected
      const retr = yield* client.command("RETR confidential.txt")
      // Whatever the server does (refuse, or wait for a TLS handshake), ending our side bounds the test.
      data.socket.end()
      const final = retr.code === 150 ? yield* client.reply : retr
      const received = (yield* data.done).toString("latin1")
      assert.notInclude(received, "top secret", "file contents went over the data connection in clear")
      assert.notStrictEqual(final.code, 226, final.text)
    }))

  it.effect("all pre-TLS state is reset by AUTH TLS: USER, REST, RNFR, ALLO", () =>
    Effect.gen(function*() {
      const server = yield* plainServer()
      const root = server.roots["alice"]!
      fs.writeFileSync(path.join(root, "a.txt"), "0123456789")
      const ca = fs.readFileSync(server.certFile)
      const events = yield* uploads(server.context)

      // USER before AUTH, PASS after: the user name did not survive.
      const first = yield* connect(server.ftpPort, { ca })
      yield* first.expect("USER alice", 331)
      yield* first.startTls
      yield* first.expect("PASS alice-password", 503)
      yield* first.login("alice")

      // REST, ALLO and RNFR given in clear are forgotten.
      const second = yield* connect(server.ftpPort, { ca })
      yield* second.login("alice")
      yield* second.expect("REST 5", 350)
      yield* second.expect("ALLO 100", 200)
      yield* second.expect("RNFR a.txt", 350)
      yield* second.startTls
      yield* second.expect("RNTO b.txt", 503)
      assert.deepStrictEqual(entries(root), ["a.txt"])
      const whole = yield* download(second, "RETR a.txt")
      assert.strictEqual(whole.reply.code, 226)
      assert.strictEqual(whole.bytes.toString(), "0123456789", "REST did not survive AUTH TLS")
      const stored = yield* upload(second, "fifty.bin", Buffer.alloc(50, 1))
      assert.strictEqual(stored.code, 226, `ALLO did not survive AUTH TLS: ${stored.text}`)
      assert.strictEqual((yield* Queue.take(events)).path, "/fifty.bin")
    }))

  for (const version of ["TLSv1.3", "TLSv1.2"] as const) {
    it.effect(`PROT P data connections must resume their own control connection's TLS session (${version})`, () =>
      Effect.gen(function*() {
        const server = yield* ftpTestServer()
        const ca = fs.readFileSync(server.certFile)
        const content = crypto.randomBytes(MiB + 13)
        fs.writeFileSync(path.join(server.roots["alice"]!, "data.bin"), content)
        fs.writeFileSync(path.join(server.roots["reader"]!, "data.bin"), content)
        const victim = yield* connect(server.ftpPort, { ca, maxVersion: version })
        yield* victim.secureLogin("alice")
        const attacker = yield* connect(server.ftpPort, { ca, maxVersion: version })
        yield* attacker.secureLogin("reader")
        assert.isDefined(victim.session())
        assert.isDefined(attacker.session())
        assert.strictEqual((victim.socket() as tls.TLSSocket).getProtocol(), version)

        // A fresh TLS handshake (no session to resume).
        const fresh = yield* download(victim, "RETR data.bin", { tls: { ca, maxVersion: version } })
        assert.include([425, 522], fresh.reply.code, fresh.reply.text)
        assert.strictEqual(fresh.bytes.length, 0)
        yield* victim.expect("NOOP", 200)

        // The session of another control connection of the same server (same certificate).
        const stolen = yield* download(victim, "RETR data.bin", { tls: { ca, session: attacker.session(), maxVersion: version } })
        assert.include([425, 522], stolen.reply.code, stolen.reply.text)
        assert.strictEqual(stolen.bytes.length, 0)
        yield* victim.expect("NOOP", 200)

        // Its own session: the download arrives intact, twice.
        for (let i = 0; i < 2; i++) {
          const own = yield* download(victim, "RETR data.bin", { tls: { ca, session: victim.session(), maxVersion: version } })
          assert.strictEqual(own.reply.code, 226, own.reply.text)
          assert.isTrue(own.data.sessionReused())
          assert.strictEqual(sha256(own.bytes), sha256(content))
        }
        // The attacker's own transfers are unaffected.
        const theirs = yield* download(attacker, "RETR data.bin", { tls: { ca, session: attacker.session(), maxVersion: version } })
        assert.strictEqual(theirs.reply.code, 226, theirs.reply.text)
      }))
  }

  it.effect("a PROT P upload cut without close_notify is not completed and never announced", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer()
      const ca = fs.readFileSync(server.certFile)
      const events = yield* uploads(server.context)
      const client = yield* connect(server.ftpPort, { ca })
      yield* client.secureLogin("alice")
      const content = crypto.randomBytes(256 * 1024)

      // TCP FIN right after the data, no TLS close_notify: an attacker (or a cut line) truncating the file.
      const cut = yield* passiveStor(client, "cut.bin", { tls: { ca, session: client.session() } })
      cut.tls!.write(content, () => cut.raw.end())
      yield* cut.closed
      const refused = yield* client.reply
      assert.notStrictEqual(refused.code, 226, refused.text)
      assert.isAtLeast(refused.code, 400, refused.text)
      yield* client.expect("NOOP", 200)

      // With close_notify, the same upload completes, and it is the first event.
      const whole = yield* upload(client, "whole.bin", content, { tls: { ca, session: client.session() } })
      assert.strictEqual(whole.code, 226, whole.text)
      const event = yield* Queue.take(events)
      assert.strictEqual(event.path, "/whole.bin")
      assert.strictEqual(event.size, content.length)
      assert.isTrue(Option.isNone(yield* Queue.poll(events)))
    }))

  it.effect("implicit FTPS: the same binding holds on the implicit port", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer()
      const ca = fs.readFileSync(server.certFile)
      fs.writeFileSync(path.join(server.roots["alice"]!, "data.bin"), "implicit")
      const client = yield* connect(server.ftpsPort, { implicitTls: { ca } })
      assert.strictEqual(client.greeting.code, 220)
      yield* client.secureLogin("alice")
      const fresh = yield* download(client, "RETR data.bin", { tls: { ca } })
      assert.include([425, 522], fresh.reply.code, fresh.reply.text)
      const own = yield* download(client, "RETR data.bin", { tls: { ca, session: client.session() } })
      assert.strictEqual(own.reply.code, 226, own.reply.text)
      assert.strictEqual(own.bytes.toString(), "implicit")
    }))
})

describe("FTP control channel (checklist D)", () => {
  it.effect("a 1 MiB line is never split into commands: the connection closes, nothing is executed, others are served", () =>
    Effect.gen(function*() {
      const server = yield* plainServer()
      const root = server.roots["alice"]!
      fs.writeFileSync(path.join(root, "x"), "keep me")
      const bystander = yield* connect(server.ftpPort)
      yield* bystander.login("alice")

      const attacker = yield* connect(server.ftpPort)
      yield* attacker.login("alice")
      yield* attacker.write(`NOOP${"A".repeat(MiB)}\r\nDELE x\r\n`)
      const replies = yield* repliesUntilClosed(attacker)
      for (const reply of replies) assert.isAtLeast(reply.code, 500, `after the long line: ${reply.text}`)
      assert.isTrue(fs.existsSync(path.join(root, "x")))

      // Cut at exactly the limit, the tail would read "DELE x" (ProFTPD CVE-2008-4242).
      const splitter = yield* connect(server.ftpPort)
      yield* splitter.login("alice")
      yield* splitter.write(`NOOP ${"A".repeat(4096 - 5)}DELE x\r\n`)
      for (const reply of yield* repliesUntilClosed(splitter)) assert.isAtLeast(reply.code, 500, reply.text)
      assert.isTrue(fs.existsSync(path.join(root, "x")))

      // A line of exactly the limit is still a line.
      const exact = yield* connect(server.ftpPort)
      yield* exact.expect(`NOOP ${"A".repeat(4096 - 5)}`, 200)

      yield* bystander.expect("NOOP", 200)
      yield* bystander.expect("SIZE x", 213)
      const another = yield* connect(server.ftpPort)
      yield* another.login("alice")
    }))

  it.effect("a client that pipelines commands and never reads the replies is throttled, not buffered without bound (pre-login FEAT flood)", () =>
    Effect.gen(function*() {
      const server = yield* plainServer()
      // The server's side of the control connection, from Node's documented diagnostics channel.
      const accepted = yield* Queue.unbounded<net.Socket>()
      const onSocket = (message: unknown) => void Queue.offerUnsafe(accepted, (message as { readonly socket: net.Socket }).socket)
      yield* Effect.acquireRelease(
        Effect.sync(() => diagnostics.subscribe("net.server.socket", onSocket)),
        () => Effect.sync(() => void diagnostics.unsubscribe("net.server.socket", onSocket))
      )
      const client = yield* track(net.connect({ host: "127.0.0.1", port: server.ftpPort }))
      yield* onceEvent(client, "connect")
      let serverSide: net.Socket | undefined
      while (serverSide === undefined) {
        const socket = yield* Queue.take(accepted)
        if (socket.remotePort === client.localPort && socket.localPort === server.ftpPort) serverSide = socket
      }
      const control = serverSide
      // The client never reads: whatever the server answers piles up on its side.
      client.pause()
      const bound = 8 * MiB
      let worst = 0
      const observe = () => void (worst = Math.max(worst, control.writableLength))
      control.on("data", observe)
      control.on("resume", observe)
      // 300,000 FEAT: 1.8 MB of commands, about 45 MB of replies.
      const flood = 300_000
      client.write("FEAT\r\n".repeat(flood))
      // Until the server stops for good (paused, and neither reading nor answering across many turns of the
      // event loop), has read everything, or overflows the bound.
      let quiet = 0
      let progress = -1
      while (quiet < 50 && control.bytesRead < flood * 6 && worst <= bound && !control.destroyed) {
        yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
        yield* Effect.yieldNow.pipe(Effect.repeat({ times: 20 }))
        const now = control.bytesRead + control.bytesWritten
        quiet = control.isPaused() && now === progress ? quiet + 1 : 0
        progress = now
      }
      observe()
      assert.isAtMost(worst, bound, `the server kept reading commands with ${(worst / MiB).toFixed(1)} MiB of unread replies queued`)
      // A throttled connection is served again once the client reads.
      client.resume()
    }), 120_000)

  it.effect("reply injection: a file named \"a\\r\\n226 x\" never yields a forged line; CR or NUL in CWD/MKD is 501", () =>
    Effect.gen(function*() {
      const server = yield* plainServer()
      const root = server.roots["alice"]!
      const planted = ["a\r\n226 x", "b\n226 y", "c\r226 z"]
      for (const name of planted) fs.writeFileSync(path.join(root, name), "planted")
      fs.writeFileSync(path.join(root, "ok.txt"), "fine")
      const before = entries(root)
      const client = yield* connect(server.ftpPort)
      yield* client.login("alice")
      for (const verb of ["LIST", "NLST", "MLSD", "LIST -la", "NLST /", "MLSD /"]) {
        const { bytes, reply } = yield* download(client, verb)
        assert.strictEqual(reply.code, 226, `${verb}: ${reply.text}`)
        const lines = bytes.toString("utf8").split(/\r\n|\r|\n/)
        assert.isTrue(lines.some((line) => line.endsWith("ok.txt")), `${verb} lists ok.txt`)
        for (const line of lines) {
          assert.notMatch(line, /^22\d /, `${verb}: a forged reply line ${JSON.stringify(line)}`)
          assert.notMatch(line, /^(a|b|c)$/, `${verb}: a truncated planted name ${JSON.stringify(line)}`)
        }
      }
      for (const line of ["CWD a\r226 x", "MKD evil\r226 x", "XMKD evil\r226 x", "MKD evil\u0000x", "CWD a\u0000", "RNFR ok.txt"]) {
        if (line.startsWith("RNFR")) {
          yield* client.expect(line, 350)
          yield* client.expect("RNTO evil\r226 x", 501)
          continue
        }
        yield* client.expect(line, 501)
      }
      assert.deepStrictEqual(entries(root), before, "nothing was created or renamed")
      // The 257 reply doubles quotes (RFC 959 appendix II).
      const quoted = yield* client.expect("MKD q\"uote", 257)
      assert.include(quoted.text, "\"/q\"\"uote\"")
      for (const line of client.transcript().split("\r\n")) {
        assert.notMatch(line, /^226 [xyz]/, `control connection: ${JSON.stringify(line)}`)
      }
    }))

  it.effect("Telnet IAC: IAC IP inside a verb is dropped (NOOP → 200), option negotiation is ignored, IAC IAC is one 0xFF byte", () =>
    Effect.gen(function*() {
      const server = yield* plainServer()
      const root = server.roots["alice"]!
      const client = yield* connect(server.ftpPort)
      const iac = (...parts: ReadonlyArray<string | ReadonlyArray<number>>) =>
        Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "latin1") : Buffer.from(p))))
      yield* client.write(iac("NO", [0xff, 0xf4], "OP\r\n"))
      assert.strictEqual((yield* client.reply).code, 200)
      // IAC WILL ECHO, IAC DO SUPPRESS-GO-AHEAD, then the command.
      yield* client.write(iac([0xff, 0xfb, 0x01, 0xff, 0xfd, 0x03], "NOOP\r\n"))
      assert.strictEqual((yield* client.reply).code, 200)
      yield* client.login("alice")
      // The Synch that precedes ABOR (IAC IP, IAC DM).
      yield* client.write(iac([0xff, 0xf4, 0xff, 0xf2], "ABOR\r\n"))
      assert.strictEqual((yield* client.reply).code, 225)

      yield* client.write(iac("MKD a", [0xff, 0xff], "b\r\n"))
      const made = yield* client.reply
      assert.strictEqual(made.code, 257, made.text)
      const names = fs.readdirSync(root, { encoding: "buffer" })
      assert.strictEqual(names.length, 1)
      // One 0xFF byte in the line, which is not UTF-8 and so reads as latin1 "ÿ": one character, stored as UTF-8.
      assert.strictEqual(names[0]!.toString("utf8"), "a\u00ffb", names[0]!.toString("hex"))
      assert.include(made.text, "a\u00ffb")
      yield* client.write(iac("CWD a", [0xff, 0xff], "b\r\n"))
      assert.strictEqual((yield* client.reply).code, 250)
      const pwd = yield* client.expect("PWD", 257)
      assert.include(pwd.text, "\"/a\u00ffb\"")
    }))

  it.effect("unknown commands are 500/502; before login only the minimal surface answers, and it leaks no user or path", () =>
    Effect.gen(function*() {
      const server = yield* plainServer()
      fs.writeFileSync(path.join(server.roots["alice"]!, "f.txt"), "x")
      const client = yield* connect(server.ftpPort)
      for (const line of ["XYZZ", "SITE EXEC /bin/sh", "FOO1", "", " NOOP", "NOOPS", "AB", "REIN"]) {
        const reply = yield* client.command(line)
        assert.include([500, 502, 530], reply.code, `${JSON.stringify(line)} → ${reply.text}`)
      }
      assert.include([500, 502], (yield* client.command("XYZZ")).code)
      assert.strictEqual((yield* client.command("FOO1")).code, 500)
      const needLogin = [
        "PWD", "XPWD", "CWD /", "CDUP", "LIST", "NLST", "MLSD", "MLST f.txt", "RETR f.txt", "STOR g", "STOU", "APPE g", "DELE f.txt",
        "MKD d", "RMD d", "RNFR f.txt", "RNTO g", "SIZE f.txt", "MDTM f.txt", "MFMT 20200101000000 f.txt", "PASV", "EPSV", "EPSV ALL",
        "PORT 127,0,0,1,4,1", "EPRT |1|127.0.0.1|1025|", "REST 0", "ALLO 1", "TYPE I", "MODE S", "STRU F", "ABOR", "SITE CHMOD 777 f.txt"
      ]
      for (const line of needLogin) {
        const reply = yield* client.command(line)
        assert.strictEqual(reply.code, 530, `${line} before login → ${reply.text}`)
      }
      yield* client.expect("USER alice", 331)
      for (const line of ["HELP", "FEAT", "STAT", "SYST", "HELP SITE", "NOOP"]) {
        const reply = yield* client.command(line)
        assert.include([200, 211, 214, 215, 530, 501, 502, 504], reply.code, `${line} → ${reply.text}`)
      }
      const transcript = client.transcript()
      assert.notInclude(transcript, "alice")
      assert.notInclude(transcript, server.base)
      assert.notInclude(transcript, "/home")
      // Logged in: unknown verbs are still 500/502, never executed.
      yield* client.expect("PASS alice-password", 230)
      yield* client.expect("XYZZ", 502)
      yield* client.expect("FOO1", 500)
      yield* client.expect("SITE CHMOD 777 f.txt", 502)
      const stat = yield* client.expect("STAT", 211)
      assert.notInclude(stat.text, server.base)
    }))
})

describe("FTP login (checklist F)", () => {
  it.effect("bounded login attempts: the third wrong PASS gets 421 and the connection closes", () =>
    Effect.gen(function*() {
      const server = yield* plainServer()
      const client = yield* connect(server.ftpPort)
      yield* client.expect("USER alice", 331)
      yield* client.expect("PASS ", 530)
      yield* client.expect("USER nobody", 331)
      yield* client.expect("PASS nobody-password", 530)
      yield* client.expect("USER alice", 331)
      yield* client.write("PASS wrong\r\nUSER alice\r\nPASS alice-password\r\n")
      const replies = yield* repliesUntilClosed(client)
      assert.deepStrictEqual(replies.map((r) => r.code), [421])
      yield* client.closed

      // The counter is per connection: a new one may log in.
      const again = yield* connect(server.ftpPort)
      yield* again.expect("USER alice", 331)
      yield* again.expect("PASS wrong", 530)
      yield* again.login("alice")
    }))
})
