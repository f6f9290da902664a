/**
 * Every SFTP v3 request and every announced extension, driven with ssh2's
 * client against a real server, with their error paths.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Stream } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import type ssh2 from "ssh2"
import { Events } from "../../src/services/Events.js"
import { Sessions } from "../../src/services/Sessions.js"
import { call, connect, openHandle, packet, rawChannel } from "../utils/SftpClient.js"
import * as FaultyJail from "../utils/FaultyJail.js"
import { testServer } from "../utils/TestServer.js"

const FX = { Ok: 0, Eof: 1, NoSuchFile: 2, PermissionDenied: 3, Failure: 4, BadMessage: 5, OpUnsupported: 8 } as const

const codeOf = <A, E extends { readonly code: number }>(effect: Effect.Effect<A, E>) =>
  effect.pipe(Effect.flip, Effect.map((e) => e.code))

const readFile = (sftp: ssh2.SFTPWrapper, p: string) =>
  call<Buffer>((cb) => sftp.readFile(p, cb))

const writeFile = (sftp: ssh2.SFTPWrapper, p: string, data: Buffer | string) =>
  call((cb) => sftp.writeFile(p, data, cb))

describe("SFTP requests", () => {
  it.effect("files: open/write/read/close, stat, setstat, rename, remove", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const { sftp } = yield* connect(server.port, "alice", { password: "alice-password" })
      const root = server.roots["alice"]!
      const data = crypto.randomBytes(3 * 1024 * 1024 + 17)
      yield* writeFile(sftp, "/big.bin", data)
      assert.isTrue(fs.readFileSync(path.join(root, "big.bin")).equals(data))
      const back = yield* readFile(sftp, "big.bin")
      assert.isTrue(back.equals(data))

      const stats = yield* call<ssh2.Stats>((cb) => sftp.stat("/big.bin", cb))
      assert.strictEqual(stats.size, data.length)
      assert.isTrue(stats.isFile())
      assert.strictEqual(stats.mode & 0o777, 0o600)

      yield* call((cb) => sftp.chmod("/big.bin", 0o4750, cb))
      assert.strictEqual(fs.statSync(path.join(root, "big.bin")).mode & 0o7777, 0o750, "setuid is stripped")
      assert.strictEqual(yield* codeOf(call((cb) => sftp.utimes("/big.bin", 1, 1, cb))), FX.PermissionDenied, "times need allowChtimes")
      assert.strictEqual(yield* codeOf(call((cb) => sftp.chown("/big.bin", 0, 0, cb))), FX.PermissionDenied, "ownership needs allowChown")

      yield* writeFile(sftp, "/other.txt", "other")
      assert.strictEqual(yield* codeOf(call((cb) => sftp.rename("/big.bin", "/other.txt", cb))), FX.Failure, "RENAME never clobbers")
      yield* call((cb) => sftp.ext_openssh_rename("/big.bin", "/other.txt", cb))
      assert.strictEqual(fs.statSync(path.join(root, "other.txt")).size, data.length)
      yield* call((cb) => sftp.rename("/other.txt", "/renamed.bin", cb))
      yield* call((cb) => sftp.unlink("/renamed.bin", cb))
      assert.isFalse(fs.existsSync(path.join(root, "renamed.bin")))
      assert.strictEqual(yield* codeOf(call((cb) => sftp.unlink("/renamed.bin", cb))), FX.NoSuchFile)
      assert.strictEqual(yield* codeOf(call<ssh2.Stats>((cb) => sftp.stat("/nope", cb))), FX.NoSuchFile)
    }))

  it.effect("open flags: EXCL, TRUNC, APPEND, and reads past the end", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const { sftp } = yield* connect(server.port, "alice", { password: "alice-password" })
      const root = server.roots["alice"]!
      fs.writeFileSync(path.join(root, "f.txt"), "hello")
      assert.strictEqual(yield* codeOf(call<Buffer>((cb) => sftp.open("/f.txt", "wx", cb))), FX.Failure, "EXCL on an existing file")
      const appender = yield* call<Buffer>((cb) => sftp.open("/f.txt", "a", cb))
      yield* call((cb) => sftp.write(appender, Buffer.from(" world"), 0, 6, 0, cb))
      yield* call((cb) => sftp.close(appender, cb))
      assert.strictEqual(fs.readFileSync(path.join(root, "f.txt"), "utf8"), "hello world")
      const reader = yield* call<Buffer>((cb) => sftp.open("/f.txt", "r", cb))
      const buffer = Buffer.alloc(100)
      // ssh2's client turns an EOF status into a zero-byte read.
      const atEnd = yield* call<number>((cb) => sftp.read(reader, buffer, 0, 100, 1000, (err, n) => cb(err, n)))
      assert.strictEqual(atEnd, 0)
      const fstat = yield* call<ssh2.Stats>((cb) => sftp.fstat(reader, cb))
      assert.strictEqual(fstat.size, 11)
      yield* call((cb) => sftp.close(reader, cb))
      assert.strictEqual(yield* codeOf(call((cb) => sftp.close(reader, cb))), FX.Failure, "a closed handle is invalid")
      const truncating = yield* call<Buffer>((cb) => sftp.open("/f.txt", "w", cb))
      yield* call((cb) => sftp.close(truncating, cb))
      assert.strictEqual(fs.statSync(path.join(root, "f.txt")).size, 0)
      assert.strictEqual(yield* codeOf(call<Buffer>((cb) => sftp.open("/missing/f", "w", cb))), FX.NoSuchFile)
    }))

  it.effect("directories: mkdir, readdir in batches, rmdir, realpath", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const { sftp } = yield* connect(server.port, "alice", { password: "alice-password" })
      const root = server.roots["alice"]!
      yield* call((cb) => sftp.mkdir("/d", cb))
      for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(root, "d", `file-${i}`), `${i}`)
      const list = yield* call<Array<ssh2.FileEntry>>((cb) => sftp.readdir("/d", cb))
      assert.strictEqual(list.length, 300)
      const sample = list.find((e) => e.filename === "file-7")!
      assert.match(sample.longname, /^-rw-r--r-- +1 .* file-7$/)
      assert.strictEqual(yield* codeOf(call((cb) => sftp.rmdir("/d", cb))), FX.Failure, "not empty")
      assert.strictEqual(yield* codeOf(call((cb) => sftp.mkdir("/d", cb))), FX.Failure, "exists")
      assert.strictEqual(yield* call<string>((cb) => sftp.realpath(".", cb)), "/")
      assert.strictEqual(yield* call<string>((cb) => sftp.realpath("d/../../../d/./x", cb)), "/d/x")
      fs.rmSync(path.join(root, "d"), { recursive: true })
      fs.mkdirSync(path.join(root, "d"))
      yield* call((cb) => sftp.rmdir("/d", cb))
      assert.isFalse(fs.existsSync(path.join(root, "d")))
    }))

  it.effect("extensions: statvfs, fstatvfs, hardlink, fsync, lsetstat, copy-data, home-directory", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const { sftp } = yield* connect(server.port, "alice", { password: "alice-password" })
      const root = server.roots["alice"]!
      fs.writeFileSync(path.join(root, "src.txt"), "copy me please")
      const vfs = yield* call<{ f_bsize: number }>((cb) => sftp.ext_openssh_statvfs("/", cb))
      assert.isAbove(vfs.f_bsize, 0)
      const handle = yield* call<Buffer>((cb) => sftp.open("/src.txt", "r+", cb))
      const fvfs = yield* call<{ f_bsize: number }>((cb) => sftp.ext_openssh_fstatvfs(handle, cb))
      assert.strictEqual(fvfs.f_bsize, vfs.f_bsize)
      yield* call((cb) => sftp.ext_openssh_fsync(handle, cb))
      const target = yield* call<Buffer>((cb) => sftp.open("/copy.txt", "w", cb))
      yield* call((cb) => sftp.ext_copy_data(handle, 5, 0, target, 0, cb))
      yield* call((cb) => sftp.close(target, cb))
      yield* call((cb) => sftp.close(handle, cb))
      assert.strictEqual(fs.readFileSync(path.join(root, "copy.txt"), "utf8"), "me please")
      yield* call((cb) => sftp.ext_openssh_hardlink("/src.txt", "/hard.txt", cb))
      assert.strictEqual(fs.statSync(path.join(root, "hard.txt")).nlink, 2)
      yield* call((cb) => sftp.ext_openssh_lsetstat("/hard.txt", { mode: 0o640 }, cb))
      assert.strictEqual(fs.statSync(path.join(root, "src.txt")).mode & 0o777, 0o640)
      // ssh2 implements home-directory but its typings omit it.
      const homeDir = (sftp as ssh2.SFTPWrapper & { ext_home_dir(user: string, cb: (e: Error | undefined, p: string) => void): void }).ext_home_dir.bind(sftp)
      assert.strictEqual(yield* call<string>((cb) => homeDir("alice", cb)), "/")
      assert.strictEqual(yield* codeOf(call<string>((cb) => homeDir("root", cb))), FX.NoSuchFile)
    }))

  it.effect("links are never created or revealed; planted links are listed, not followed", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const { sftp } = yield* connect(server.port, "alice", { password: "alice-password" })
      const root = server.roots["alice"]!
      fs.writeFileSync(path.join(server.base, "secret"), "SECRET")
      fs.symlinkSync(path.join(server.base, "secret"), path.join(root, "planted"))
      assert.strictEqual(yield* codeOf(call((cb) => sftp.symlink("/etc/passwd", "/mine", cb))), FX.OpUnsupported)
      assert.isFalse(fs.existsSync(path.join(root, "mine")))
      assert.strictEqual(yield* codeOf(call<string>((cb) => sftp.readlink("/planted", cb))), FX.OpUnsupported)
      assert.strictEqual(yield* codeOf(readFile(sftp, "/planted")), FX.PermissionDenied)
      assert.strictEqual(yield* codeOf(call<ssh2.Stats>((cb) => sftp.stat("/planted", cb))), FX.PermissionDenied)
      const lstat = yield* call<ssh2.Stats>((cb) => sftp.lstat("/planted", cb))
      assert.isTrue(lstat.isSymbolicLink())
      const listed = yield* call<Array<ssh2.FileEntry>>((cb) => sftp.readdir("/", cb))
      assert.deepStrictEqual(listed.map((e) => e.filename), ["planted"])
      assert.match(listed[0]!.longname, /^l/)
      for (const p of ["/../secret", "../../secret", "/..//../secret"]) {
        assert.strictEqual(yield* codeOf(readFile(sftp, p)), FX.NoSuchFile, p)
      }
    }))

  it.effect("read-only and write-only users; errors carry no host path", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      fs.writeFileSync(path.join(server.roots["reader"]!, "r.txt"), "readable")
      fs.writeFileSync(path.join(server.roots["writer"]!, "w.txt"), "hidden")
      const reader = (yield* connect(server.port, "reader", { password: "reader-password" })).sftp
      assert.strictEqual((yield* readFile(reader, "/r.txt")).toString(), "readable")
      for (const denied of [
        writeFile(reader, "/new", "x"),
        call((cb) => reader.mkdir("/d", cb)),
        call((cb) => reader.unlink("/r.txt", cb)),
        call((cb) => reader.rename("/r.txt", "/s.txt", cb)),
        call((cb) => reader.chmod("/r.txt", 0o777, cb)),
        call<Buffer>((cb) => reader.open("/r.txt", "r+", cb))
      ]) {
        const error = yield* Effect.flip(denied)
        assert.strictEqual(error.code, FX.PermissionDenied)
        assert.notInclude(error.message, server.base)
      }
      const writer = (yield* connect(server.port, "writer", { password: "writer-password" })).sftp
      yield* writeFile(writer, "/upload.bin", "data")
      assert.strictEqual(yield* codeOf(readFile(writer, "/w.txt")), FX.PermissionDenied)
      assert.strictEqual(yield* codeOf(call<Array<ssh2.FileEntry>>((cb) => writer.readdir("/", cb))), FX.PermissionDenied)
      // Write-only users may still stat (upload clients check before writing).
      assert.strictEqual((yield* call<ssh2.Stats>((cb) => writer.stat("/upload.bin", cb))).size, 4)
    }))

  it.effect("uploads are announced on a clean close; temp names only once renamed", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const uploads = yield* Effect.provide(Events.use((e) => e.subscribeUploads), server.context)
      const { sftp } = yield* connect(server.port, "alice", { password: "alice-password" })
      yield* writeFile(sftp, "/a.csv", "1,2,3")
      yield* writeFile(sftp, "/b.csv.tmp", "4,5")
      yield* call((cb) => sftp.rename("/b.csv.tmp", "/b.csv", cb))
      yield* call((cb) => sftp.mkdir("/dir.tmp", cb))
      yield* call((cb) => sftp.rename("/dir.tmp", "/dir", cb))
      const got = yield* uploads.pipe(Stream.take(2), Stream.runCollect)
      assert.deepStrictEqual(got.map((e) => [e.path, e.size, e.username, e.protocol, e.clientIp]), [
        ["/a.csv", 5, "alice", "sftp", "127.0.0.1"],
        ["/b.csv", 3, "alice", "sftp", "127.0.0.1"]
      ])
      assert.strictEqual(got[0]!.fullPath, path.join(server.roots["alice"]!, "a.csv"))
    }))

  it.effect("raw protocol: VERSION lists the extensions; limits, expand-path, unknown extensions and bad messages", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const raw = yield* rawChannel(server.port, "alice", { password: "alice-password" })
      yield* raw.send(packet(1, 3))
      const version = yield* raw.next
      assert.strictEqual(version[0], 2)
      assert.strictEqual(version.readUInt32BE(1), 3)
      const names: Array<string> = []
      for (let at = 5; at < version.length;) {
        const n = version.readUInt32BE(at)
        names.push(version.subarray(at + 4, at + 4 + n).toString())
        at += 8 + n + version.readUInt32BE(at + 4 + n)
      }
      assert.deepStrictEqual(names, [
        "posix-rename@openssh.com", "statvfs@openssh.com", "fstatvfs@openssh.com", "hardlink@openssh.com", "fsync@openssh.com",
        "lsetstat@openssh.com", "limits@openssh.com", "expand-path@openssh.com", "copy-data", "home-directory"
      ])

      yield* raw.send(packet(200, 7, "limits@openssh.com"))
      const limits = yield* raw.next
      assert.strictEqual(limits[0], 201)
      assert.strictEqual(limits.readUInt32BE(1), 7)
      assert.deepStrictEqual([0, 1, 2, 3].map((i) => Number(limits.readBigUInt64BE(5 + i * 8))), [262144, 261120, 261120, 256])

      yield* raw.send(packet(200, 8, "expand-path@openssh.com", "~/a/../b"))
      const expanded = yield* raw.next
      assert.strictEqual(expanded[0], 104)
      assert.strictEqual(expanded.subarray(13, 13 + expanded.readUInt32BE(9)).toString(), "/b")

      const status = (body: Buffer) => [body[0], body.readUInt32BE(1), body.readUInt32BE(5)]
      yield* raw.send(packet(200, 9, "no-such-extension@example.com", "payload"))
      assert.deepStrictEqual(status(yield* raw.next), [101, 9, FX.OpUnsupported])
      yield* raw.send(packet(99, 10))
      assert.deepStrictEqual(status(yield* raw.next), [101, 10, FX.OpUnsupported], "unknown packet type")
      // A path that claims more bytes than the packet has.
      const lying = packet(17, 11, "short")
      lying.writeUInt32BE(1000, 9)
      yield* raw.send(lying)
      assert.deepStrictEqual(status(yield* raw.next), [101, 11, FX.BadMessage])
      // Invalid UTF-8 in a path.
      yield* raw.send(packet(17, 12, Buffer.from([0x2f, 0xff, 0xfe])))
      assert.deepStrictEqual(status(yield* raw.next), [101, 12, FX.BadMessage])
      // A handle the server never issued.
      yield* raw.send(packet(5, 13, Buffer.from("forged-handle"), 0, 0, 100))
      assert.deepStrictEqual(status(yield* raw.next), [101, 13, FX.Failure])
      // The session is still usable after all of that.
      yield* raw.send(packet(16, 14, "."))
      assert.strictEqual((yield* raw.next)[0], 104)
    }))

  it.effect("raw protocol: a length over the packet limit, or no INIT first, closes the channel", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const oversized = yield* rawChannel(server.port, "alice", { password: "alice-password" })
      yield* oversized.send(packet(1, 3))
      yield* oversized.next
      const head = Buffer.alloc(5)
      head.writeUInt32BE(0x7fffffff)
      head[4] = 6
      yield* oversized.send(head)
      yield* oversized.closed
      const noInit = yield* rawChannel(server.port, "alice", { password: "alice-password" })
      yield* noInit.send(packet(16, 1, "."))
      yield* noInit.closed
      // Other sessions are unaffected.
      const { sftp } = yield* connect(server.port, "alice", { password: "alice-password" })
      assert.strictEqual(yield* call<string>((cb) => sftp.realpath(".", cb)), "/")
    }))

  // Found by test/fuzz: a session that ended between the open of a file and its
  // entry in the handle table left the fd open in no table, one per OPEN of a
  // client that opens a channel, sends OPEN and leaves (an fd exhaustion).
  it.effect("an OPEN in flight when the client leaves: its file is still closed with the session", () =>
    Effect.gen(function*() {
      const faulty = FaultyJail.make()
      const server = yield* testServer({ jail: faulty.layer })
      const held = path.join(server.roots["alice"]!, "held")
      const release = Deferred.makeUnsafe<void>()
      yield* faulty.arm({
        openFile: (p, _mode, real, tools) =>
          p === "/held" ? real.pipe(Effect.tap(() => tools.fired), Effect.tap(() => Deferred.await(release))) : real
      })
      yield* Effect.scoped(Effect.gen(function*() {
        const raw = yield* rawChannel(server.port, "alice", { password: "alice-password" })
        yield* raw.send(packet(1, 3))
        yield* raw.next
        yield* raw.send(packet(3, 1, "held", 0x1a, 0))
        // The file is open in the server; the client now disconnects.
        yield* faulty.awaitFired(1)
      }))
      // A round trip on another connection: by now the server has seen the first one go.
      yield* Effect.scoped(Effect.gen(function*() {
        const other = yield* rawChannel(server.port, "alice", { password: "alice-password" })
        yield* other.send(packet(1, 3))
        yield* other.next
      }))
      yield* Deferred.succeed(release, undefined)
      yield* Context.get(server.context, Sessions).awaitEmpty
      const leaked = fs.readdirSync("/proc/self/fd").filter((fd) => {
        try {
          return fs.readlinkSync(`/proc/self/fd/${fd}`) === held
        } catch {
          return false
        }
      })
      assert.deepStrictEqual(leaked, [], "the opened file's fd outlived its session")
    }))

  // Found by test/fuzz: CLOSE took the handle out of the table before closing the
  // file; a session ending in between left the fd in no table, never closed.
  it.effect("a CLOSE in flight when the client leaves: the file is still closed", () =>
    Effect.gen(function*() {
      const faulty = FaultyJail.make()
      const server = yield* testServer({ jail: faulty.layer })
      const file = path.join(server.roots["alice"]!, "closing")
      const release = Deferred.makeUnsafe<void>()
      yield* Effect.scoped(Effect.gen(function*() {
        const raw = yield* rawChannel(server.port, "alice", { password: "alice-password" })
        yield* raw.send(packet(1, 3))
        yield* raw.next
        const handle = yield* openHandle(raw, 1, "closing", 0x1a)
        yield* faulty.arm({
          close: (f, real, tools) => (f.path === "/closing" ? tools.fired.pipe(Effect.andThen(Deferred.await(release)), Effect.andThen(real)) : real)
        })
        yield* raw.send(packet(4, 2, handle))
        // The CLOSE has taken the handle and is closing the file; the client now disconnects.
        yield* faulty.awaitFired(1)
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const other = yield* rawChannel(server.port, "alice", { password: "alice-password" })
        yield* other.send(packet(1, 3))
        yield* other.next
      }))
      yield* Deferred.succeed(release, undefined)
      yield* Context.get(server.context, Sessions).awaitEmpty
      const leaked = fs.readdirSync("/proc/self/fd").filter((fd) => {
        try {
          return fs.readlinkSync(`/proc/self/fd/${fd}`) === file
        } catch {
          return false
        }
      })
      assert.deepStrictEqual(leaked, [], "the file's fd outlived its session")
    }))
})
