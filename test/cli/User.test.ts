/**
 * `portcullis user …` against a running `portcullis serve` on the same SQLite
 * store: changes apply at the next login, without a restart.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { spawn, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { call, connect, login } from "../utils/SftpClient.js"
import { tempDir } from "../utils/TempDir.js"

const bin = path.resolve(import.meta.dirname, "../../bin/portcullis")

describe("portcullis user", () => {
  it.live("add, log in, disable (refused), enable, change password, remove — while the server runs", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const db = path.join(dir, "users.db")
      const root = path.join(dir, "alice")
      fs.mkdirSync(root)
      const config = path.join(dir, "config.json")
      fs.writeFileSync(config, JSON.stringify({ sftp: { address: "127.0.0.1:0" }, users: { sqlite: db } }))
      const user = (args: ReadonlyArray<string>, input = "") => {
        const result = spawnSync(bin, ["user", ...args, "--config", config], { input, encoding: "utf8", timeout: 60_000, cwd: dir })
        return { code: result.status, stdout: result.stdout, stderr: result.stderr }
      }
      // The store starts empty; the server serves it from the start.
      assert.strictEqual(user(["list", "--json"]).stdout.trim(), "[]")
      const server = spawn(bin, ["serve", "--config", config], { cwd: dir, stdio: ["ignore", "pipe", "inherit"] })
      yield* Effect.addFinalizer(() => Effect.sync(() => void server.kill("SIGKILL")))
      const listening = yield* Deferred.make<number>()
      let output = ""
      server.stdout.on("data", (chunk: Buffer) => {
        output += chunk.toString()
        const match = /"event":"listening","protocol":"sftp","address":"127\.0\.0\.1:(\d+)"/.exec(output)
        if (match) Deferred.doneUnsafe(listening, Effect.succeed(Number(match[1])))
      })
      const port = yield* Deferred.await(listening)

      const added = user(["add", "alice", "--root", root, "--password-stdin"], "first-pw\n")
      assert.strictEqual(added.code, 0, added.stderr)
      yield* Effect.scoped(Effect.gen(function*() {
        const { sftp } = yield* connect(port, "alice", { password: "first-pw" })
        yield* call((cb) => sftp.writeFile("/hello.txt", "hi", cb))
      }))
      assert.strictEqual(user(["disable", "alice"]).code, 0)
      yield* Effect.flip(Effect.scoped(login(port, "alice", { password: "first-pw" })))
      assert.strictEqual(user(["enable", "alice"]).code, 0)
      yield* Effect.scoped(login(port, "alice", { password: "first-pw" }))
      const changed = user(["passwd", "alice", "--generate-password"])
      assert.strictEqual(changed.code, 0, changed.stderr)
      const generated = /password: (\S+)/.exec(changed.stdout)![1]!
      yield* Effect.flip(Effect.scoped(login(port, "alice", { password: "first-pw" })))
      yield* Effect.scoped(login(port, "alice", { password: generated }))
      const shown = JSON.parse(user(["show", "alice", "--json"]).stdout) as { canWrite: boolean; disabled: boolean }
      assert.deepStrictEqual([shown.canWrite, shown.disabled], [true, false])
      assert.strictEqual(user(["remove", "alice"]).code, 0)
      yield* Effect.flip(Effect.scoped(login(port, "alice", { password: generated })))
      assert.strictEqual(fs.readFileSync(path.join(root, "hello.txt"), "utf8"), "hi")
    }))

  it.effect("clear errors: duplicates, bad names, a missing root, missing credentials, unknown users", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const db = path.join(dir, "u.db")
      const run = (args: ReadonlyArray<string>, input = "") => {
        const result = spawnSync(bin, ["user", ...args, "--db", db], { input, encoding: "utf8", timeout: 60_000 })
        return { code: result.status, stderr: result.stderr, stdout: result.stdout }
      }
      assert.strictEqual(run(["add", "bob", "--root", dir, "--password-stdin"], "pw\n").code, 0)
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
        [["add", "bob", "--root", dir, "--generate-password"], "AlreadyExists"],
        [["add", "a/b", "--root", dir, "--generate-password"], "InvalidUsername"],
        [["add", "carol", "--root", path.join(dir, "missing"), "--generate-password"], "not an existing directory"],
        [["add", "carol", "--root", dir], "give a password"],
        [["add", "carol", "--root", dir, "--read-only", "--write-only", "--generate-password"], "not both"],
        [["remove", "nobody"], "NotFound"],
        [["passwd", "nobody", "--generate-password"], "NotFound"]
      ]
      for (const [args, message] of cases) {
        const result = run(args)
        assert.notStrictEqual(result.code, 0, args.join(" "))
        assert.include(result.stderr, message, args.join(" "))
        assert.notInclude(result.stdout, "password:", "no generated password is printed for a failed change")
      }
    }))
})
