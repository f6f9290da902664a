/**
 * Checklist D5, what an unauthenticated peer learns, from a real server: the
 * FTP verbs that answer before login are exactly the documented ones (USER,
 * PASS, QUIT, NOOP, FEAT, HELP, SYST, AUTH, PBSZ, PROT, OPTS, CCC), and the
 * greeting and those answers carry no software version, host name, path or
 * user name, and do not change with the user name given to USER (nothing to
 * enumerate). On SSH the identification string names the product without a
 * version and no pre-authentication banner is sent.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as net from "node:net"
import * as os from "node:os"
import ssh2 from "ssh2"
import { FtpVerb } from "../../src/protocols/ftp/Command.js"
import { connect, ftpTestServer, onceEvent, track } from "../utils/FtpRawClient.js"

/** The verbs documented as answered before login (docs/security.md, D5). */
const preLoginSurface = ["AUTH", "CCC", "FEAT", "HELP", "NOOP", "OPTS", "PASS", "PBSZ", "PROT", "SYST", "USER"]

/** Strings that would reveal the software, its version, the host or its files. */
const leaks = () => [
  process.version, process.versions.node, process.versions.openssl, `node`, "0.1.0", os.hostname(), os.homedir(),
  "/tmp", "/home", "alice", "Effect", "ssh2", "OpenSSL", "Linux", os.release()
]

describe("D.prelogin (checklist D5: the pre-login surface)", () => {
  it.effect("D.prelogin: before login FTP answers only USER, PASS, QUIT, NOOP, FEAT, HELP, SYST, AUTH, PBSZ, PROT, OPTS and CCC; every other known verb is 530 Please login", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer({ ftp: { requireTLS: false } })
      const client = yield* connect(server.ftpPort)
      const answered: Array<string> = []
      for (const verb of FtpVerb) {
        if (verb === "QUIT") continue
        // An argument no handler accepts as meaningful: AUTH must not start TLS here.
        const reply = yield* client.command(`${verb} XYZZY`)
        // PASS is answered too: 530 "Login incorrect" (the refusal of a login, not of the verb).
        if (reply.text !== "530 Please login with USER and PASS") answered.push(verb)
      }
      assert.deepStrictEqual(answered.sort(), preLoginSurface)
      yield* client.expect("QUIT", 221)
    }))

  it.effect("D.prelogin: the greeting and every pre-login answer carry no version, host name, path or user, and read the same whatever user USER named", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer({ ftp: { requireTLS: false } })
      const probe = ["SYST", "HELP", "HELP SITE", "HELP USER", "FEAT", "STAT", "STAT /", "OPTS UTF8 ON", "OPTS MLST type;", "NOOP", "PBSZ 0", "PROT P", "CCC", "AUTH XYZ",
        "LIST", "RETR /etc/passwd", "CWD /", "SITE HELP", "XYZZ"]
      const transcriptAfter = (user: string | undefined) =>
        Effect.scoped(Effect.gen(function*() {
          const client = yield* connect(server.ftpPort)
          if (user !== undefined) yield* client.expect(`USER ${user}`, 331)
          for (const line of probe) yield* client.command(line)
          return client.transcript()
        }))
      const anonymous = yield* transcriptAfter(undefined)
      const known = yield* transcriptAfter("alice")
      const unknown = yield* transcriptAfter("nobody")
      assert.strictEqual(known.replace("331 Password required\r\n", ""), anonymous)
      assert.strictEqual(unknown, known, "naming an existing user changes nothing")
      for (const leak of leaks()) assert.notInclude(anonymous.toLowerCase(), leak.toLowerCase(), leak)
      assert.notInclude(anonymous, server.base)
      // No version-like token anywhere (digits and dots), only RFC numbers.
      assert.notMatch(anonymous, /\d+\.\d+/)
      assert.match(anonymous, /^220 Portcullis FTP server ready\r\n/)
    }))

  it.effect("D.prelogin: SSH identifies as SSH-2.0-Portcullis without a version and sends no pre-authentication banner", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer()
      const socket = yield* track(net.connect({ host: "127.0.0.1", port: server.port }))
      let received = ""
      socket.on("data", (chunk: Buffer) => void (received += chunk.toString("latin1")))
      yield* onceEvent(socket, "connect")
      socket.write("SSH-2.0-probe\r\n")
      while (!received.includes("\r\n")) yield* onceEvent(socket, "data")
      assert.strictEqual(received.slice(0, received.indexOf("\r\n")), "SSH-2.0-Portcullis")

      // A real client: no banner arrives before or during authentication.
      const banners: Array<string> = []
      yield* Effect.callback<void>((resume) => {
        const client = new ssh2.Client()
        client.on("banner", (message) => void banners.push(message))
        client.on("error", () => resume(Effect.void))
        client.on("close", () => resume(Effect.void))
        client.on("ready", () => client.end())
        client.connect({ host: "127.0.0.1", port: server.port, username: "alice", password: "wrong", readyTimeout: 20_000 })
      })
      assert.deepStrictEqual(banners, [])
    }))
})
