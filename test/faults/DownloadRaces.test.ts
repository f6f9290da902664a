/**
 * A file changed on the host while a client downloads it: unlinked, or truncated.
 * The change is made at a deterministic point, right after the server's first
 * read of the file returned (FaultyJail.afterRead on the real jail), with real
 * clients on both protocols.
 *
 * What must hold: the client sees a clean end or a clean error, never a hang;
 * every byte it got is the file's byte at that offset (never garbage from
 * another file); no fd is left; the server goes on serving.
 * - Unlinked: POSIX keeps the open inode, so the download completes whole.
 * - Truncated: reads past the new end return nothing, so the transfer ends
 *   early: FTP 226 with fewer bytes, SFTP EOF.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { connect as ftpConnect, type FtpRawClient, ftpTestServer, openData, sha256 } from "../utils/FtpRawClient.js"
import * as FaultyJail from "../utils/FaultyJail.js"
import { describeResult, run } from "../utils/Processes.js"
import { call, connect as sftpConnect } from "../utils/SftpClient.js"
import { tempDir } from "../utils/TempDir.js"
import { describeNewFds, openFds, sessionsGone } from "./Probes.js"

const MiB = 1024 * 1024

/** PASV, RETR; everything that arrived and the final reply. */
const ftpRetrieve = (client: FtpRawClient, name: string) =>
  Effect.gen(function*() {
    const port = yield* client.pasv
    yield* client.expect(`RETR ${name}`, 150)
    const data = yield* openData(port)
    const bytes = yield* data.done
    return { reply: yield* client.reply, bytes }
  })

