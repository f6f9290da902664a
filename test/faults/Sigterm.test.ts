/**
 * SIGTERM to the real `portcullis serve` while transfers are in flight, SFTP and
 * FTP mixed. Each transfer is held in flight by its client, not by a timer: an
 * upload has sent half of its file and stops sending, an SFTP download has read
 * its first block and stops asking, an FTP download's client stops reading
 * (the file is several times what the socket buffers hold). An idle FTP session
 * tells when the server has started draining: it gets 421 right away.
 *
 * Then some clients finish during the drain and the others never do, so the
 * shutdown deadline interrupts them. What must hold: exit status 0 with the
 * `shutdown` line; every upload that completed is announced (one
 * `upload_completed` line) and its file on disk has the sha256 of what was sent;
 * no interrupted upload is announced; every client ends (finished or cut), none
 * hangs.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import type { SFTPWrapper } from "ssh2"
import { connect as ftpConnect, type FtpRawClient, onceEvent, openData, sha256 } from "../utils/FtpRawClient.js"
import { call, connect as sftpConnect } from "../utils/SftpClient.js"
import { tempDir } from "../utils/TempDir.js"
import { generateSshKeyPair } from "../../src/layers/SshKeys.js"
import { serve, writeConfig } from "../utils/Command.js"

const KiB = 1024
const MiB = 1024 * KiB
const password = "pw-alice"
const block = 256 * KiB

/** A server with SFTP and plain FTP for alice, and a shutdown deadline. */
const startServer = (shutdownTimeout: string) =>
  Effect.gen(function*() {
    const dir = yield* tempDir("portcullis-sigterm-")
    const root = path.join(dir, "alice")
    fs.mkdirSync(root)
    const hostKey = path.join(dir, "host_key")
    fs.writeFileSync(hostKey, generateSshKeyPair("ed25519").private)
    const config = writeConfig(dir, {
      sftp: { address: "127.0.0.1:0", hostKeyFiles: [hostKey] },
      ftp: { address: "127.0.0.1:0", requireTLS: false, passivePorts: "40000-49999" },
      shutdownTimeout,
      users: [{ username: "alice", password, root }]
    })
    const server = yield* serve(config, dir)
    return { server, root, sftpPort: yield* server.port("sftp"), ftpPort: yield* server.port("ftp") }
  })

const writeRange = (sftp: SFTPWrapper, handle: Buffer, content: Buffer, from: number, to: number) =>
  Effect.gen(function*() {
    for (let offset = from; offset < to; offset += block) {
      const length = Math.min(block, to - offset)
      yield* call((cb) => sftp.write(handle, content, offset, length, offset, cb))
    }
  })

/** Reads from `from` until EOF with one READ at a time; everything read. */
const readToEnd = (sftp: SFTPWrapper, handle: Buffer, from: number) =>
  Effect.gen(function*() {
    const parts: Array<Buffer> = []
    for (let offset = from;;) {
      const buffer = Buffer.alloc(block)
      const n = yield* call<number>((cb) => sftp.read(handle, buffer, 0, block, offset, (e, bytes) => cb(e, bytes)))
      if (n === 0) return Buffer.concat(parts)
      parts.push(buffer.subarray(0, n))
      offset += n
    }
  })

/** A transfer held in flight: `finish` completes it, `cut` completes when the server ended it. */
interface InFlight {
  readonly name: string
  /** Completes the transfer; what the client then holds (for downloads: the bytes received). */
  readonly finish: Effect.Effect<Buffer>
  /** Completes once the server has closed this client's connection. */
  readonly cut: Effect.Effect<{ readonly completed: boolean }>
}

const sftpUpload = (port: number, name: string, content: Buffer) =>
  Effect.gen(function*() {
    const { client, sftp } = yield* sftpConnect(port, "alice", { password })
    const closed = onceEvent(client, "close")
    const handle = yield* call<Buffer>((cb) => sftp.open(`/${name}`, "w", cb))
    yield* writeRange(sftp, handle, content, 0, content.length / 2)
    const transfer: InFlight = {
      name,
      finish: writeRange(sftp, handle, content, content.length / 2, content.length).pipe(
        Effect.andThen(call((cb) => sftp.close(handle, cb))),
        Effect.as(content),
        Effect.orDie
      ),
      cut: closed.pipe(Effect.as({ completed: false }))
    }
    return transfer
  })

