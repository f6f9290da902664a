/**
 * SIGKILL with the SQLite user store in use, on the real command: `portcullis
 * serve` on `users: { sqlite }` is killed while `portcullis user add/passwd/
 * disable/enable` processes change users and SFTP logins read the store; some
 * `user passwd` processes are killed too, right as the write-ahead log changes
 * (so some die in or around their write). Then the server is started again on
 * the same database.
 *
 * What must hold: the database passes `PRAGMA integrity_check` and
 * `foreign_key_check`; every user whose change command reported success is there
 * with its last password (the one before is refused); a user whose last change
 * was killed has either its last reported password or the killed one, never
 * anything else; the server starts cleanly and logins work.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { DatabaseSync } from "node:sqlite"
import ssh2 from "ssh2"
import { tempDir } from "../utils/TempDir.js"
import { serve, user, writeConfig } from "../utils/Command.js"

const bin = path.resolve(import.meta.dirname, "../../bin/portcullis")

/** One change, as the command line runs it, and the password it sets (if any). */
interface Change {
  readonly args: ReadonlyArray<string>
  readonly password?: string
}

const changesOf = (name: string, root: string): ReadonlyArray<Change> => [
  { args: ["add", name, "--root", root, "--password-stdin"], password: `${name}-pw-0` },
  { args: ["passwd", name, "--password-stdin"], password: `${name}-pw-1` },
  { args: ["disable", name] },
  { args: ["enable", name] },
  { args: ["passwd", name, "--password-stdin"], password: `${name}-pw-2` }
]

/**
 * Whether `password` logs `username` in over SSH. A connection that closes or
 * fails before authentication (the server was killed) is a no.
 */
const canLogin = (port: number, username: string, password: string) =>
  Effect.callback<boolean>((resume) => {
    const client = new ssh2.Client()
    const done = (ok: boolean) => {
      client.end()
      resume(Effect.succeed(ok))
    }
    client.on("ready", () => done(true))
    client.on("error", () => done(false))
    client.on("close", () => done(false))
    client.connect({ host: "127.0.0.1", port, username, password, readyTimeout: 60_000 })
    return Effect.sync(() => void client.destroy())
  })

/** Runs `user passwd NAME --password-stdin` and kills it (SIGKILL) when `killWhen` completes first. */
const killablePasswd = (db: string, name: string, password: string, killWhen: Effect.Effect<void>) =>
  Effect.gen(function*() {
    const child = spawn(bin, ["user", "passwd", name, "--password-stdin", "--db", db], { stdio: ["pipe", "ignore", "ignore"] })
    child.stdin.on("error", () => {})
    child.stdin.end(`${password}\n`)
    // The exit code, or null when a signal (our SIGKILL) ended it.
    const exited = yield* Deferred.make<number | null>()
    child.on("close", (code) => Deferred.doneUnsafe(exited, Effect.succeed(code)))
    const killer = yield* Effect.forkChild(killWhen.pipe(Effect.andThen(Effect.sync(() => void child.kill("SIGKILL")))))
    const code = yield* Deferred.await(exited)
    yield* Fiber.interrupt(killer)
    if (code !== 0 && code !== null) return yield* Effect.die(new Error(`user passwd ${name} failed with ${code}`))
    return code === 0 ? ("succeeded" as const) : ("killed" as const)
  })

/** Completes at the next change of the database's write-ahead log (or of the database file). */
const nextWrite = (dir: string) =>
  Effect.callback<void>((resume) => {
    const watcher = fs.watch(dir, (_event, file) => {
      if (file === "users.db-wal" || file === "users.db") {
        watcher.close()
        resume(Effect.void)
      }
    })
    return Effect.sync(() => watcher.close())
  })