/** OpenSSH `sftp -b` with password authentication. */
const openSshBatch = (port: number, dir: string, commands: ReadonlyArray<string>) =>
  Effect.suspend(() => {
    const batch = path.join(dir, `batch-${crypto.randomUUID()}`)
    fs.writeFileSync(batch, commands.join("\n") + "\n")
    return run("sshpass", [
      "-e", "sftp", "-F", "/dev/null", "-P", String(port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
      "-o", "LogLevel=ERROR", "-o", "BatchMode=no", "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
      "-b", batch, "alice@127.0.0.1"
    ], { env: { SSHPASS: "alice-password", SSH_AUTH_SOCK: undefined } }).pipe(Effect.orDie)
  })

/** `got` is `original` cut short: the same bytes at every offset it has. */
const assertPrefix = (got: Buffer, original: Buffer, label: string) => {
  assert.isAtMost(got.length, original.length, label)
  assert.isTrue(got.equals(original.subarray(0, got.length)), `${label}: the bytes received are the file's own`)
}

describe("a file changed on the host during a download", () => {
  it.live("unlinked after the first read: FTP (raw, curl) and SFTP (OpenSSH get, ssh2) still get the whole file; no fd left", () =>
    Effect.gen(function*() {
      const jail = FaultyJail.make()
      const server = yield* ftpTestServer({ jail: jail.layer, ftp: { requireTLS: false } })
      const root = server.roots["alice"]!
      const local = yield* tempDir()
      const content = crypto.randomBytes(6 * MiB + 123)
      const names = ["raw.bin", "curl.bin", "openssh.bin", "ssh2.bin"]
      for (const name of names) fs.writeFileSync(path.join(root, name), content)
      yield* jail.arm(FaultyJail.afterRead(1, Effect.sync(() => {
        for (const name of names) fs.rmSync(path.join(root, name), { force: true })
      })))
      const before = openFds()

      const raw = yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* ftpConnect(server.ftpPort)
        yield* client.login("alice")
        const got = yield* ftpRetrieve(client, "raw.bin")
        yield* client.expect("QUIT", 221)
        yield* client.closed
        return got
      }))
      assert.strictEqual(raw.reply.code, 226, raw.reply.text)
      assert.strictEqual(sha256(raw.bytes), sha256(content))
      assert.isFalse(fs.existsSync(path.join(root, "raw.bin")), "the file was really unlinked mid-transfer")
      yield* sessionsGone(server.context)
      assert.strictEqual(openFds().size, before.size, `new fds: ${describeNewFds(before, openFds())}`)

      // A fresh copy for each real client (the first read of each unlinks all of them).
      for (const name of names.slice(1)) fs.writeFileSync(path.join(root, name), content)
      const curl = yield* run("curl", ["-sS", "--max-time", "60", "-o", path.join(local, "curl.bin"), `ftp://alice:alice-password@127.0.0.1:${server.ftpPort}/curl.bin`]).pipe(Effect.orDie)
      assert.strictEqual(curl.code, 0, describeResult(curl))
      assert.strictEqual(sha256(fs.readFileSync(path.join(local, "curl.bin"))), sha256(content))

      for (const name of names.slice(2)) fs.writeFileSync(path.join(root, name), content)
      const get = yield* openSshBatch(server.port, local, [`get /openssh.bin ${path.join(local, "openssh.bin")}`])
      assert.strictEqual(get.code, 0, describeResult(get))
      assert.strictEqual(sha256(fs.readFileSync(path.join(local, "openssh.bin"))), sha256(content))

      fs.writeFileSync(path.join(root, "ssh2.bin"), content)
      yield* Effect.scoped(Effect.gen(function*() {
        const { sftp } = yield* sftpConnect(server.port, "alice", { password: "alice-password" })
        yield* call((cb) => sftp.fastGet("/ssh2.bin", path.join(local, "ssh2.bin"), cb))
      }))
      assert.strictEqual(sha256(fs.readFileSync(path.join(local, "ssh2.bin"))), sha256(content))
      assert.deepStrictEqual(fs.readdirSync(root), [])
      yield* sessionsGone(server.context)
      assert.strictEqual(openFds().size, before.size, `new fds: ${describeNewFds(before, openFds())}`)
    }))

  it.live("truncated after the first read: FTP ends with 226 and a prefix, SFTP with EOF; curl and OpenSSH end (never hang); no fd left", () =>
    Effect.gen(function*() {
      const jail = FaultyJail.make()
      const server = yield* ftpTestServer({ jail: jail.layer, ftp: { requireTLS: false } })
      const root = server.roots["alice"]!
      const local = yield* tempDir()
      const content = crypto.randomBytes(6 * MiB + 123)
      const cutAt = 1536 * 1024
      let target = ""
      const put = (name: string) => {
        target = name
        fs.writeFileSync(path.join(root, name), content)
      }
      yield* jail.arm(FaultyJail.afterRead(1, Effect.sync(() => fs.truncateSync(path.join(root, target), cutAt))))
      const before = openFds()

      // FTP reads 1 MiB chunks in order: the second read ends at the cut, the third is empty.
      put("raw.bin")
      const raw = yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* ftpConnect(server.ftpPort)
        yield* client.login("alice")
        const got = yield* ftpRetrieve(client, "raw.bin")
        yield* client.expect("NOOP", 200)
        yield* client.expect("QUIT", 221)
        yield* client.closed
        return got
      }))
      assert.strictEqual(raw.reply.code, 226, raw.reply.text)
      assert.strictEqual(raw.bytes.length, cutAt)
      assertPrefix(raw.bytes, content, "raw FTP")

      // ssh2, one READ at a time: data before the cut, EOF after it.
      put("ssh2.bin")
      yield* Effect.scoped(Effect.gen(function*() {
        const { sftp } = yield* sftpConnect(server.port, "alice", { password: "alice-password" })
        const handle = yield* call<Buffer>((cb) => sftp.open("/ssh2.bin", "r", cb))
        const buffer = Buffer.alloc(64 * 1024)
        const first = yield* call<number>((cb) => sftp.read(handle, buffer, 0, buffer.length, 0, (e, n) => cb(e, n)))
        assert.strictEqual(first, buffer.length)
        // ssh2 turns the server's EOF status into a read of 0 bytes.
        const beyond = yield* call<number>((cb) => sftp.read(handle, buffer, 0, buffer.length, 4 * MiB, (e, n) => cb(e, n)))
        assert.strictEqual(beyond, 0)
        const attrs = yield* call<{ size: number }>((cb) => sftp.fstat(handle, cb))
        assert.strictEqual(attrs.size, cutAt)
        yield* call((cb) => sftp.close(handle, cb))
      }))

      // Real clients: whatever they make of it, they end, and what they kept is the file's own bytes.
      put("curl.bin")
      const curl = yield* run("curl", ["-sS", "--max-time", "60", "-o", path.join(local, "curl.bin"), `ftp://alice:alice-password@127.0.0.1:${server.ftpPort}/curl.bin`]).pipe(Effect.orDie)
      assert.isFalse(curl.timedOut, describeResult(curl))
      assert.include([0, 18], curl.code, describeResult(curl))
      assertPrefix(fs.readFileSync(path.join(local, "curl.bin")), content, "curl")

      put("openssh.bin")
      const get = yield* openSshBatch(server.port, local, [`get /openssh.bin ${path.join(local, "openssh.bin")}`])
      assert.isFalse(get.timedOut, describeResult(get))
      assertPrefix(fs.readFileSync(path.join(local, "openssh.bin")), content, "OpenSSH")

      yield* sessionsGone(server.context)
      assert.strictEqual(openFds().size, before.size, `new fds: ${describeNewFds(before, openFds())}`)
      assert.strictEqual(jail.firedCount(), 4)
    }))
})