/** Every reply until the server closes the control connection. */
const repliesUntilClosed = (client: FtpRawClient) =>
  Effect.gen(function*() {
    const codes: Array<number> = []
    while (true) {
      const next = yield* Effect.result(client.reply)
      if (next._tag === "Failure") return codes
      codes.push(next.success.code)
    }
  })

const ftpUpload = (port: number, name: string, content: Buffer) =>
  Effect.gen(function*() {
    const client = yield* ftpConnect(port)
    yield* client.login("alice", password)
    const dataPort = yield* client.pasv
    yield* client.expect(`STOR ${name}`, 150)
    const data = yield* openData(dataPort)
    yield* data.connected
    data.socket.write(content.subarray(0, content.length / 2))
    const transfer: InFlight = {
      name,
      finish: Effect.gen(function*() {
        data.socket.end(content.subarray(content.length / 2))
        yield* data.closed
        yield* client.expectReply(226)
        return content
      }).pipe(Effect.orDie),
      cut: repliesUntilClosed(client).pipe(Effect.map((codes) => ({ completed: codes.includes(226) })))
    }
    return transfer
  })

const sftpDownload = (port: number, name: string) =>
  Effect.gen(function*() {
    const { client, sftp } = yield* sftpConnect(port, "alice", { password })
    const closed = onceEvent(client, "close")
    const handle = yield* call<Buffer>((cb) => sftp.open(`/${name}`, "r", cb))
    const head = Buffer.alloc(block)
    const n = yield* call<number>((cb) => sftp.read(handle, head, 0, block, 0, (e, bytes) => cb(e, bytes)))
    const transfer: InFlight = {
      name,
      finish: readToEnd(sftp, handle, n).pipe(
        Effect.tap(() => call((cb) => sftp.close(handle, cb))),
        Effect.map((rest) => Buffer.concat([head.subarray(0, n), rest])),
        Effect.orDie
      ),
      cut: closed.pipe(Effect.as({ completed: false }))
    }
    return transfer
  })

const ftpDownload = (port: number, name: string) =>
  Effect.gen(function*() {
    const client = yield* ftpConnect(port)
    yield* client.login("alice", password)
    const dataPort = yield* client.pasv
    yield* client.expect(`RETR ${name}`, 150)
    const data = yield* openData(dataPort, { paused: true })
    yield* data.connected
    const transfer: InFlight = {
      name,
      finish: Effect.gen(function*() {
        data.socket.resume()
        const bytes = yield* data.done
        yield* client.expectReply(226)
        return bytes
      }).pipe(Effect.orDie),
      cut: Effect.gen(function*() {
        const codes = yield* repliesUntilClosed(client)
        // Read on, so the end the server sends is seen.
        data.socket.resume()
        yield* data.closed
        return { completed: codes.includes(226) }
      })
    }
    return transfer
  })

const uploadLines = (records: ReadonlyArray<Record<string, unknown>>) =>
  records.filter((r) => r["event"] === "upload_completed").map((r) => ({ path: String(r["path"]), size: Number(r["size"]) }))

