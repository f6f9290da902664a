/**
 * The operator commands on the real binary: keygen, hash-password, check-config,
 * --help and --version.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import ssh2 from "ssh2"
import { verifyPassword } from "../../src/layers/PasswordHash.js"
import { tempDir } from "../utils/TempDir.js"

const bin = path.resolve(import.meta.dirname, "../../bin/portcullis")
const run = (args: ReadonlyArray<string>, input = "") => {
  const result = spawnSync(bin, [...args], { input, encoding: "utf8", timeout: 60_000 })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

describe("portcullis tools", () => {
  it.effect("keygen writes a 0600 private key of the asked type, prints the public key, never overwrites", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      for (const type of ["ed25519", "ecdsa", "rsa"]) {
        const file = path.join(dir, `host_${type}`)
        const made = run(["keygen", "--host-key", file, "--type", type])
        assert.strictEqual(made.code, 0, made.stderr)
        assert.strictEqual(fs.statSync(file).mode & 0o777, 0o600)
        const key = ssh2.utils.parseKey(fs.readFileSync(file))
        assert.isFalse(key instanceof Error)
        assert.strictEqual((key as { isPrivateKey(): boolean }).isPrivateKey(), true)
        assert.match(made.stdout, /^(ssh-ed25519|ecdsa-sha2-nistp256|ssh-rsa) AAAA/)
        const again = run(["keygen", "--host-key", file])
        assert.strictEqual(again.code, 1)
        assert.include(again.stderr, "EEXIST")
      }
    }))

  it.effect("hash-password reads stdin and prints an argon2id hash that verifies; empty input is refused", () =>
    Effect.gen(function*() {
      const hashed = run(["hash-password"], "correct horse\n")
      assert.strictEqual(hashed.code, 0, hashed.stderr)
      const hash = hashed.stdout.trim()
      assert.match(hash, /^\$argon2id\$/)
      assert.isTrue(yield* verifyPassword("correct horse", hash))
      assert.strictEqual(run(["hash-password"], "").code, 2)
    }))

  it.effect("check-config validates fields, named files and users without serving", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const write = (config: unknown) => {
        const file = path.join(dir, "config.json")
        fs.writeFileSync(file, JSON.stringify(config))
        return file
      }
      const good = run(["check-config", "--config", write({ sftp: { address: "127.0.0.1:1" }, users: [{ username: "a", root: dir, password: "x" }] })])
      assert.strictEqual(good.code, 0, good.stderr)
      assert.strictEqual(good.stdout, "config ok\n")
      for (const [config, field] of [
        [{ sftp: { hostKeyFiles: [path.join(dir, "missing")] } }, "sftp.hostKeyFiles[0]"],
        [{ users: [{ username: "a", root: dir, passwordHash: "$1$md5" }] }, "users[0]"],
        [{ ftp: { tls: { certFile: path.join(dir, "config.json"), keyFile: path.join(dir, "config.json") } } }, "ftp.tls"],
        [{ ftp: { requireTLS: true } }, "ftp.tls"]
      ] as const) {
        const bad = run(["check-config", "--config", write(config)])
        assert.strictEqual(bad.code, 2, JSON.stringify(config))
        assert.include(bad.stderr, field)
      }
    }))

  it("--version and --help", () => {
    assert.match(run(["--version"]).stdout, /0\.1\.0/)
    const help = run(["--help"]).stdout
    for (const command of ["serve", "check-config", "keygen", "hash-password"]) assert.include(help, command)
  })
})
