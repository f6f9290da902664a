/**
 * Checklist E5, pre-authentication resource limits, through both protocols of a
 * real server: `maxPreAuthConnections` and `maxPreAuthConnectionsPerIp` count
 * SFTP and FTP connections that have not logged in yet, together. Over a cap an
 * SFTP connection is closed before the SSH identification line and an FTP one
 * reads `421 Too many connections, try again later` and is closed. A login or a
 * close frees the slot; silent connections are dropped at the handshake timeout
 * (TestClock) and free theirs; authenticated sessions are never counted and keep
 * working while silent connections from other addresses hold every slot, even
 * under a flood of 2,000 connections.
 *
 * Client addresses: Linux routes all of 127/8 to lo, so connections bound to
 * 127.0.0.2, 127.0.0.3 … are distinct client IPs for the server.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect } from "effect"
import { TestClock } from "effect/testing"
import { Sessions } from "../../src/services/Sessions.js"
import { connect as ftpConnect } from "../utils/FtpRawClient.js"
import { call, connect as sftpConnect } from "../utils/SftpClient.js"
import { ftpRead, ftpWrite, sftpRead, sftpWrite } from "./BothProtocols.js"
import { eventually, guardStats, settle, silent, silentMany, sshPasswords } from "./PreAuth.js"
import { world } from "./World.js"

const tooMany = "421 Too many connections, try again later"

describe("E.preauth (checklist E5: pre-authentication connection caps)", () => {
  it.effect("E.preauth: maxPreAuthConnections counts SFTP and FTP together; over it SFTP is closed before the SSH identification, FTP gets 421, implicit FTPS is closed before TLS; a login or a close frees a slot", () =>
    Effect.gen(function*() {
      const { server } = yield* world({ config: { maxPreAuthConnections: 4, maxPreAuthConnectionsPerIp: 0 } })
      const stats = guardStats(server.context)
      const sftp1 = yield* silent(server.port)
      const sftp2 = yield* silent(server.port, "127.0.0.2")
      const ftp1 = yield* ftpConnect(server.ftpPort)
      const ftp2 = yield* silent(server.ftpPort, "127.0.0.3")
      assert.deepStrictEqual([yield* sftp1.first, yield* sftp2.first, ftp1.greeting.code, yield* ftp2.first], ["ssh", "ssh", 220, "220"])
      assert.strictEqual((yield* stats).preAuthConnections, 4)

      assert.strictEqual(yield* (yield* silent(server.port, "127.0.0.4")).first, "closed", "not a byte: no SSH identification, no key exchange")
      const refusedFtp = yield* silent(server.ftpPort, "127.0.0.5")
      assert.strictEqual(yield* refusedFtp.first, tooMany)
      yield* refusedFtp.closed
      assert.strictEqual(yield* (yield* silent(server.ftpsPort, "127.0.0.5")).first, "closed", "the implicit port gets no clear-text line")

      // A login frees its slot: the FTP connection logs in, and one more connection fits.
      yield* ftp1.login("alice")
      yield* eventually(Effect.map(stats, (s) => s.preAuthConnections === 3))
      assert.strictEqual(yield* (yield* silent(server.port, "127.0.0.4")).first, "ssh")
      assert.strictEqual(yield* (yield* silent(server.ftpPort, "127.0.0.5")).first, tooMany)
      // A close frees its slot.
      sftp2.socket.destroy()
      yield* eventually(Effect.map(stats, (s) => s.preAuthConnections === 3))
      assert.strictEqual(yield* (yield* silent(server.ftpPort, "127.0.0.5")).first, "220")
      assert.strictEqual(yield* (yield* silent(server.port, "127.0.0.6")).first, "closed")
      yield* ftp1.expect("PWD", 257)
      assert.deepStrictEqual((yield* stats).refused, { Banned: 0, TooManyPreAuth: 5, TooManyPreAuthFromIp: 0 })
    }))

  it.effect("E.preauth: maxPreAuthConnectionsPerIp: a fourth unauthenticated connection from one address is refused (SFTP closed, FTP 421) while other addresses connect; authenticated sessions from it do not count", () =>
    Effect.gen(function*() {
      const { server } = yield* world({ config: { maxPreAuthConnections: 0, maxPreAuthConnectionsPerIp: 3 } })
      const stats = guardStats(server.context)
      // Logged in from 127.0.0.1 before: these do not count.
      const sftp = yield* sftpConnect(server.port, "alice", { password: "alice-password" })
      const ftp = yield* ftpConnect(server.ftpPort)
      yield* ftp.login("alice")
      const held = [yield* silent(server.port), yield* silent(server.ftpPort), yield* silent(server.port)]
      assert.deepStrictEqual(yield* Effect.forEach(held, (c) => c.first), ["ssh", "220", "ssh"])
      assert.strictEqual(yield* (yield* silent(server.port)).first, "closed")
      assert.strictEqual(yield* (yield* silent(server.ftpPort)).first, tooMany)
      for (const [port, expected] of [[server.port, "ssh"], [server.ftpPort, "220"], [server.port, "ssh"], [server.ftpPort, tooMany]] as const) {
        assert.strictEqual(yield* (yield* silent(port, "127.0.0.2")).first, expected)
      }
      assert.isTrue((yield* sshPasswords(server.port, "alice", ["alice-password"], "127.0.0.3")).loggedIn, "another address logs in")
      assert.strictEqual(yield* call<string>((cb) => sftp.sftp.realpath(".", cb)), "/")
      yield* ftp.expect("PWD", 257)
      const now = yield* stats
      assert.deepStrictEqual([now.preAuthConnections, now.preAuthAddresses], [6, 2])
      assert.strictEqual(now.refused.TooManyPreAuthFromIp, 3)
      held[1]!.socket.destroy()
      yield* eventually(Effect.map(stats, (s) => s.preAuthConnections === 5))
      assert.strictEqual(yield* (yield* silent(server.ftpPort)).first, "220", "the closed one's slot is free again")
    }))

  it.effect("E.preauth: silent connections are dropped at the handshake timeout (SFTP 30 s, FTP login 60 s), not before, and free their slots", () =>
    Effect.gen(function*() {
      const { server } = yield* world({ config: { maxPreAuthConnections: 2 }, sftp: { handshakeTimeout: "30 seconds" } })
      const stats = guardStats(server.context)
      const sftp = yield* silent(server.port, "127.0.0.2")
      const ftp = yield* silent(server.ftpPort, "127.0.0.3")
      assert.deepStrictEqual([yield* sftp.first, yield* ftp.first], ["ssh", "220"])
      assert.strictEqual(yield* (yield* silent(server.port, "127.0.0.4")).first, "closed")
      yield* TestClock.adjust("29999 millis")
      yield* settle
      assert.isFalse(sftp.isClosed())
      assert.strictEqual(yield* (yield* silent(server.ftpPort, "127.0.0.4")).first, tooMany)
      yield* TestClock.adjust("1 millis")
      yield* sftp.closed
      yield* eventually(Effect.map(stats, (s) => s.preAuthConnections === 1))
      const later = yield* silent(server.port, "127.0.0.4")
      assert.strictEqual(yield* later.first, "ssh")
      yield* TestClock.adjust("29999 millis")
      yield* settle
      assert.isFalse(ftp.isClosed() || later.isClosed())
      yield* TestClock.adjust("1 millis")
      yield* ftp.closed
      yield* later.closed
      yield* eventually(Effect.map(stats, (s) => s.preAuthConnections === 0))
      assert.isTrue((yield* sshPasswords(server.port, "alice", ["alice-password"], "127.0.0.4")).loggedIn)
    }))

  it.effect("E.preauth: authenticated SFTP and FTP sessions keep transferring while silent connections from another address hold every slot", () =>
    Effect.gen(function*() {
      const { server } = yield* world({ config: { maxPreAuthConnections: 8, maxPreAuthConnectionsPerIp: 8 } })
      const sftp = yield* sftpConnect(server.port, "alice", { password: "alice-password" })
      const ftp = yield* ftpConnect(server.ftpPort)
      yield* ftp.login("alice")
      const flood = yield* silentMany(server.port, 8, () => "127.0.0.2")
      assert.isTrue(flood.every((c) => c.first === "ssh"))
      assert.strictEqual(yield* (yield* silent(server.ftpPort, "127.0.0.3")).first, tooMany, "every slot is taken")
      for (let i = 0; i < 5; i++) {
        assert.strictEqual(yield* sftpWrite(sftp.sftp, `/s${i}.txt`, `sftp ${i}`), "ok")
        assert.strictEqual(yield* sftpRead(sftp.sftp, `/s${i}.txt`), `file:sftp ${i}`)
        assert.strictEqual(yield* ftpWrite(ftp, `f${i}.txt`, `ftp ${i}`), "ok")
        assert.strictEqual(yield* ftpRead(ftp, `f${i}.txt`), `file:ftp ${i}`)
      }
    }))

  it.effect("E.preauth: 2,000 silent connections from ten addresses are refused or held to the caps, the guard and the session table stay bounded, and authenticated sessions on another address keep transferring", () =>
    Effect.gen(function*() {
      // The defaults: 256 in all, 32 per address.
      const { server } = yield* world()
      const stats = guardStats(server.context)
      const sessions = Context.get(server.context, Sessions)
      const sftp = yield* sftpConnect(server.port, "alice", { password: "alice-password" })
      const ftp = yield* ftpConnect(server.ftpPort)
      yield* ftp.login("alice")
      const outcomes = new Map<string, number>()
      let peakSessions = 0
      for (let batch = 0; batch < 10; batch++) {
        // Round robin over 127.0.0.10–19, SFTP and FTP alternating.
        const sftpHalf = yield* silentMany(server.port, 100, (i) => `127.0.0.${10 + (i % 10)}`)
        const ftpHalf = yield* silentMany(server.ftpPort, 100, (i) => `127.0.0.${10 + ((i + 5) % 10)}`)
        for (const { first } of [...sftpHalf, ...ftpHalf]) outcomes.set(first, (outcomes.get(first) ?? 0) + 1)
        peakSessions = Math.max(peakSessions, (yield* sessions.list).length)
        const now = yield* stats
        assert.isAtMost(now.preAuthConnections, 256)
        assert.isAtMost(now.preAuthAddresses, 10)
      }
      const admitted = (outcomes.get("ssh") ?? 0) + (outcomes.get("220") ?? 0)
      const refused = (outcomes.get("closed") ?? 0) + (outcomes.get(tooMany) ?? 0)
      assert.strictEqual(admitted, 256, JSON.stringify([...outcomes]))
      assert.strictEqual(refused, 2000 - 256, JSON.stringify([...outcomes]))
      const flooded = yield* stats
      assert.deepStrictEqual([flooded.preAuthConnections, flooded.trackedAddresses, flooded.bans], [256, 0, 0])
      assert.strictEqual(flooded.refused.TooManyPreAuth + flooded.refused.TooManyPreAuthFromIp, 2000 - 256)
      assert.strictEqual(peakSessions, 256 + 2, "a refused connection never becomes a session")

      for (let i = 0; i < 3; i++) {
        assert.strictEqual(yield* sftpWrite(sftp.sftp, `/during-${i}.txt`, `sftp ${i}`), "ok")
        assert.strictEqual(yield* sftpRead(sftp.sftp, `/during-${i}.txt`), `file:sftp ${i}`)
        assert.strictEqual(yield* ftpWrite(ftp, `ftp-during-${i}.txt`, `ftp ${i}`), "ok")
        assert.strictEqual(yield* ftpRead(ftp, `ftp-during-${i}.txt`), `file:ftp ${i}`)
      }
      // MaxStartups semantics: while the cap is full, a new login has to wait, wherever it comes from.
      assert.strictEqual(yield* (yield* silent(server.port)).first, "closed")

      // The handshake timeouts (SFTP 30 s, FTP 60 s) drop every silent connection and free every slot.
      yield* TestClock.adjust("30 seconds")
      yield* TestClock.adjust("30 seconds")
      yield* eventually(Effect.map(stats, (s) => s.preAuthConnections === 0))
      yield* eventually(Effect.map(sessions.list, (l) => l.length === 2))
      assert.isTrue((yield* sshPasswords(server.port, "alice", ["alice-password"])).loggedIn)
      assert.strictEqual(yield* sftpRead(sftp.sftp, "/during-0.txt"), "file:sftp 0")
    }), 120_000)
})
