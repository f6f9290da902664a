/**
 * Storage failing under a running server, injected at the jail (FaultyJail: the
 * real openat2 jail with one method overridden): a full disk (ENOSPC), a quota
 * (EDQUOT), a failing device (EIO) in the middle of an upload, EIO on close, and
 * EACCES from the OS on open and stat. Both protocols, real clients.
 *
 * What must hold each time: the client gets a clean protocol error (SFTP: a
 * STATUS for the WRITE or CLOSE; FTP: 452/552/451 on the transfer, the control
 * connection still usable), no UploadCompleted for the failed upload, no file
 * descriptor left behind, and the server keeps serving (another session's upload
 * succeeds and is the next event).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Queue } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import type { SFTPWrapper } from "ssh2"
import { connect as ftpConnect, type FtpRawClient, ftpTestServer, openData } from "../utils/FtpRawClient.js"
import * as FaultyJail from "../utils/FaultyJail.js"
import { describeResult, run } from "../utils/Processes.js"
import { call, connect as sftpConnect, SftpStatusError } from "../utils/SftpClient.js"
import { tempDir } from "../utils/TempDir.js"
import { describeNewFds, drainEvents, openFds, sessionsGone, uploadEvents } from "./Probes.js"

const KiB = 1024
const MiB = 1024 * KiB
const SSH_FX_FAILURE = 4
const SSH_FX_PERMISSION_DENIED = 3

/** The errors under test and what each protocol must answer. */
const storageFailures = [
  { code: "ENOSPC", sftp: "No space left on device", ftp: 452 },
  { code: "EDQUOT", sftp: "Storage allocation exceeded", ftp: 552 },
  { code: "EIO", sftp: "Failure", ftp: 451 }
] as const

/** A server with FTP in clear (the tests are not about TLS) on a faulty jail. */
const faultyServer = (jail: FaultyJail.FaultyJail) => ftpTestServer({ jail: jail.layer, ftp: { requireTLS: false } })

/** Writes `data` with sequential WRITEs of `chunk` bytes; the status of each. */
const sftpWrites = (sftp: SFTPWrapper, handle: Buffer, data: Buffer, chunk: number) =>
  Effect.gen(function*() {
    const statuses: Array<SftpStatusError | "ok"> = []
    for (let offset = 0; offset < data.length; offset += chunk) {
      const length = Math.min(chunk, data.length - offset)
      const result = yield* Effect.result(call((cb) => sftp.write(handle, data, offset, length, offset, cb)))
      statuses.push(result._tag === "Success" ? "ok" : result.failure)
    }
    return statuses
  })

/** PASV, STOR, the whole of `content` on the data connection; the final reply. */
const ftpStore = (client: FtpRawClient, name: string, content: Uint8Array) =>
  Effect.gen(function*() {
    const port = yield* client.pasv
    yield* client.expect(`STOR ${name}`, 150)
    const data = yield* openData(port)
    yield* data.connected
    data.socket.end(content)
    yield* data.closed
    return yield* client.reply
  })

/** PASV, RETR; what arrived and the final reply. */
const ftpRetrieve = (client: FtpRawClient, name: string) =>
  Effect.gen(function*() {
    const port = yield* client.pasv
    const opening = yield* client.command(`RETR ${name}`)
    if (opening.code !== 150) return { reply: opening, bytes: Buffer.alloc(0) }
    const data = yield* openData(port)
    const bytes = yield* data.done
    return { reply: yield* client.reply, bytes }
  })