describe("SIGTERM during transfers (the real command)", () => {
  it.live("20 transfers in flight (10 uploads, 10 downloads, SFTP and FTP): finishers are announced whole, the rest are cut at the deadline and never announced; exit 0", () =>
    Effect.gen(function*() {
      const { root, server, ftpPort, sftpPort } = yield* startServer("15 seconds")
      // An FTP download must be many times what loopback sockets buffer (a few MiB) to stay in flight unread.
      const ftpSource = crypto.randomBytes(24 * MiB)
      const sftpSource = crypto.randomBytes(4 * MiB)
      fs.writeFileSync(path.join(root, "down-ftp.bin"), ftpSource)
      fs.writeFileSync(path.join(root, "down-sftp.bin"), sftpSource)
      const uploaded = new Map<string, Buffer>()
      const content = (name: string) => {
        const bytes = crypto.randomBytes(2 * MiB)
        uploaded.set(name, bytes)
        return bytes
      }

      const started = yield* Effect.all([
        ...[0, 1, 2, 3, 4].map((i) => sftpUpload(sftpPort, `up-sftp-${i}.bin`, content(`up-sftp-${i}.bin`))),
        ...[0, 1, 2, 3, 4].map((i) => ftpUpload(ftpPort, `up-ftp-${i}.bin`, content(`up-ftp-${i}.bin`))),
        ...[0, 1, 2, 3, 4].map((i) => sftpDownload(sftpPort, "down-sftp.bin").pipe(Effect.map((t) => ({ ...t, name: `down-sftp-${i}` })))),
        ...[0, 1, 2, 3, 4].map((i) => ftpDownload(ftpPort, "down-ftp.bin").pipe(Effect.map((t) => ({ ...t, name: `down-ftp-${i}` }))))
      ], { concurrency: 5 })
      assert.strictEqual(started.length, 20)
      const probe = yield* ftpConnect(ftpPort)
      yield* probe.login("alice", password)
      // Indices 0-2 of each kind finish during the drain; 3 and 4 never do.
      const finishers = started.filter((t) => /-[012](\.bin)?$/.test(t.name))
      const stalled = started.filter((t) => !finishers.includes(t))
      assert.deepStrictEqual([finishers.length, stalled.length], [12, 8])

      server.child.kill("SIGTERM")
      yield* probe.expectReply(421)
      const finished = yield* Effect.all(finishers.map((t) => t.finish.pipe(Effect.map((bytes) => [t.name, bytes] as const))), { concurrency: "unbounded" })
      for (const [name, bytes] of finished) {
        const expected = name.startsWith("up-") ? uploaded.get(name)! : name.startsWith("down-ftp") ? ftpSource : sftpSource
        assert.strictEqual(sha256(bytes), sha256(expected), name)
      }
      const cut = yield* Effect.all(stalled.map((t) => t.cut.pipe(Effect.map((c) => [t.name, c.completed] as const))), { concurrency: "unbounded" })
      for (const [name, completed] of cut) assert.isFalse(completed, `${name} was cut, never completed`)

      const exit = yield* server.exit
      assert.strictEqual(exit.code, 0, exit.stderr)
      const shutdown = server.records().find((r) => r["event"] === "shutdown")
      assert.isDefined(shutdown, "the shutdown line")
      assert.strictEqual(shutdown!["forced"], stalled.length, "the stalled sessions were interrupted at the deadline")

      // Announced: exactly the uploads that finished, each once, each whole on disk.
      const announced = uploadLines(server.records())
      const finishedUploads = finishers.filter((t) => t.name.startsWith("up-")).map((t) => t.name)
      assert.sameMembers(announced.map((a) => a.path), finishedUploads.map((n) => `/${n}`))
      for (const { path: announcedPath, size } of announced) {
        const sent = uploaded.get(announcedPath.slice(1))!
        assert.strictEqual(size, sent.length, announcedPath)
        assert.strictEqual(sha256(fs.readFileSync(path.join(root, announcedPath))), sha256(sent), announcedPath)
      }
    }), 120_000)

  it.live("the last transfer finishing is what ends the drain: its upload is still announced before the process exits", () =>
    Effect.gen(function*() {
      const { root, server, ftpPort, sftpPort } = yield* startServer("60 seconds")
      const sftpContent = crypto.randomBytes(2 * MiB)
      const ftpContent = crypto.randomBytes(2 * MiB)
      const sftpUp = yield* sftpUpload(sftpPort, "last-sftp.bin", sftpContent)
      const ftpUp = yield* ftpUpload(ftpPort, "last-ftp.bin", ftpContent)
      const probe = yield* ftpConnect(ftpPort)
      yield* probe.login("alice", password)
      server.child.kill("SIGTERM")
      yield* probe.expectReply(421)
      yield* ftpUp.finish
      // The SFTP CLOSE is the last thing the server waits for: once it is answered, the drain is over.
      yield* sftpUp.finish
      const exit = yield* server.exit
      assert.strictEqual(exit.code, 0, exit.stderr)
      assert.strictEqual(server.records().find((r) => r["event"] === "shutdown")?.["forced"], 0)
      assert.sameDeepMembers(uploadLines(server.records()), [
        { path: "/last-sftp.bin", size: sftpContent.length },
        { path: "/last-ftp.bin", size: ftpContent.length }
      ])
      assert.strictEqual(sha256(fs.readFileSync(path.join(root, "last-sftp.bin"))), sha256(sftpContent))
      assert.strictEqual(sha256(fs.readFileSync(path.join(root, "last-ftp.bin"))), sha256(ftpContent))
    }))
})
