/**
 * The real OpenSSH clients against a real server: `sftp -b` (batch mode: any
 * failing command ends the batch with exit 1) and `scp -s` (SFTP protocol),
 * with password (sshpass) and ed25519 public-key authentication. Transfers are
 * checked with sha256 both ways; the escape matrix and the permission errors are
 * checked through the protocol, with exit codes and the host file system.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import * as PacketMemory from "../../src/protocols/sftp/PacketMemory.js"
import { describeResult, run, type RunResult, sshKeygen } from "../utils/Processes.js"
import { tempDir } from "../utils/TempDir.js"
import { testServer } from "../utils/TestServer.js"

type Login =
  | { readonly username: string; readonly password: string }
  | { readonly username: string; readonly privateKey: string }

const MiB = 1024 * 1024

const sha256 = (bytes: Buffer) => crypto.createHash("sha256").update(bytes).digest("hex")
const sha256File = (file: string) => sha256(fs.readFileSync(file))

/** Options shared by sftp and scp: no config file, no agent, no known_hosts, quiet. */
const sshOptions = (port: number, login: Login): Array<string> => [
  "-F", "/dev/null",
  "-P", String(port),
  "-o", "StrictHostKeyChecking=no",
  "-o", "UserKnownHostsFile=/dev/null",
  "-o", "GlobalKnownHostsFile=/dev/null",
  "-o", "LogLevel=ERROR",
  "-o", "IdentityAgent=none",
  "-o", "ConnectTimeout=30",
  // ssh keeps the first value of an option: these come before the `-oBatchMode=yes` that `sftp -b` adds.
  ...("password" in login
    ? ["-o", "BatchMode=no", "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1"]
    : ["-o", "BatchMode=yes", "-o", "PreferredAuthentications=publickey", "-o", "IdentitiesOnly=yes", "-i", login.privateKey])
]

/** Runs an OpenSSH client; a password goes through sshpass (in the environment, not argv). */
const client = (program: "sftp" | "scp" | "ssh", login: Login, args: ReadonlyArray<string>) =>
  ("password" in login
    ? run("sshpass", ["-e", program, ...args], { env: { SSHPASS: login.password, SSH_AUTH_SOCK: undefined } })
    : run(program, args, { env: { SSH_AUTH_SOCK: undefined } })).pipe(Effect.orDie)

let batches = 0

/** `sftp -b` with these commands (and `options` for ssh); the batch file is written to `dir`. */
const sftpBatch = (port: number, login: Login, dir: string, commands: ReadonlyArray<string>, options: ReadonlyArray<string> = []) =>
  Effect.suspend(() => {
    const batch = path.join(dir, `batch-${++batches}.txt`)
    fs.writeFileSync(batch, commands.join("\n") + "\n")
    return client("sftp", login, [...sshOptions(port, login), ...options, "-b", batch, `${login.username}@127.0.0.1`])
  })

/** `scp -s` (the SFTP protocol, OpenSSH 9's default made explicit) from `source` to `target`. */
const scp = (port: number, login: Login, source: string, target: string) =>
  client("scp", login, ["-s", "-q", ...sshOptions(port, login), source, target])

/** The batch succeeded (exit 0); dies with the output otherwise. */
const sftpOk = (port: number, login: Login, dir: string, commands: ReadonlyArray<string>, options: ReadonlyArray<string> = []) =>
  sftpBatch(port, login, dir, commands, options).pipe(
    Effect.tap((result) => Effect.sync(() => assert.strictEqual(result.code, 0, describeResult(result))))
  )

/** The batch failed the way OpenSSH reports a failed command: exit 1 and a message on stderr. */
const assertFailed = (result: RunResult, stderr: RegExp) => {
  assert.strictEqual(result.code, 1, describeResult(result))
  assert.match(result.stderr, stderr, describeResult(result))
}

/** What the commands printed, without the `sftp> command` echo lines. */
const output = (result: RunResult) => result.stdout.split("\n").filter((line) => line.length > 0 && !line.startsWith("sftp> "))

