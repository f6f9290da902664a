/**
 * Checklist A/E, hostile usernames at login through both protocols of a real
 * server (CVE-2026-30915: a username expanded into a path): names with "/",
 * "..", "\\", NUL, CR/LF and other controls, and names over 64 bytes are
 * refused exactly like a wrong password for an existing user and like an
 * unknown user (same SSH methods list, same FTP replies), so a client learns
 * nothing from the refusal, and no file or directory is created or touched.
 * The correct password of an existing user does not help a name that merely
 * starts with hers ("alice\0", "alice/..").
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import ssh2 from "ssh2"
import { connect as ftpConnect } from "../utils/FtpRawClient.js"
import { digest, world } from "./World.js"

const hostile = [
  "a/b", "/", "../alice", "..", "alice/..", "alice/../alice", "./alice", "a\\b", "..\\alice", "alice\\",
  "%2e%2e", "~alice", " alice", "alice ", "a".repeat(65), "é".repeat(33), "a".repeat(1000),
  // A C1 control (NEL): refused as a username, but an FTP line may carry it, so it reaches the registry.
  "ali\u0085ce"
]
/** Names that an FTP command line cannot carry (the line itself is refused with 501); SSH carries them. */
const controls = ["alice\u0000", "al\u0000ice", "\u0000", "al\rice", "alice\r", "\u001b[2J", "alice\u007f"]

interface SshRefusal {
  /** The methods the server offered after "none", and after the password attempt. */
  readonly afterNone: string
  readonly afterPassword: string
  readonly loggedIn: boolean
}

/** One SSH connection: "none", then one password; what the server answered to each. */
const sshAttempt = (port: number, username: string, password: string) =>
  Effect.callback<SshRefusal>((resume) => {
    const answers: Array<string> = []
    const client = new ssh2.Client()
    let loggedIn = false
    client.on("error", () => {})
    client.on("ready", () => {
      loggedIn = true
      client.end()
    })
    client.on("close", () => resume(Effect.succeed({ afterNone: answers[0] ?? "", afterPassword: answers[1] ?? "", loggedIn })))
    client.connect({
      host: "127.0.0.1",
      port,
      username,
      readyTimeout: 20_000,
      authHandler: (methodsLeft, _partial, next) => {
        if (methodsLeft !== null) answers.push([...methodsLeft].sort().join(","))
        if (answers.length === 0 && methodsLeft === null) return next({ type: "none", username })
        if (answers.length === 1) return next({ type: "password", username, password })
        client.end()
      }
    })
  })

/** One FTP connection: USER then PASS; the two replies' text (or where it stopped). */
const ftpAttempt = (port: number, username: string, password: string) =>
  Effect.scoped(Effect.gen(function*() {
    const client = yield* ftpConnect(port)
    const user = yield* client.command(`USER ${username}`)
    const pass = yield* client.command(`PASS ${password}`)
    const after = yield* client.command("PWD")
    return { user: user.text, pass: pass.text, after: after.code }
  }))

/**
 * Each test makes some 30 failed logins from 127.0.0.1 within a minute, on purpose: exactly what a
 * ban is for (config `bans`, default 10 a minute). Bans are off here; they are tested in Bans.test.ts.
 */
const noBans = { config: { bans: { maxFailures: 0 } } }

describe("A.usernames (checklist A4/E3: hostile usernames, no enumeration)", () => {
  it.effect("A.usernames: names with \"/\", \"..\", \"\\\", NUL, CR/LF, controls or over 64 bytes are refused through SFTP exactly like a wrong password, and touch no file", () =>
    Effect.gen(function*() {
      const w = yield* world(noBans)
      const before = digest(w.server.base)
      const wrongPassword = yield* sshAttempt(w.server.port, "alice", "not-her-password")
      const unknownUser = yield* sshAttempt(w.server.port, "nobody", "alice-password")
      assert.deepStrictEqual(unknownUser, wrongPassword)
      assert.isFalse(wrongPassword.loggedIn)
      assert.notStrictEqual(wrongPassword.afterNone, "", "the server answered the none attempt with its methods")
      const differences: Array<string> = []
      for (const name of [...hostile, ...controls, "al\nice", "alice\n"]) {
        // The real password of the user the name imitates.
        const attempt = yield* sshAttempt(w.server.port, name, "alice-password")
        if (JSON.stringify(attempt) !== JSON.stringify(wrongPassword)) differences.push(`${JSON.stringify(name).slice(0, 40)}: ${JSON.stringify(attempt)}`)
      }
      assert.deepStrictEqual(differences, [])
      assert.strictEqual(digest(w.server.base), before, "no file or directory was created or changed")
      // The real user still logs in.
      assert.isTrue((yield* sshAttempt(w.server.port, "alice", "alice-password")).loggedIn)
    }), 120_000)

  it.effect("A.usernames: the same names through FTP get the same 331 and 530 as a wrong password (names with controls: the same 501 whoever they imitate), and touch no file", () =>
    Effect.gen(function*() {
      const w = yield* world(noBans)
      const before = digest(w.server.base)
      const wrongPassword = yield* ftpAttempt(w.server.ftpPort, "alice", "not-her-password")
      const unknownUser = yield* ftpAttempt(w.server.ftpPort, "nobody", "alice-password")
      assert.deepStrictEqual(unknownUser, wrongPassword)
      assert.deepStrictEqual(wrongPassword, { user: "331 Password required", pass: "530 Login incorrect", after: 530 })
      const differences: Array<string> = []
      for (const name of hostile) {
        const attempt = yield* ftpAttempt(w.server.ftpPort, name, "alice-password")
        if (JSON.stringify(attempt) !== JSON.stringify(wrongPassword)) differences.push(`${JSON.stringify(name).slice(0, 40)}: ${JSON.stringify(attempt)}`)
      }
      // Control characters never reach the user registry: the line is refused before USER runs, for any name.
      const controlReference = yield* ftpAttempt(w.server.ftpPort, "nobody\u0001", "alice-password")
      assert.deepStrictEqual(controlReference, { user: "501 Control characters are not allowed in arguments", pass: "503 Bad sequence of commands", after: 530 })
      for (const name of controls) {
        const attempt = yield* ftpAttempt(w.server.ftpPort, name, "alice-password")
        if (JSON.stringify(attempt) !== JSON.stringify(controlReference)) differences.push(`${JSON.stringify(name)}: ${JSON.stringify(attempt)}`)
      }
      assert.deepStrictEqual(differences, [])
      assert.strictEqual(digest(w.server.base), before, "no file or directory was created or changed")
      const alice = yield* ftpAttempt(w.server.ftpPort, "alice", "alice-password")
      assert.strictEqual(alice.after, 257)
    }), 120_000)
})