describe("storage failures in the middle of an upload", () => {
  for (const failure of storageFailures) {
    it.effect(`SFTP: ${failure.code} after 1 MiB: WRITE gets FAILURE "${failure.sftp}", nothing announced, the session and the server go on`, () =>
      Effect.gen(function*() {
        const jail = FaultyJail.make()
        const server = yield* faultyServer(jail)
        const events = yield* uploadEvents(server.context)
        const root = server.roots["alice"]!
        const limit = MiB + 100
        yield* jail.arm(FaultyJail.writeFailsAfter(limit, failure.code, "/full.bin"))
        const before = openFds()

        yield* Effect.scoped(Effect.gen(function*() {
          const { client, sftp } = yield* sftpConnect(server.port, "alice", { password: "alice-password" })
          const handle = yield* call<Buffer>((cb) => sftp.open("/full.bin", "w", cb))
          const statuses = yield* sftpWrites(sftp, handle, crypto.randomBytes(2 * MiB), 256 * KiB)
          // Four whole chunks fit; the fifth crosses the limit, and the disk stays full.
          assert.deepStrictEqual(statuses.slice(0, 4), ["ok", "ok", "ok", "ok"])
          for (const status of statuses.slice(4)) {
            assert.instanceOf(status, SftpStatusError)
            assert.strictEqual((status as SftpStatusError).code, SSH_FX_FAILURE)
            assert.strictEqual((status as SftpStatusError).message, failure.sftp)
          }
          // The CLOSE itself succeeds (the fd closes), and the session serves the next request.
          yield* call((cb) => sftp.close(handle, cb))
          const stat = yield* call<{ size: number }>((cb) => sftp.stat("/full.bin", cb))
          assert.strictEqual(stat.size, limit, "the short write really reached the disk")
          yield* call((cb) => sftp.writeFile("/after.txt", "still serving", cb))
          client.end()
        }))
        yield* sessionsGone(server.context)
        assert.strictEqual(openFds().size, before.size, `new fds: ${describeNewFds(before, openFds())}`)

        // Another session, after the fault: its upload is announced, and it is the first event.
        yield* jail.disarm
        yield* Effect.scoped(Effect.gen(function*() {
          const { sftp } = yield* sftpConnect(server.port, "alice", { password: "alice-password" })
          yield* call((cb) => sftp.writeFile("/other.bin", crypto.randomBytes(3 * MiB), cb))
        }))
        assert.strictEqual((yield* Queue.take(events)).path, "/after.txt")
        assert.strictEqual((yield* Queue.take(events)).path, "/other.bin")
        assert.deepStrictEqual(yield* drainEvents(events), [])
        assert.strictEqual(fs.statSync(path.join(root, "full.bin")).size, limit)
      }))

    it.effect(`FTP: ${failure.code} after 1 MiB of a STOR: ${failure.ftp}, the control connection goes on, nothing announced`, () =>
      Effect.gen(function*() {
        const jail = FaultyJail.make()
        const server = yield* faultyServer(jail)
        const events = yield* uploadEvents(server.context)
        yield* jail.arm(FaultyJail.writeFailsAfter(MiB + 100, failure.code, "/full.bin"))
        const before = openFds()

        yield* Effect.scoped(Effect.gen(function*() {
          const client = yield* ftpConnect(server.ftpPort)
          yield* client.login("alice")
          const refused = yield* ftpStore(client, "full.bin", crypto.randomBytes(8 * MiB))
          assert.strictEqual(refused.code, failure.ftp, refused.text)
          assert.notInclude(client.transcript(), server.base, "no host path reaches the client")
          assert.notInclude(client.transcript(), failure.code, "no errno name reaches the client")
          // The same control connection: the session state is intact and the next transfer works.
          yield* client.expect("NOOP", 200)
          yield* client.expect("SIZE full.bin", 213)
          const next = yield* ftpStore(client, "next.bin", Buffer.from("fine"))
          assert.strictEqual(next.code, 226, next.text)
          yield* client.expect("QUIT", 221)
          yield* client.closed
        }))
        yield* sessionsGone(server.context)
        assert.strictEqual(openFds().size, before.size, `new fds: ${describeNewFds(before, openFds())}`)

        yield* jail.disarm
        yield* Effect.scoped(Effect.gen(function*() {
          const other = yield* ftpConnect(server.ftpPort)
          yield* other.login("alice")
          const done = yield* ftpStore(other, "other.bin", crypto.randomBytes(3 * MiB))
          assert.strictEqual(done.code, 226, done.text)
        }))
        assert.strictEqual((yield* Queue.take(events)).path, "/next.bin")
        assert.strictEqual((yield* Queue.take(events)).path, "/other.bin")
        assert.deepStrictEqual(yield* drainEvents(events), [])
      }))
  }

  it.live("real clients on a full disk: OpenSSH sftp put, curl -T and lftp put (after its retries) exit non-zero; nothing announced", () =>
    Effect.gen(function*() {
      const jail = FaultyJail.make()
      const server = yield* faultyServer(jail)
      const events = yield* uploadEvents(server.context)
      const local = yield* tempDir()
      const source = path.join(local, "big.bin")
      fs.writeFileSync(source, crypto.randomBytes(4 * MiB))
      // The whole disk is full: a client that retries (lftp: REST + STOR) finds it still full.
      yield* jail.arm(FaultyJail.diskFullAfter(MiB, "ENOSPC", (p) => p.startsWith("/full")))

      const batch = path.join(local, "batch")
      fs.writeFileSync(batch, `put ${source} /full-sftp.bin\n`)
      const sftp = yield* run("sshpass", [
        "-e", "sftp", "-F", "/dev/null", "-P", String(server.port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", "BatchMode=no", "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
        "-b", batch, "alice@127.0.0.1"
      ], { env: { SSHPASS: "alice-password", SSH_AUTH_SOCK: undefined } }).pipe(Effect.orDie)
      assert.strictEqual(sftp.code, 1, describeResult(sftp))
      // OpenSSH prints its own text for the status code (fx2txt), not the server's message.
      assert.include(sftp.stderr, "write remote \"/full-sftp.bin\": Failure", describeResult(sftp))

      const curl = yield* run("curl", ["-sS", "--max-time", "60", "-T", source, `ftp://alice:alice-password@127.0.0.1:${server.ftpPort}/full-curl.bin`]).pipe(Effect.orDie)
      // 25 when curl read the 452, 55 when its send failed first on the aborted data connection.
      assert.include([25, 55], curl.code, describeResult(curl))

      const lftp = yield* run("lftp", ["-c", [
        "set ftp:ssl-allow no; set net:max-retries 2; set net:reconnect-interval-base 1; set cmd:fail-exit yes",
        `open -u alice,alice-password ftp://127.0.0.1:${server.ftpPort}`,
        `put ${source} -o /full-lftp.bin`
      ].join("; ")]).pipe(Effect.orDie)
      assert.strictEqual(lftp.code, 1, describeResult(lftp))
      assert.include(lftp.stderr, "max-retries exceeded", describeResult(lftp))

      // Each client's partial file stayed partial and none was announced; the server still takes uploads.
      yield* jail.disarm
      yield* Effect.scoped(Effect.gen(function*() {
        const { sftp: ok } = yield* sftpConnect(server.port, "alice", { password: "alice-password" })
        yield* call((cb) => ok.writeFile("/afterwards.txt", "ok", cb))
      }))
      assert.strictEqual((yield* Queue.take(events)).path, "/afterwards.txt")
      assert.deepStrictEqual(yield* drainEvents(events), [])
    }))

  it.effect("EIO on close: SFTP CLOSE gets FAILURE and FTP STOR gets 451; neither upload is announced, no fd is left", () =>
    Effect.gen(function*() {
      const jail = FaultyJail.make()
      const server = yield* faultyServer(jail)
      const events = yield* uploadEvents(server.context)
      yield* jail.arm(FaultyJail.closeFails("EIO", (p) => p.startsWith("/lost")))
      const before = openFds()
      yield* Effect.scoped(Effect.gen(function*() {
        const { client, sftp } = yield* sftpConnect(server.port, "alice", { password: "alice-password" })
        const handle = yield* call<Buffer>((cb) => sftp.open("/lost-sftp.bin", "w", cb))
        yield* call((cb) => sftp.write(handle, Buffer.from("data"), 0, 4, 0, cb))
        const closed = yield* Effect.flip(call((cb) => sftp.close(handle, cb)))
        assert.strictEqual(closed.code, SSH_FX_FAILURE)
        assert.strictEqual(closed.message, "Failure")
        // The handle is gone either way: a second CLOSE is an invalid handle, not a second close(2).
        assert.strictEqual((yield* Effect.flip(call((cb) => sftp.close(handle, cb)))).message, "Invalid handle")
        client.end()
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* ftpConnect(server.ftpPort)
        yield* client.login("alice")
        const lost = yield* ftpStore(client, "lost-ftp.bin", Buffer.from("data"))
        assert.strictEqual(lost.code, 451, lost.text)
        yield* client.expect("NOOP", 200)
        yield* client.expect("QUIT", 221)
        yield* client.closed
      }))
      yield* sessionsGone(server.context)
      assert.strictEqual(openFds().size, before.size, `new fds: ${describeNewFds(before, openFds())}`)
      assert.strictEqual(jail.firedCount(), 2)
      assert.deepStrictEqual(yield* drainEvents(events), [])
    }))
})

describe("storage failing in the middle of a download", () => {
  it.live("EIO from the third read on: FTP resets the data connection (no clean FIN) and answers 451 (curl fails, under PROT P too); SFTP READ gets FAILURE (OpenSSH get exits 1); no fd left", () =>
    Effect.gen(function*() {
      const jail = FaultyJail.make()
      const server = yield* faultyServer(jail)
      const root = server.roots["alice"]!
      const local = yield* tempDir()
      const content = crypto.randomBytes(8 * MiB)
      fs.writeFileSync(path.join(root, "failing.bin"), content)
      yield* jail.arm(FaultyJail.readsFailFrom(3, "EIO", "/failing.bin"))
      const before = openFds()

      // FTP reads 1 MiB chunks: two arrive, then the data connection is reset (not ended: in
      // stream mode a FIN would read as the end of the file) and the control says 451.
      const raw = yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* ftpConnect(server.ftpPort)
        yield* client.login("alice")
        const port = yield* client.pasv
        yield* client.expect("RETR failing.bin", 150)
        const data = yield* openData(port)
        const endings: Array<string> = []
        data.raw.on("end", () => endings.push("FIN"))
        data.raw.on("error", (error: NodeJS.ErrnoException) => endings.push(error.code ?? "error"))
        const bytes = yield* data.done
        const reply = yield* client.reply
        yield* client.expect("NOOP", 200)
        yield* client.expect("QUIT", 221)
        yield* client.closed
        return { bytes, reply, endings }
      }))
      assert.deepStrictEqual([raw.reply.code, raw.reply.text], [451, "451 Requested action aborted: local error in processing"])
      assert.deepStrictEqual(raw.endings, ["ECONNRESET"])
      assert.isAtMost(raw.bytes.length, 2 * MiB)
      assert.isTrue(raw.bytes.equals(content.subarray(0, raw.bytes.length)))

      yield* Effect.scoped(Effect.gen(function*() {
        const { client, sftp } = yield* sftpConnect(server.port, "alice", { password: "alice-password" })
        const handle = yield* call<Buffer>((cb) => sftp.open("/failing.bin", "r", cb))
        const buffer = Buffer.alloc(64 * KiB)
        for (let i = 0; i < 2; i++) yield* call<number>((cb) => sftp.read(handle, buffer, 0, buffer.length, i * buffer.length, (e, n) => cb(e, n)))
        const failed = yield* Effect.flip(call<number>((cb) => sftp.read(handle, buffer, 0, buffer.length, 0, (e, n) => cb(e, n))))
        assert.deepStrictEqual([failed.code, failed.message], [SSH_FX_FAILURE, "Failure"])
        yield* call((cb) => sftp.close(handle, cb))
        client.end()
      }))

      const curl = yield* run("curl", ["-sS", "--max-time", "60", "-o", path.join(local, "curl.bin"), `ftp://alice:alice-password@127.0.0.1:${server.ftpPort}/failing.bin`]).pipe(Effect.orDie)
      // 56: the reset reached curl as a receive failure (18 if it saw the end of the data first and the 451).
      assert.include([56, 18], curl.code, describeResult(curl))
      // Under PROT P a download runs TLS straight on the TCP socket (no transport tap):
      // the cut must still reach the client as one, the stream ending without close_notify.
      const tlsCurl = yield* run("curl", [
        "-sS", "--max-time", "60", "--ssl-reqd", "--cacert", server.certFile, "-o", path.join(local, "curl-tls.bin"),
        `ftp://alice:alice-password@127.0.0.1:${server.ftpPort}/failing.bin`
      ]).pipe(Effect.orDie)
      assert.notStrictEqual(tlsCurl.code, 0, describeResult(tlsCurl))
      assert.isBelow(fs.statSync(path.join(local, "curl-tls.bin"), { throwIfNoEntry: false })?.size ?? 0, content.length)
      const batch = path.join(local, "batch")
      fs.writeFileSync(batch, `get /failing.bin ${path.join(local, "openssh.bin")}\n`)
      const get = yield* run("sshpass", [
        "-e", "sftp", "-F", "/dev/null", "-P", String(server.port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", "BatchMode=no", "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
        "-b", batch, "alice@127.0.0.1"
      ], { env: { SSHPASS: "alice-password", SSH_AUTH_SOCK: undefined } }).pipe(Effect.orDie)
      assert.strictEqual(get.code, 1, describeResult(get))
      assert.include(get.stderr, "read remote \"/failing.bin\" : Failure", describeResult(get))

      yield* sessionsGone(server.context)
      assert.strictEqual(openFds().size, before.size, `new fds: ${describeNewFds(before, openFds())}`)
    }))
})

