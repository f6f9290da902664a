/**
 * Checklist F2, bans after repeated login failures, through both protocols of
 * a real server: rejected credentials of one client IP are counted together for
 * SFTP and FTP, and at `bans.maxFailures` within `bans.window` the IP is banned
 * for `bans.duration`: its new connections are refused at accept (SFTP closed,
 * FTP 421), its connections still logging in get no further attempt, and its
 * authenticated sessions and other addresses are not affected. Public-key
 * queries are not failures; a refused signature is. Times run on TestClock. The
 * ban is a JSON line of the real command, and the Promise facade lists and lifts bans.
 *
 * Client addresses: Linux routes all of 127/8 to lo, so connections bound to
 * 127.0.0.2, 127.0.0.3 … are distinct client IPs for the server.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect } from "effect"
import { TestClock } from "effect/testing"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import ssh2 from "ssh2"
import { generateSshKeyPair } from "../../src/layers/SshKeys.js"
import { Server as PromiseServer } from "../../src/promise.js"
import { ConnectionGuard } from "../../src/services/ConnectionGuard.js"
import { connect as ftpConnect, type FtpRawClient, validHostKey } from "../utils/FtpRawClient.js"
import { connect as sftpConnect } from "../utils/SftpClient.js"
import { serve, writeConfig } from "../utils/Command.js"
import { tempDir } from "../utils/TempDir.js"
import { testServer } from "../utils/TestServer.js"
import { ftpRead, ftpWrite, sftpRead, sftpWrite } from "./BothProtocols.js"
import { silent, sshPasswords, sshPending } from "./PreAuth.js"
import { world } from "./World.js"

const bannedLine = "421 Too many failed logins, try again later"

/** USER + PASS on an open FTP control connection; the PASS reply. */
const ftpPass = (client: FtpRawClient, username: string, password: string) =>
  client.expect(`USER ${username}`, 331).pipe(Effect.andThen(client.command(`PASS ${password}`)))

/** `count` wrong passwords on one new FTP connection from `localAddress`; the PASS replies. */
const ftpWrong = (port: number, count: number, localAddress = "127.0.0.1") =>
  Effect.scoped(Effect.gen(function*() {
    const client = yield* ftpConnect(port, { localAddress })
    const replies: Array<string> = []
    for (let i = 0; i < count; i++) replies.push((yield* ftpPass(client, "alice", `wrong-${i}`)).text)
    return replies
  }))

const wrong = (count: number) => Array.from({ length: count }, (_, i) => `wrong-${i}`)

