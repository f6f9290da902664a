/**
 * lftp against a real server, over explicit FTPS with protected data
 * connections (AUTH TLS, PROT P) and passive mode: `mirror -R` of a tree of ~50
 * files in nested directories up, `mirror` of it back down, with every file's
 * content compared on the host and locally, then an incremental `mirror -R
 * --delete` that changes, adds and removes files. lftp's debug log shows what it
 * negotiated.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { describeResult, run } from "../utils/Processes.js"
import { tempDir } from "../utils/TempDir.js"
import { testServer } from "../utils/TestServer.js"

const sha256 = (bytes: Buffer) => crypto.createHash("sha256").update(bytes).digest("hex")

/** Every path under `dir` (relative, "/"-separated), directories as "dir", files by sha256. */
const snapshot = (dir: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (at: string) => {
    for (const entry of fs.readdirSync(at, { withFileTypes: true })) {
      const full = path.join(at, entry.name)
      const rel = path.relative(dir, full).split(path.sep).join("/")
      if (entry.isDirectory()) {
        out[rel] = "dir"
        walk(full)
      } else out[rel] = sha256(fs.readFileSync(full))
    }
  }
  walk(dir)
  return out
}

/**
 * A tree of 50 files: empty, small and up to 1 MiB, names with spaces and
 * UTF-8, in directories nested three deep, plus an empty directory.
 */
const makeTree = (root: string) => {
  const dirs = ["", "docs", "docs/drafts", "docs/drafts/old", "data", "data/2024", "data/2024/q1", "names with spaces", "ünïcödé"]
  for (const dir of dirs) fs.mkdirSync(path.join(root, dir), { recursive: true })
  fs.mkdirSync(path.join(root, "empty-dir"))
  for (let i = 0; i < 50; i++) {
    const dir = dirs[i % dirs.length]!
    const size = i === 0 ? 0 : i === 7 ? 1024 * 1024 + 7 : i % 5 === 0 ? 64 * 1024 + i : 100 + i * 37
    const name = i % 11 === 3 ? `file ${i}.txt` : `file-${String(i).padStart(2, "0")}.bin`
    fs.writeFileSync(path.join(root, dir, name), crypto.randomBytes(size))
  }
}

/** The lftp settings of every run: FTPS required for login and data, the CA, passive mode, fail fast. */
const settings = (certFile: string) => [
  "set cmd:fail-exit true",
  "set ftp:ssl-force true",
  "set ftp:ssl-protect-data true",
  "set ftp:ssl-protect-list true",
  `set ssl:ca-file "${certFile}"`,
  "set ssl:verify-certificate true",
  "set ftp:passive-mode true",
  "set net:max-retries 1",
  "set net:reconnect-interval-base 1",
  "set net:timeout 20",
  "set xfer:clobber true",
  "set mirror:parallel-transfer-count 2"
]

/** `lftp -d -c` with the settings, an open as alice, and `commands`; stderr holds the protocol log. */
const lftp = (port: number, certFile: string, commands: ReadonlyArray<string>) =>
  run("lftp", ["-d", "-c", [...settings(certFile), `open -u alice,alice-password ftp://127.0.0.1:${port}`, ...commands].join("; ")], {
    timeoutMs: 50_000,
    // No ~/.lftprc or proxy settings from the environment.
    env: { HOME: "/nonexistent", LFTP_HOME: "/nonexistent", ftp_proxy: undefined, all_proxy: undefined }
  }).pipe(Effect.orDie)

const lftpOk = (port: number, certFile: string, commands: ReadonlyArray<string>) =>
  lftp(port, certFile, commands).pipe(
    Effect.tap((result) => Effect.sync(() => assert.strictEqual(result.code, 0, describeResult(result))))
  )