/** Every path under `dir` (relative), skipping `skip`, with each file's sha256: a snapshot of the host. */
const snapshot = (dir: string, skip: string): Record<string, string> => {
  const out: Record<string, string> = {}
  const walk = (at: string) => {
    for (const entry of fs.readdirSync(at, { withFileTypes: true })) {
      const full = path.join(at, entry.name)
      if (full === skip) continue
      const rel = path.relative(dir, full)
      if (entry.isDirectory()) {
        out[rel] = "dir"
        walk(full)
      } else if (entry.isSymbolicLink()) out[rel] = `link:${fs.readlinkSync(full)}`
      else out[rel] = sha256File(full)
    }
  }
  walk(dir)
  return out
}

describe("OpenSSH sftp and scp", () => {
  for (const auth of ["password", "publickey"] as const) {
    it.effect(`put and get a 20 MiB file with ${auth} authentication, sha256 both ways`, () =>
      Effect.gen(function*() {
        const local = yield* tempDir("portcullis-openssh-")
        const key = yield* sshKeygen(local)
        const server = yield* testServer({
          users: [{ username: "alice", password: "alice-password", authorizedKeys: [key.publicKey] }]
        })
        const login: Login = auth === "password"
          ? { username: "alice", password: "alice-password" }
          : { username: "alice", privateKey: key.privateKey }
        const data = crypto.randomBytes(20 * MiB)
        const digest = sha256(data)
        fs.writeFileSync(path.join(local, "up.bin"), data)
        const result = yield* sftpOk(server.port, login, local, [
          `put ${path.join(local, "up.bin")} /big.bin`,
          `get /big.bin ${path.join(local, "down.bin")}`,
          "ls -l /big.bin"
        ])
        assert.strictEqual(sha256File(path.join(server.roots["alice"]!, "big.bin")), digest, "upload")
        assert.strictEqual(sha256File(path.join(local, "down.bin")), digest, "download")
        const listed = output(result)
        assert.strictEqual(listed.length, 1, describeResult(result))
        // New files get the server's file mode (0600 by default), whatever the client asks for.
        assert.match(listed[0]!, new RegExp(`^-rw------- .* ${20 * MiB} .* /big\\.bin$`))
      }))
  }

  // The client re-keys every MiB in both directions (RekeyLimit), so key exchanges
  // land between the channel data of the upload, where InboundBuffers frees reads,
  // and of the download, whose packets PacketMemory reuses.
  for (const cipher of ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"]) {
    it.effect(`put and get 24 MiB with ${cipher}, re-keying every MiB, sha256 both ways`, () =>
      Effect.gen(function*() {
        const local = yield* tempDir("portcullis-openssh-")
        const server = yield* testServer({ users: [{ username: "alice", password: "alice-password" }] })
        const login: Login = { username: "alice", password: "alice-password" }
        const data = crypto.randomBytes(24 * MiB)
        fs.writeFileSync(path.join(local, "up.bin"), data)
        const before = PacketMemory.counts()
        yield* sftpOk(server.port, login, local, [
          `put ${path.join(local, "up.bin")} /big.bin`,
          `get /big.bin ${path.join(local, "down.bin")}`
        ], ["-c", cipher, "-o", "RekeyLimit=1M"])
        assert.strictEqual(sha256File(path.join(server.roots["alice"]!, "big.bin")), sha256(data), "upload")
        assert.strictEqual(sha256File(path.join(local, "down.bin")), sha256(data), "download")
        // The download's 768 full packets went out in reused memory, and were intact.
        assert.isAtLeast(PacketMemory.counts().reused - before.reused, 700)
      }))
  }

  // Every connection takes its packets' memory from one free list: downloads at
  // once, of different files, must each get exactly their own bytes.
  it.effect("four downloads at once, both ciphers, share the packet memory and each gets its own file intact", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-openssh-")
      const server = yield* testServer({ users: [{ username: "alice", password: "alice-password" }] })
      const login: Login = { username: "alice", password: "alice-password" }
      const files = Array.from({ length: 4 }, (_, i) => ({ name: `f${i}.bin`, data: crypto.randomBytes(12 * MiB) }))
      for (const { name, data } of files) fs.writeFileSync(path.join(server.roots["alice"]!, name), data)
      const before = PacketMemory.counts()
      yield* Effect.all(
        files.map(({ name }, i) =>
          sftpOk(server.port, login, local, [`get /${name} ${path.join(local, name)}`], [
            "-c", i % 2 === 0 ? "aes128-gcm@openssh.com" : "chacha20-poly1305@openssh.com"
          ])
        ),
        { concurrency: "unbounded" }
      )
      for (const { name, data } of files) assert.strictEqual(sha256File(path.join(local, name)), sha256(data), name)
      // 4 × 384 full packets; far fewer blocks than that were made.
      assert.isAtLeast(PacketMemory.counts().reused - before.reused, 1200)
    }))

  it.effect("a wrong password and an unknown key are refused: exit 255", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-openssh-")
      const server = yield* testServer()
      const stranger = yield* sshKeygen(local)
      const wrong = yield* sftpBatch(server.port, { username: "alice", password: "not-the-password" }, local, ["pwd"])
      assert.strictEqual(wrong.code, 255, describeResult(wrong))
      assert.match(wrong.stderr, /Permission denied \(password,publickey\)/)
      const unknownKey = yield* sftpBatch(server.port, { username: "alice", privateKey: stranger.privateKey }, local, ["pwd"])
      assert.strictEqual(unknownKey.code, 255, describeResult(unknownKey))
      assert.match(unknownKey.stderr, /Permission denied \(password,publickey\)/)
    }))

  it.effect("mkdir, rename, rm, rmdir, ls -l, chmod, df, cd and pwd", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-openssh-")
      const server = yield* testServer()
      const root = server.roots["alice"]!
      const login: Login = { username: "alice", password: "alice-password" }
      fs.writeFileSync(path.join(local, "a.txt"), "alpha\n")
      fs.writeFileSync(path.join(local, "b.txt"), "bravo\n")
      const result = yield* sftpOk(server.port, login, local, [
        "mkdir /docs",
        "mkdir /docs/empty",
        `put ${path.join(local, "a.txt")} /docs/a.txt`,
        `put ${path.join(local, "b.txt")} /docs/b.txt`,
        "rename /docs/b.txt /docs/c.txt",
        "chmod 640 /docs/a.txt",
        "cd /docs",
        "pwd",
        "ls -l",
        "df /",
        "rm c.txt",
        "rmdir empty",
        "cd ..",
        "pwd",
        "ls -1"
      ])
      const lines = output(result)
      const listing = lines.filter((line) => /^[-dl][-rwxsStT]{9} /.test(line))
      assert.deepStrictEqual(listing.map((line) => line.split(/\s+/).at(-1)), ["a.txt", "c.txt", "empty"], describeResult(result))
      assert.match(listing[0]!, /^-rw-r----- +1 .* 6 .* a\.txt$/)
      assert.match(listing[1]!, /^-rw------- +1 .* 6 .* c\.txt$/)
      assert.match(listing[2]!, /^d/)
      assert.deepStrictEqual(lines.filter((line) => line.startsWith("Remote working directory")), [
        "Remote working directory: /docs",
        "Remote working directory: /"
      ])
      // df: a header, then size, used, available, root-reserved (all in KiB) and capacity.
      const dfHeader = lines.findIndex((line) => /Size +Used +Avail +\(root\) +%Capacity/.test(line))
      assert.isAtLeast(dfHeader, 0, describeResult(result))
      assert.match(lines[dfHeader + 1]!, /^ *\d+ +\d+ +\d+ +\d+ +\d+%$/)
      assert.deepStrictEqual(lines.slice(-1), ["docs"])

      assert.strictEqual(fs.readFileSync(path.join(root, "docs", "a.txt"), "utf8"), "alpha\n")
      assert.strictEqual(fs.statSync(path.join(root, "docs", "a.txt")).mode & 0o777, 0o640)
      assert.deepStrictEqual(fs.readdirSync(path.join(root, "docs")), ["a.txt"])

      // mkdir of an existing directory and rmdir of a non-empty one fail; `-` lets the batch go on.
      const errors = yield* sftpBatch(server.port, login, local, ["-mkdir /docs", "-rmdir /docs", "-rm /docs/nope", "mkdir /docs"])
      // OpenSSH prints the status code's text, not the server's message ("File exists", "Directory not empty").
      assertFailed(errors, /remote mkdir "\/docs": Failure/)
      assert.match(errors.stderr, /remote rmdir "\/docs": Failure/)
      assert.match(errors.stderr, /remote delete \/docs\/nope: No such file or directory/)
      assert.strictEqual(errors.stderr.match(/remote mkdir/g)?.length, 2, "the last, unprefixed mkdir ends the batch")
      assert.deepStrictEqual(fs.readdirSync(path.join(root, "docs")), ["a.txt"])
    }))

  it.effect("resume: reget of a partial download and reput of a partial upload", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-openssh-")
      const server = yield* testServer()
      const root = server.roots["alice"]!
      const login: Login = { username: "alice", password: "alice-password" }
      const data = crypto.randomBytes(6 * MiB + 12345)
      const digest = sha256(data)
      const cut = 2 * MiB + 777
      fs.writeFileSync(path.join(root, "remote.bin"), data)
      fs.writeFileSync(path.join(local, "partial.bin"), data.subarray(0, cut))
      // A prefix that differs from the source proves that only the rest was transferred.
      fs.writeFileSync(path.join(local, "marked.bin"), Buffer.alloc(cut, 0x5a))
      fs.writeFileSync(path.join(local, "source.bin"), data)
      fs.writeFileSync(path.join(root, "partial-up.bin"), data.subarray(0, cut))
      fs.writeFileSync(path.join(root, "marked-up.bin"), Buffer.alloc(cut, 0x5a))
      yield* sftpOk(server.port, login, local, [
        `reget /remote.bin ${path.join(local, "partial.bin")}`,
        `reget /remote.bin ${path.join(local, "marked.bin")}`,
        `reput ${path.join(local, "source.bin")} /partial-up.bin`,
        `reput ${path.join(local, "source.bin")} /marked-up.bin`
      ])
      const marked = sha256(Buffer.concat([Buffer.alloc(cut, 0x5a), data.subarray(cut)]))
      assert.strictEqual(sha256File(path.join(local, "partial.bin")), digest, "reget")
      assert.strictEqual(sha256File(path.join(local, "marked.bin")), marked, "reget resumed at the local size")
      assert.strictEqual(sha256File(path.join(root, "partial-up.bin")), digest, "reput")
      assert.strictEqual(sha256File(path.join(root, "marked-up.bin")), marked, "reput resumed at the remote size")
      assert.strictEqual(sha256File(path.join(root, "remote.bin")), digest, "the source is untouched")
    }))

  it.effect("put -R of a 200-file directory, then ls and get -R", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-openssh-")
      const server = yield* testServer()
      const root = server.roots["alice"]!
      const login: Login = { username: "alice", password: "alice-password" }
      const tree = path.join(local, "tree")
      fs.mkdirSync(path.join(tree, "nested"), { recursive: true })
      const names = Array.from({ length: 200 }, (_, i) => `file-${String(i).padStart(3, "0")}.txt`)
      const contents = new Map(names.map((name, i) => [name, `${name}\n${crypto.randomBytes(64 + i).toString("hex")}\n`]))
      for (const [name, content] of contents) fs.writeFileSync(path.join(tree, name), content)
      fs.writeFileSync(path.join(tree, "nested", "deep.txt"), "deep\n")
      const result = yield* sftpOk(server.port, login, local, [
        `put -R ${tree} /tree`,
        "ls -1 /tree",
        `get -R /tree ${path.join(local, "back")}`
      ])
      const listed = output(result).filter((line) => line.startsWith("/tree/")).map((line) => path.posix.basename(line))
      assert.strictEqual(listed.length, 201, describeResult(result))
      assert.deepStrictEqual(listed.sort(), [...names, "nested"].sort())
      assert.deepStrictEqual(fs.readdirSync(path.join(root, "tree")).sort(), [...names, "nested"].sort())
      for (const [name, content] of contents) {
        assert.strictEqual(fs.readFileSync(path.join(root, "tree", name), "utf8"), content, name)
        assert.strictEqual(fs.readFileSync(path.join(local, "back", name), "utf8"), content, name)
      }
      assert.strictEqual(fs.readFileSync(path.join(root, "tree", "nested", "deep.txt"), "utf8"), "deep\n")
      assert.strictEqual(fs.readFileSync(path.join(local, "back", "nested", "deep.txt"), "utf8"), "deep\n")
    }))

  it.effect("scp -s upload and download with ed25519 and password, sha256 both ways", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-openssh-")
      const key = yield* sshKeygen(local)
      const server = yield* testServer({
        users: [{ username: "alice", password: "alice-password", authorizedKeys: [key.publicKey] }]
      })
      const root = server.roots["alice"]!
      const data = crypto.randomBytes(5 * MiB + 3)
      const digest = sha256(data)
      fs.writeFileSync(path.join(local, "up.bin"), data)
      const keyLogin: Login = { username: "alice", privateKey: key.privateKey }
      for (const login of [keyLogin, { username: "alice", password: "alice-password" }]) {
        const kind = "password" in login ? "password" : "key"
        const up = yield* scp(server.port, login, path.join(local, "up.bin"), `alice@127.0.0.1:/scp-${kind}.bin`)
        assert.strictEqual(up.stderr, "", describeResult(up))
        assert.strictEqual(sha256File(path.join(root, `scp-${kind}.bin`)), digest, `upload with ${kind}`)
        // scp (unlike sftp's get) writes in place and, in OpenSSH 9.2, truncates the file at the highest
        // offset it received in order: replies to pipelined READs must come back in request order.
        const down = yield* scp(server.port, login, `alice@127.0.0.1:/scp-${kind}.bin`, path.join(local, `down-${kind}.bin`))
        assert.strictEqual(down.stderr, "", describeResult(down))
        assert.strictEqual(sha256File(path.join(local, `down-${kind}.bin`)), digest, `download with ${kind}`)
      }
      const missing = yield* scp(server.port, keyLogin, "alice@127.0.0.1:/missing.bin", path.join(local, "missing.bin"))
      assert.strictEqual(missing.code, 1, describeResult(missing))
      assert.match(missing.stderr, /No such file/)
      assert.isFalse(fs.existsSync(path.join(local, "missing.bin")))
    }))

  it.effect("scp -s and ssh -s sftp exit 0 after a clean session (the server sends exit-status 0)", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-openssh-")
      const key = yield* sshKeygen(local)
      const server = yield* testServer({ users: [{ username: "alice", authorizedKeys: [key.publicKey] }] })
      const login: Login = { username: "alice", privateKey: key.privateKey }
      fs.writeFileSync(path.join(local, "small.txt"), "small\n")
      const up = yield* scp(server.port, login, path.join(local, "small.txt"), "alice@127.0.0.1:/small.txt")
      const down = yield* scp(server.port, login, "alice@127.0.0.1:/small.txt", path.join(local, "back.txt"))
      assert.strictEqual(fs.readFileSync(path.join(local, "back.txt"), "utf8"), "small\n")
      // The subsystem with an empty stdin: the client sends EOF at once, the server ends the channel.
      const sshArgs = sshOptions(server.port, login).map((arg) => (arg === "-P" ? "-p" : arg))
      const subsystem = yield* client("ssh", login, [...sshArgs, "-s", "alice@127.0.0.1", "sftp"])
      assert.deepStrictEqual([up.code, down.code, subsystem.code], [0, 0, 0], [up, down, subsystem].map(describeResult).join("\n"))
    }))

  it.effect("escape matrix: .., absolute .., planted links, cd .. at the root; nothing outside changes", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-openssh-")
      const server = yield* testServer()
      const root = server.roots["alice"]!
      const login: Login = { username: "alice", password: "alice-password" }
      const canary = path.join(server.base, "secret")
      fs.writeFileSync(canary, "SECRET CANARY\n")
      fs.mkdirSync(path.join(server.base, "outside"))
      fs.writeFileSync(path.join(server.base, "outside", "data.txt"), "outside data\n")
      fs.symlinkSync(canary, path.join(root, "planted"))
      fs.symlinkSync(path.join(server.base, "outside"), path.join(root, "outdir"))
      fs.writeFileSync(path.join(root, "inside.txt"), "inside\n")
      fs.writeFileSync(path.join(local, "payload.txt"), "payload\n")
      const before = snapshot(server.base, root)
      const canaryBefore = fs.readFileSync(canary)

      // Every way out fails, each in its own batch so each exit code is seen.
      const download = path.join(local, "loot")
      const attempts: ReadonlyArray<readonly [string, RegExp]> = [
        ["get ../../../etc/passwd", /not found/],
        ["get /../secret", /not found/],
        ["get ../../secret", /not found/],
        ["get /..//../outside/data.txt", /not found/],
        ["get planted", /Permission denied/],
        ["get /outdir/data.txt", /Permission denied|not found/],
        ["cd /outdir", /Permission denied|Can't change directory/],
        ["ls /outdir/data.txt", /Permission denied|not found/]
      ]
      for (const [command, message] of attempts) {
        const result = yield* sftpBatch(server.port, login, local, [`lcd ${local}`, command.startsWith("get") ? `${command} ${download}` : command])
        assertFailed(result, message)
        assert.isFalse(fs.existsSync(download), `${command} wrote nothing locally`)
      }

      // Paths with .. that stay inside resolve inside: an upload "above" the root lands at the root.
      const inside = yield* sftpOk(server.port, login, local, [
        "cd ..",
        "pwd",
        "cd /../../..",
        "pwd",
        `put ${path.join(local, "payload.txt")} ../../escaped.txt`,
        "mkdir ../../../made",
        `get ../../inside.txt ${path.join(local, "inside.txt")}`,
        "ls -l /"
      ])
      const lines = output(inside)
      assert.deepStrictEqual(lines.filter((line) => line.startsWith("Remote working directory")), [
        "Remote working directory: /",
        "Remote working directory: /"
      ])
      assert.strictEqual(fs.readFileSync(path.join(local, "inside.txt"), "utf8"), "inside\n")
      assert.strictEqual(fs.readFileSync(path.join(root, "escaped.txt"), "utf8"), "payload\n")
      assert.isTrue(fs.statSync(path.join(root, "made")).isDirectory())
      // The planted links are listed (as links), never followed.
      const planted = lines.find((line) => line.endsWith(" planted"))
      const outdir = lines.find((line) => line.endsWith(" outdir"))
      assert.match(planted ?? "", /^l/, describeResult(inside))
      assert.match(outdir ?? "", /^l/, describeResult(inside))
      assert.notInclude(inside.stdout, server.base)

      assert.isTrue(fs.readFileSync(canary).equals(canaryBefore), "the canary is byte-identical")
      assert.deepStrictEqual(snapshot(server.base, root), before, "nothing appeared or changed outside the root")
      assert.isFalse(fs.existsSync(path.join(server.base, "escaped.txt")))
      assert.isFalse(fs.existsSync(path.join(server.base, "made")))
    }))

  it.effect("permissions: the read-only user cannot put; the write-only user cannot get or ls", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-openssh-")
      const server = yield* testServer()
      fs.writeFileSync(path.join(server.roots["reader"]!, "r.txt"), "readable\n")
      fs.writeFileSync(path.join(server.roots["writer"]!, "w.txt"), "hidden\n")
      fs.writeFileSync(path.join(local, "up.txt"), "upload\n")
      const reader: Login = { username: "reader", password: "reader-password" }
      const writer: Login = { username: "writer", password: "writer-password" }

      const readerPut = yield* sftpBatch(server.port, reader, local, [`put ${path.join(local, "up.txt")} /up.txt`])
      assertFailed(readerPut, /Permission denied/)
      assert.deepStrictEqual(fs.readdirSync(server.roots["reader"]!), ["r.txt"])
      const readerMkdir = yield* sftpBatch(server.port, reader, local, ["mkdir /d"])
      assertFailed(readerMkdir, /remote mkdir "\/d": Permission denied/)
      const readerRm = yield* sftpBatch(server.port, reader, local, ["rm /r.txt"])
      assertFailed(readerRm, /Permission denied/)
      assert.deepStrictEqual(fs.readdirSync(server.roots["reader"]!), ["r.txt"])
      const readerGet = yield* sftpOk(server.port, reader, local, [`get /r.txt ${path.join(local, "r.txt")}`, "ls -1 /"])
      assert.strictEqual(fs.readFileSync(path.join(local, "r.txt"), "utf8"), "readable\n")
      assert.deepStrictEqual(output(readerGet).map((line) => path.posix.basename(line)), ["r.txt"])

      const writerGet = yield* sftpBatch(server.port, writer, local, [`get /w.txt ${path.join(local, "w.txt")}`])
      assertFailed(writerGet, /Permission denied/)
      assert.isFalse(fs.existsSync(path.join(local, "w.txt")))
      const writerLs = yield* sftpBatch(server.port, writer, local, ["ls /"])
      assertFailed(writerLs, /Permission denied/)
      assert.notInclude(writerLs.stdout, "w.txt")
      yield* sftpOk(server.port, writer, local, [`put ${path.join(local, "up.txt")} /up.txt`])
      assert.strictEqual(fs.readFileSync(path.join(server.roots["writer"]!, "up.txt"), "utf8"), "upload\n")
    }))
})