describe("F.bans (checklist F2: bans after repeated login failures)", () => {
  it.effect("F.bans: 6 failures through SFTP and 4 through FTP from one address ban it for both protocols: new connections are refused at accept, connections still logging in are refused and closed, its authenticated sessions and other addresses are unaffected", () =>
    Effect.gen(function*() {
      // The defaults: 10 failures within 1 minute ban for 15 minutes.
      const { server } = yield* world()
      const guard = Context.get(server.context, ConnectionGuard)
      // Logged in from 127.0.0.1 before the ban.
      const sftp = yield* sftpConnect(server.port, "alice", { password: "alice-password" })
      const ftp = yield* ftpConnect(server.ftpPort)
      yield* ftp.login("alice")
      // Waiting to log in when the ban comes: one SSH connection past "none", one FTP connection past USER.
      const pendingSsh = yield* sshPending(server.port, "alice")
      yield* pendingSsh.ready
      const pendingFtp = yield* ftpConnect(server.ftpPort)
      yield* pendingFtp.expect("USER alice", 331)

      const sshFailures = yield* sshPasswords(server.port, "alice", wrong(10))
      assert.deepStrictEqual(sshFailures, { loggedIn: false, closedByServer: true, handshaked: true }, "6 attempts, then the connection is closed")
      assert.isFalse(yield* guard.isBanned("127.0.0.1"), "6 failures")
      assert.deepStrictEqual(yield* ftpWrong(server.ftpPort, 3), ["530 Login incorrect", "530 Login incorrect", "421 Too many failed logins"])
      assert.isFalse(yield* guard.isBanned("127.0.0.1"), "9 failures")
      assert.deepStrictEqual(yield* ftpWrong(server.ftpPort, 1), ["421 Too many failed logins"], "the 10th failure bans and closes")
      assert.deepStrictEqual(yield* guard.bans, [{ clientIp: "127.0.0.1", untilMs: 15 * 60_000 }])

      // The connections that were waiting: the right password does not help any more.
      assert.deepStrictEqual(yield* pendingSsh.attempt("alice-password"), { loggedIn: false, closedByServer: true, handshaked: true })
      assert.strictEqual((yield* pendingFtp.command("PASS alice-password")).text, "421 Too many failed logins")
      yield* pendingFtp.closed
      // New connections: refused at accept, before any SSH or FTP exchange.
      assert.strictEqual(yield* (yield* silent(server.port)).first, "closed")
      assert.strictEqual(yield* (yield* silent(server.ftpPort)).first, bannedLine)
      assert.strictEqual(yield* (yield* silent(server.ftpsPort)).first, "closed")
      assert.isFalse((yield* sshPasswords(server.port, "alice", ["alice-password"])).handshaked)

      // The sessions that had logged in before keep working, data connections included.
      assert.strictEqual(yield* sftpWrite(sftp.sftp, "/after-ban.txt", "still here"), "ok")
      assert.strictEqual(yield* sftpRead(sftp.sftp, "/after-ban.txt"), "file:still here")
      assert.strictEqual(yield* ftpWrite(ftp, "ftp-after-ban.txt", "still here too"), "ok")
      assert.strictEqual(yield* ftpRead(ftp, "ftp-after-ban.txt"), "file:still here too")
      // Another address is not affected.
      assert.isTrue((yield* sshPasswords(server.port, "alice", ["alice-password"], "127.0.0.2")).loggedIn)
      const other = yield* ftpConnect(server.ftpPort, { localAddress: "127.0.0.2" })
      yield* other.login("alice")
      assert.strictEqual((yield* guard.stats).refused.Banned, 4)
    }))

  it.effect("F.bans: a ban ends exactly at its duration (refused at the deadline − 1 ms, served at the deadline); failures older than the window do not add up", () =>
    Effect.gen(function*() {
      const { server } = yield* world({ config: { bans: { maxFailures: 3, window: "1 minute", duration: "15 minutes" } } })
      const guard = Context.get(server.context, ConnectionGuard)
      const ip = "127.0.0.2"
      assert.isTrue((yield* sshPasswords(server.port, "alice", wrong(2), ip)).handshaked)
      yield* TestClock.adjust("1 minute")
      // The two SFTP failures have left the window: two FTP failures now make two, not four.
      assert.deepStrictEqual(yield* ftpWrong(server.ftpPort, 2, ip), ["530 Login incorrect", "530 Login incorrect"])
      assert.isFalse(yield* guard.isBanned(ip))
      assert.strictEqual(yield* (yield* silent(server.port, ip)).first, "ssh")
      yield* TestClock.adjust("59999 millis")
      // ... and those two are still inside it 1 ms before it ends: one more failure bans.
      assert.deepStrictEqual(yield* ftpWrong(server.ftpPort, 1, ip), ["421 Too many failed logins"])
      const bannedAt = 60_000 + 59_999
      assert.deepStrictEqual(yield* guard.bans, [{ clientIp: ip, untilMs: bannedAt + 15 * 60_000 }])

      yield* TestClock.adjust(15 * 60_000 - 1)
      assert.strictEqual(yield* (yield* silent(server.port, ip)).first, "closed")
      assert.strictEqual(yield* (yield* silent(server.ftpPort, ip)).first, bannedLine)
      yield* TestClock.adjust("1 millis")
      assert.strictEqual(yield* (yield* silent(server.port, ip)).first, "ssh")
      assert.isTrue((yield* sshPasswords(server.port, "alice", ["alice-password"], ip)).loggedIn)
      assert.deepStrictEqual(yield* guard.bans, [])
    }))

  it.effect("F.bans: public-key queries are not failures (20 unlisted keys, PK_OK answers); refused signatures are, and ban", () =>
    Effect.gen(function*() {
      const listed = generateSshKeyPair("ed25519")
      const dir = yield* tempDir("portcullis-bans-")
      const hostKeyFile = path.join(dir, "host_ed25519")
      fs.writeFileSync(hostKeyFile, validHostKey())
      const server = yield* testServer({
        users: [{ username: "keys", authorizedKeys: [listed.public] }],
        sftp: { address: "127.0.0.1:0", hostKeyFiles: [hostKeyFile] },
        config: { bans: { maxFailures: 3 } }
      })
      const guard = Context.get(server.context, ConnectionGuard)
      const parse = (privateKey: string) => {
        const parsed = ssh2.utils.parseKey(privateKey)
        if (parsed instanceof Error) throw parsed
        return parsed
      }
      const key = parse(listed.private)
      const queryOnly = Object.create(key, { sign: { value: () => new Error("query only") } }) as ssh2.ParsedKey
      const forged = Object.create(key, { sign: { value: () => crypto.randomBytes(64) } }) as ssh2.ParsedKey
      /** Offers `methods` on one connection; whether it logged in. */
      const offer = (methods: ReadonlyArray<ssh2.AnyAuthMethod>) =>
        Effect.callback<boolean>((resume) => {
          const client = new ssh2.Client()
          let next = 0
          client.on("error", () => {})
          client.on("ready", () => {
            client.end()
            resume(Effect.succeed(true))
          })
          client.on("close", () => resume(Effect.succeed(false)))
          client.connect({
            host: "127.0.0.1",
            port: server.port,
            username: "keys",
            readyTimeout: 60_000,
            authHandler: (_left, _partial, give) => {
              const method = methods[next++]
              if (method) give(method)
              else client.end()
            }
          })
        })
      for (let round = 0; round < 4; round++) {
        const unlisted = Array.from({ length: 5 }, () => ({ type: "publickey" as const, username: "keys", key: parse(generateSshKeyPair("ed25519").private) }))
        assert.isFalse(yield* offer(unlisted), "queries of unlisted keys: refused")
      }
      for (let round = 0; round < 5; round++) {
        assert.isFalse(yield* offer([{ type: "publickey", username: "keys", key: queryOnly }]), "a query answered PK_OK, no signature")
      }
      assert.deepStrictEqual([yield* guard.isBanned("127.0.0.1"), (yield* guard.stats).trackedAddresses], [false, 0], "no failure counted")
      assert.isTrue(yield* offer([{ type: "publickey", username: "keys", key }]), "the real key still logs in")

      assert.isFalse(yield* offer([{ type: "publickey", username: "keys", key: forged }, { type: "publickey", username: "keys", key: forged }]))
      assert.isFalse(yield* guard.isBanned("127.0.0.1"), "2 refused signatures")
      assert.isFalse(yield* offer([{ type: "publickey", username: "keys", key: forged }]))
      assert.isTrue(yield* guard.isBanned("127.0.0.1"), "the third refused signature bans")
      assert.isFalse(yield* offer([{ type: "publickey", username: "keys", key }]), "banned: even the real key is refused at accept")
    }))

  it.live("F.bans: the command prints {\"event\":\"client_banned\",\"clientIp\",\"until\"} as a JSON line; the Promise facade lists and lifts bans", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("portcullis-bans-cli-")
      const root = path.join(dir, "alice")
      fs.mkdirSync(root)
      const configFile = writeConfig(dir, {
        ftp: { address: "127.0.0.1:0", requireTLS: false },
        bans: { maxFailures: 2 },
        users: [{ username: "alice", password: "alice-password", root }]
      })
      const { line, port: portOf, records } = yield* serve(configFile, dir)
      const port = yield* portOf("ftp")
      yield* ftpWrong(port, 2, "127.0.0.3")
      const banned = yield* line((r) => r["event"] === "client_banned")
      assert.strictEqual(banned["clientIp"], "127.0.0.3")
      const until = Date.parse(String(banned["until"]))
      assert.isTrue(Number.isFinite(until) && until > Date.now() + 14 * 60_000, String(banned["until"]))
      // The login_failed lines are printed as before, one per failure (events reach stdout a moment later).
      yield* line(() => records().filter((r) => r["event"] === "login_failed" && r["clientIp"] === "127.0.0.3").length === 2)

      // The Promise facade.
      const server = new PromiseServer({
        ftp: { address: "127.0.0.1:0", requireTLS: false },
        bans: { maxFailures: 1 },
        users: [{ username: "alice", password: "alice-password", root }]
      })
      const { ftp } = yield* Effect.promise(() => server.listen())
      yield* Effect.addFinalizer(() => Effect.promise(() => server.shutdown({ timeoutMs: 0 })))
      yield* ftpWrong(ftp!.port, 1, "127.0.0.4")
      const bans = yield* Effect.promise(() => server.bans())
      assert.deepStrictEqual(bans.map((b) => b.clientIp), ["127.0.0.4"])
      assert.strictEqual(yield* (yield* silent(ftp!.port, "127.0.0.4")).first, bannedLine)
      assert.isTrue(yield* Effect.promise(() => server.unban("127.0.0.4")))
      assert.strictEqual(yield* (yield* silent(ftp!.port, "127.0.0.4")).first, "220")
    }))
})