describe("lftp", () => {
  it.effect("mirror -R up and mirror down a nested tree of 50 files over FTPS with PROT P", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-lftp-")
      const server = yield* testServer({ ftp: {} })
      const root = server.roots["alice"]!
      const tree = path.join(local, "tree")
      makeTree(tree)
      const original = snapshot(tree)
      assert.strictEqual(Object.values(original).filter((v) => v !== "dir").length, 50)

      const up = yield* lftpOk(server.ftpPort, server.certFile, [`mirror -R --no-perms "${tree}" /uploaded`])
      assert.deepStrictEqual(snapshot(path.join(root, "uploaded")), original, "the host has the tree")
      // lftp secured the control connection and protected every data connection.
      assert.match(up.stderr, /---> AUTH TLS/, describeResult(up))
      assert.match(up.stderr, /---> PROT P/)
      assert.notMatch(up.stderr, /---> PROT C/)
      // The only refusals: SITE UTIME (lftp tries it to set times, and carries on without it).
      const refused = up.stderr.split("\n").filter((line) => /<--- [45]\d\d /.test(line))
      assert.isAbove(refused.length, 0)
      for (const line of refused) assert.match(line, /<--- 502 Command not implemented/)
      assert.strictEqual(refused.length, (up.stderr.match(/---> SITE UTIME /g) ?? []).length)

      const back = path.join(local, "back")
      yield* lftpOk(server.ftpPort, server.certFile, [`mirror --no-perms /uploaded "${back}"`])
      assert.deepStrictEqual(snapshot(back), original, "the tree came back whole")
    }))

  it.effect("an incremental mirror -R --delete changes, adds and removes remote files", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-lftp-")
      const server = yield* testServer({ ftp: {} })
      const root = server.roots["alice"]!
      const tree = path.join(local, "tree")
      makeTree(tree)
      yield* lftpOk(server.ftpPort, server.certFile, [`mirror -R --no-perms "${tree}" /t`])
      assert.deepStrictEqual(snapshot(path.join(root, "t")), snapshot(tree))

      // Changed content of another size, a new file in a new directory, a removed file and directory.
      fs.writeFileSync(path.join(tree, "docs", "file-01.bin"), "changed, and shorter\n")
      fs.mkdirSync(path.join(tree, "new", "deeper"), { recursive: true })
      fs.writeFileSync(path.join(tree, "new", "deeper", "fresh.txt"), "fresh\n")
      fs.rmSync(path.join(tree, "data", "2024", "q1"), { recursive: true })
      fs.rmSync(path.join(tree, "file-09.bin"))
      const result = yield* lftpOk(server.ftpPort, server.certFile, [`mirror -R --delete --no-perms "${tree}" /t`])
      assert.deepStrictEqual(snapshot(path.join(root, "t")), snapshot(tree), describeResult(result))
      assert.match(result.stderr, /---> DELE /)
      assert.match(result.stderr, /---> RMD /)
    }))

  it.effect("without the CA the certificate is refused and nothing is sent", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-lftp-")
      const server = yield* testServer({ ftp: {} })
      fs.writeFileSync(path.join(local, "f.txt"), "f\n")
      const result = yield* run("lftp", [
        "-c",
        [
          "set cmd:fail-exit true",
          "set ftp:ssl-force true",
          "set ssl:ca-file /dev/null",
          "set ssl:verify-certificate true",
          "set net:max-retries 1",
          "set net:timeout 10",
          `open -u alice,alice-password ftp://127.0.0.1:${server.ftpPort}`,
          `put "${path.join(local, "f.txt")}" -o /f.txt`
        ].join("; ")
      ], { timeoutMs: 50_000, env: { HOME: "/nonexistent", LFTP_HOME: "/nonexistent" } }).pipe(Effect.orDie)
      assert.notStrictEqual(result.code, 0, describeResult(result))
      assert.match(result.stderr, /certificate|verif/i, describeResult(result))
      assert.deepStrictEqual(fs.readdirSync(server.roots["alice"]!), [])
    }))
})