describe("SIGKILL with the SQLite user store in use", () => {
  it.live("server and user commands killed mid-change; after a restart the store is intact and holds every reported change", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("portcullis-sqlite-crash-")
      const db = path.join(dir, "users.db")
      const root = path.join(dir, "home")
      fs.mkdirSync(root)
      const config = writeConfig(dir, { sftp: { address: "127.0.0.1:0" }, users: { sqlite: db } })
      const first = yield* serve(config, dir)
      const firstPort = yield* first.port("sftp")

      // What each command reported: the last password a successful command set, per user.
      const lastPassword = new Map<string, string>()
      const previousPassword = new Map<string, string>()
      let succeeded = 0
      const serverKilled = yield* Deferred.make<void>()
      const names = ["u0", "u1", "u2", "u3"]

      // Logins against the running server while the store changes: whatever they get, they read the store.
      const logins = yield* Effect.forkChild(Effect.raceFirst(
        Effect.forever(Effect.suspend(() => {
          const known = [...lastPassword]
          const [name, pw] = known[Math.floor(Math.random() * known.length)] ?? ["u0", "none"]
          return canLogin(firstPort, name, pw)
        })),
        Deferred.await(serverKilled)
      ))

      const chain = (name: string) =>
        Effect.forEach(changesOf(name, root), (change) =>
          Effect.gen(function*() {
            const result = yield* user(db, change.args, change.password === undefined ? "" : `${change.password}\n`)
            assert.strictEqual(result.code, 0, `${change.args.join(" ")}: ${result.stderr}`)
            if (change.password !== undefined) {
              const before = lastPassword.get(name)
              if (before !== undefined) previousPassword.set(name, before)
              lastPassword.set(name, change.password)
            }
            // The server dies in the middle of the changes, while logins are reading the store.
            if (++succeeded === 6) {
              first.child.kill("SIGKILL")
              yield* Deferred.succeed(serverKilled, undefined)
            }
          }), { discard: true })

      // A victim whose password changes are killed as soon as the database is written to.
      const victim = Effect.gen(function*() {
        const added = yield* user(db, ["add", "victim", "--root", root, "--password-stdin"], "victim-pw-0\n")
        assert.strictEqual(added.code, 0, added.stderr)
        let reported = "victim-pw-0"
        const killedAfter: Array<string> = []
        for (let i = 1; i <= 4; i++) {
          const outcome = yield* killablePasswd(db, "victim", `victim-pw-${i}`, i % 2 === 1 ? nextWrite(dir) : Effect.never)
          if (outcome === "succeeded") {
            reported = `victim-pw-${i}`
            killedAfter.length = 0
          } else killedAfter.push(`victim-pw-${i}`)
        }
        return { reported, killedAfter }
      })

      const [, victimOutcome] = yield* Effect.all([Effect.forEach(names, chain, { concurrency: 2, discard: true }), victim], { concurrency: 2 })
      yield* Deferred.await(serverKilled)
      const killed = yield* first.exit
      assert.strictEqual(killed.signal, "SIGKILL")
      yield* Fiber.interrupt(logins)

      // The store as another program sees it, before any Portcullis process opens it again.
      const check = new DatabaseSync(db)
      const integrity = check.prepare("PRAGMA integrity_check").all().map((r) => r["integrity_check"])
      const foreignKeys = check.prepare("PRAGMA foreign_key_check").all()
      const rows = check.prepare("SELECT username, disabled FROM users ORDER BY username").all()
      check.close()
      assert.deepStrictEqual(integrity, ["ok"])
      assert.strictEqual(foreignKeys.length, 0)
      assert.deepStrictEqual(rows.map((r) => [r["username"], r["disabled"]]), [["u0", 0], ["u1", 0], ["u2", 0], ["u3", 0], ["victim", 0]])

      // The server starts again on the same file, and every reported change holds.
      const second = yield* serve(config, dir)
      const port = yield* second.port("sftp")
      for (const name of names) {
        assert.isTrue(yield* canLogin(port, name, lastPassword.get(name)!), `${name} logs in with its last password`)
        assert.isFalse(yield* canLogin(port, name, previousPassword.get(name)!), `${name}'s previous password is refused`)
      }
      const candidates = [victimOutcome.reported, ...victimOutcome.killedAfter]
      const accepted: Array<string> = []
      for (const candidate of ["victim-pw-0", "victim-pw-1", "victim-pw-2", "victim-pw-3", "victim-pw-4"]) {
        if (yield* canLogin(port, "victim", candidate)) accepted.push(candidate)
      }
      assert.strictEqual(accepted.length, 1, `exactly one password works for the victim: ${accepted.join(", ")}`)
      assert.include(candidates, accepted[0], "the reported password, or one whose command was killed after it")
      assert.isEmpty(second.records().filter((r) => r["level"] === "error" || r["level"] === "fatal"), JSON.stringify(second.records()))
      const listed = yield* user(db, ["list", "--json"])
      assert.strictEqual(listed.code, 0, listed.stderr)
      assert.sameMembers((JSON.parse(listed.stdout) as Array<{ username: string }>).map((u) => u.username), [...names, "victim"])
    }), 180_000)
})