describe("the errno table (JailNative, the only one)", () => {
  it("maps the storage errnos to their reasons; the rest is Io with the code kept for logs", () => {
    const reasonOf = (code: string) => FaultyJail.errnoError("write", "/f", code).reason
    assert.deepStrictEqual(reasonOf("ENOSPC"), { _tag: "NoSpace" })
    assert.deepStrictEqual(reasonOf("EDQUOT"), { _tag: "QuotaExceeded" })
    assert.deepStrictEqual(reasonOf("EFBIG"), { _tag: "QuotaExceeded" })
    assert.deepStrictEqual(reasonOf("EACCES"), { _tag: "PermissionDenied" })
    assert.deepStrictEqual(reasonOf("EIO"), { _tag: "Io", code: "EIO" })
    assert.deepStrictEqual(reasonOf("ESTALE"), { _tag: "Io", code: "ESTALE" })
  })
})

describe("permission denied by the OS (not by the access check)", () => {
  it.effect("EACCES on open: SFTP PERMISSION_DENIED, FTP 550, for reads and writes; no file created, no fd left, the session goes on", () =>
    Effect.gen(function*() {
      const jail = FaultyJail.make()
      const server = yield* faultyServer(jail)
      const events = yield* uploadEvents(server.context)
      const root = server.roots["alice"]!
      fs.writeFileSync(path.join(root, "locked.txt"), "secret")
      yield* jail.arm(FaultyJail.openFails("EACCES", (p) => p.startsWith("/locked")))
      const before = openFds()

      yield* Effect.scoped(Effect.gen(function*() {
        const { client, sftp } = yield* sftpConnect(server.port, "alice", { password: "alice-password" })
        for (const [file, flags] of [["/locked.txt", "r"], ["/locked-new.txt", "w"]] as const) {
          const refused = yield* Effect.flip(call<Buffer>((cb) => sftp.open(file, flags, cb)))
          assert.strictEqual(refused.code, SSH_FX_PERMISSION_DENIED, file)
          assert.strictEqual(refused.message, "Permission denied", file)
        }
        assert.strictEqual((yield* call<Buffer>((cb) => sftp.readFile("/locked.txt", cb)).pipe(Effect.flip)).code, SSH_FX_PERMISSION_DENIED)
        yield* call((cb) => sftp.writeFile("/free.txt", "free", cb))
        client.end()
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* ftpConnect(server.ftpPort)
        yield* client.login("alice")
        const retrieved = yield* ftpRetrieve(client, "locked.txt")
        assert.deepStrictEqual([retrieved.reply.code, retrieved.reply.text], [550, "550 Permission denied"])
        // The open is refused before 150: the data connection is never used, and the next transfer works.
        yield* client.pasv
        const refused = yield* client.command("STOR locked-new.txt")
        assert.deepStrictEqual([refused.code, refused.text], [550, "550 Permission denied"])
        const fine = yield* ftpStore(client, "free-ftp.txt", Buffer.from("free"))
        assert.strictEqual(fine.code, 226, fine.text)
        assert.notInclude(client.transcript(), server.base)
        yield* client.expect("QUIT", 221)
        yield* client.closed
      }))
      yield* sessionsGone(server.context)
      assert.strictEqual(openFds().size, before.size, `new fds: ${describeNewFds(before, openFds())}`)
      assert.isFalse(fs.existsSync(path.join(root, "locked-new.txt")))
      assert.deepStrictEqual(yield* drainEvents(events), ["/free.txt", "/free-ftp.txt"])
    }))

  it.effect("EACCES on stat: SFTP STAT gets PERMISSION_DENIED, FTP SIZE/MDTM/MLST/CWD/LIST get 550; nothing leaks", () =>
    Effect.gen(function*() {
      const jail = FaultyJail.make()
      const server = yield* faultyServer(jail)
      const root = server.roots["alice"]!
      fs.mkdirSync(path.join(root, "hidden"))
      fs.writeFileSync(path.join(root, "hidden.txt"), "x")
      yield* jail.arm(FaultyJail.statFails("EACCES", (p) => p.startsWith("/hidden")))
      const before = openFds()

      yield* Effect.scoped(Effect.gen(function*() {
        const { client, sftp } = yield* sftpConnect(server.port, "alice", { password: "alice-password" })
        const refused = yield* Effect.flip(call<unknown>((cb) => sftp.stat("/hidden.txt", cb)))
        assert.deepStrictEqual([refused.code, refused.message], [SSH_FX_PERMISSION_DENIED, "Permission denied"])
        // lstat is another call of the jail, and still answers: the fault is on stat only.
        yield* call<unknown>((cb) => sftp.lstat("/hidden.txt", cb))
        client.end()
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* ftpConnect(server.ftpPort)
        yield* client.login("alice")
        for (const command of ["SIZE hidden.txt", "MDTM hidden.txt", "MLST hidden.txt", "CWD hidden"]) {
          const reply = yield* client.command(command)
          assert.deepStrictEqual([reply.code, reply.text], [550, "550 Permission denied"], command)
        }
        yield* client.pasv
        const listed = yield* client.command("LIST hidden")
        assert.deepStrictEqual([listed.code, listed.text], [550, "550 Permission denied"])
        yield* client.expect("PWD", 257)
        assert.notInclude(client.transcript(), server.base)
        yield* client.expect("QUIT", 221)
        yield* client.closed
      }))
      yield* sessionsGone(server.context)
      assert.strictEqual(openFds().size, before.size, `new fds: ${describeNewFds(before, openFds())}`)
      assert.strictEqual(jail.firedCount(), 6)
    }))
})
