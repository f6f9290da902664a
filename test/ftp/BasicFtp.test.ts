/**
 * The npm client basic-ftp against a real server over explicit FTPS (AUTH TLS,
 * PROT P, data connections resuming the control connection's TLS session, as
 * the default server requires): 10 MiB uploads and downloads with sha256,
 * listings, directories, renames, removal, SIZE and MDTM, and the upload events:
 * exactly one UploadCompleted per completed upload, the final name for a ".tmp"
 * upload once renamed, and nothing for an upload that broke off.
 */
import { assert, describe, it } from "@effect/vitest"
import { Client, FileType, FTPError } from "basic-ftp"
import { Context, Effect, Stream } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { Readable, Writable } from "node:stream"
import { type AuthEvent, Events, type UploadCompleted } from "../../src/services/Events.js"
import { tempDir } from "../utils/TempDir.js"
import { testServer } from "../utils/TestServer.js"

const MiB = 1024 * 1024

const sha256 = (bytes: Buffer) => crypto.createHash("sha256").update(bytes).digest("hex")
const sha256File = (file: string) => sha256(fs.readFileSync(file))

type TestServer = Effect.Success<ReturnType<typeof testServer>>

/** A basic-ftp call as an Effect; its rejection is the failure. */
const ftp = <A>(f: () => Promise<A>): Effect.Effect<A, Error> =>
  Effect.tryPromise({ try: f, catch: (error) => (error instanceof Error ? error : new Error(String(error))) })

/** A client logged in over explicit FTPS, closed with the scope. 30 s timeout on every socket. */
const connect = (server: TestServer, user = "alice") =>
  Effect.acquireRelease(
    Effect.sync(() => new Client(30_000)),
    (client) => Effect.sync(() => client.close())
  ).pipe(
    Effect.tap((client) =>
      ftp(() =>
        client.access({
          host: "127.0.0.1",
          port: server.ftpPort,
          user,
          password: `${user}-password`,
          secure: true,
          secureOptions: { ca: fs.readFileSync(server.certFile) }
        })
      )
    ),
    Effect.orDie
  )

/** The FTP reply code of a failed call. */
const codeOf = <A>(effect: Effect.Effect<A, Error>) =>
  Effect.flip(effect).pipe(Effect.map((error) => (error instanceof FTPError ? error.code : error.message)))

/** Subscriptions to the server's upload and auth events, made now. */
const subscribe = (server: TestServer) =>
  Effect.gen(function*() {
    const events = Context.get(server.context, Events)
    const uploads = yield* events.subscribeUploads
    const auth = yield* events.subscribeAuth
    return { uploads, auth }
  })

/** The next `n` events of a subscription. */
const next = <A>(stream: Stream.Stream<A>, n: number) => stream.pipe(Stream.take(n), Stream.runCollect)

/**
 * Waits until `n` FTP sessions of `username` have ended on the server. A session's
 * transfer is over (finished or interrupted) before its Logout is published, so
 * any upload event it could publish has been published by then.
 */
const logouts = (auth: Stream.Stream<AuthEvent>, username: string, n: number) =>
  auth.pipe(
    Stream.filter((event) => event._tag === "Logout" && event.username === username && event.protocol === "ftp"),
    Stream.take(n),
    Stream.runDrain
  )

/** A readable of `total` random bytes in 64 KiB chunks; `onChunk` sees the running count before each chunk. */
const generated = (total: number, onChunk: (sent: number, stream: Readable) => void = () => {}) => {
  let sent = 0
  const stream: Readable = new Readable({
    read() {
      onChunk(sent, stream)
      if (stream.destroyed) return
      if (sent >= total) return void this.push(null)
      const chunk = crypto.randomBytes(Math.min(64 * 1024, total - sent))
      sent += chunk.length
      this.push(chunk)
    }
  })
  return stream
}

const eventFields = (e: UploadCompleted) => [e.protocol, e.username, e.path, e.size, e.fullPath, e.clientIp] as const

describe("basic-ftp over explicit FTPS", () => {
  it.effect("uploadFrom and downloadTo 10 MiB, sha256 both ways; REST; appendFrom", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-basicftp-")
      const server = yield* testServer({ ftp: {} })
      const root = server.roots["alice"]!
      const client = yield* connect(server)
      const data = crypto.randomBytes(10 * MiB + 3)
      const digest = sha256(data)
      fs.writeFileSync(path.join(local, "up.bin"), data)

      const up = yield* ftp(() => client.uploadFrom(path.join(local, "up.bin"), "big.bin"))
      assert.strictEqual(up.code, 226)
      assert.strictEqual(sha256File(path.join(root, "big.bin")), digest, "upload from a file")
      const down = yield* ftp(() => client.downloadTo(path.join(local, "down.bin"), "big.bin"))
      assert.strictEqual(down.code, 226)
      assert.strictEqual(sha256File(path.join(local, "down.bin")), digest, "download to a file")

      // Streams both ways.
      yield* ftp(() => client.uploadFrom(Readable.from([data.subarray(0, 5 * MiB), data.subarray(5 * MiB)]), "streamed.bin"))
      assert.strictEqual(sha256File(path.join(root, "streamed.bin")), digest, "upload from a stream")
      const chunks: Array<Buffer> = []
      const sink = new Writable({
        write(chunk: Buffer, _encoding, callback) {
          chunks.push(chunk)
          callback()
        }
      })
      yield* ftp(() => client.downloadTo(sink, "streamed.bin"))
      assert.strictEqual(sha256(Buffer.concat(chunks)), digest, "download to a stream")

      // REST: downloadTo with startAt appends the rest to a partial local file.
      const cut = 3 * MiB + 17
      fs.writeFileSync(path.join(local, "partial.bin"), data.subarray(0, cut))
      yield* ftp(() => client.downloadTo(path.join(local, "partial.bin"), "big.bin", cut))
      assert.strictEqual(sha256File(path.join(local, "partial.bin")), digest, "resumed download")

      // APPE: appendFrom adds to the end of the remote file.
      fs.writeFileSync(path.join(root, "log.txt"), "one\n")
      yield* ftp(() => client.appendFrom(Readable.from([Buffer.from("two\n")]), "log.txt"))
      assert.strictEqual(fs.readFileSync(path.join(root, "log.txt"), "utf8"), "one\ntwo\n")
    }))

  it.effect("list, ensureDir, cd/pwd, rename, remove, removeDir, size, lastMod and their errors", () =>
    Effect.gen(function*() {
      const server = yield* testServer({ ftp: {} })
      const root = server.roots["alice"]!
      const client = yield* connect(server)
      fs.writeFileSync(path.join(root, "a.txt"), "alpha\n")
      const mtime = new Date("2024-02-29T12:34:56Z")
      fs.utimesSync(path.join(root, "a.txt"), mtime, mtime)

      yield* ftp(() => client.ensureDir("/deep/er/est"))
      assert.isTrue(fs.statSync(path.join(root, "deep", "er", "est")).isDirectory())
      assert.strictEqual(yield* ftp(() => client.pwd()), "/deep/er/est", "ensureDir enters the directory")
      yield* ftp(() => client.uploadFrom(Readable.from([Buffer.from("inside\n")]), "inside.txt"))
      assert.strictEqual(fs.readFileSync(path.join(root, "deep", "er", "est", "inside.txt"), "utf8"), "inside\n")
      // ensureDir of an existing path is fine.
      yield* ftp(() => client.ensureDir("/deep/er"))
      yield* ftp(() => client.cd("/"))
      assert.strictEqual(yield* ftp(() => client.pwd()), "/")

      const listing = yield* ftp(() => client.list())
      const byName = new Map(listing.map((info) => [info.name, info]))
      assert.deepStrictEqual([...byName.keys()].sort(), ["a.txt", "deep"])
      assert.strictEqual(byName.get("a.txt")!.type, FileType.File)
      assert.strictEqual(byName.get("a.txt")!.size, 6)
      assert.strictEqual(byName.get("a.txt")!.modifiedAt?.toISOString(), mtime.toISOString(), "MLSD modify fact")
      assert.isTrue(byName.get("deep")!.isDirectory)
      const nested = yield* ftp(() => client.list("/deep/er/est"))
      assert.deepStrictEqual(nested.map((info) => [info.name, info.size]), [["inside.txt", 7]])

      assert.strictEqual(yield* ftp(() => client.size("a.txt")), 6)
      assert.strictEqual((yield* ftp(() => client.lastMod("a.txt"))).toISOString(), mtime.toISOString())

      yield* ftp(() => client.rename("a.txt", "deep/b.txt"))
      assert.isFalse(fs.existsSync(path.join(root, "a.txt")))
      assert.strictEqual(fs.readFileSync(path.join(root, "deep", "b.txt"), "utf8"), "alpha\n")
      yield* ftp(() => client.remove("deep/b.txt"))
      assert.isFalse(fs.existsSync(path.join(root, "deep", "b.txt")))
      yield* ftp(() => client.removeDir("deep"))
      assert.deepStrictEqual(fs.readdirSync(root), [])

      assert.strictEqual(yield* codeOf(ftp(() => client.size("nope"))), 550)
      assert.strictEqual(yield* codeOf(ftp(() => client.lastMod("nope"))), 550)
      assert.strictEqual(yield* codeOf(ftp(() => client.remove("nope"))), 550)
      assert.strictEqual(yield* codeOf(ftp(() => client.cd("nope"))), 550)
      assert.strictEqual(yield* codeOf(ftp(() => client.rename("nope", "other"))), 550)
      assert.strictEqual(yield* codeOf(ftp(() => client.downloadTo(new Writable({ write: (_c, _e, cb) => cb() }), "nope"))), 550)
      // The client is still connected and usable after the error replies.
      assert.strictEqual(yield* ftp(() => client.pwd()), "/")
      assert.deepStrictEqual(yield* ftp(() => client.list()), [])
    }))

  it.effect("every completed upload publishes exactly one UploadCompleted; a .tmp upload publishes its final name once renamed", () =>
    Effect.gen(function*() {
      const server = yield* testServer({ ftp: {} })
      const root = server.roots["alice"]!
      const { uploads } = yield* subscribe(server)
      const client = yield* connect(server)
      const big = crypto.randomBytes(10 * MiB)

      yield* ftp(() => client.uploadFrom(Readable.from([big]), "big.bin"))
      yield* ftp(() => client.ensureDir("/in"))
      yield* ftp(() => client.uploadFrom(Readable.from([Buffer.from("a,b\n")]), "report.csv"))
      // A temporary name: nothing until it is renamed to a final one.
      yield* ftp(() => client.uploadFrom(Readable.from([Buffer.from("1,2,3\n")]), "/in/data.csv.tmp"))
      yield* ftp(() => client.rename("/in/data.csv.tmp", "/in/data.csv"))
      // A rename between final names, or to a temporary name, is not an upload.
      yield* ftp(() => client.rename("/in/report.csv", "/in/report-2.csv"))
      yield* ftp(() => client.rename("/in/report-2.csv", "/in/report-3.csv.tmp"))
      // APPE completes an upload too: the event has the size after the append.
      yield* ftp(() => client.appendFrom(Readable.from([Buffer.from("more\n")]), "/big.bin"))
      // The last upload marks the end: anything published twice would come before it.
      yield* ftp(() => client.uploadFrom(Readable.from([Buffer.from("end\n")]), "/marker"))

      const got = yield* next(uploads, 5)
      assert.deepStrictEqual(got.map(eventFields), [
        ["ftp", "alice", "/big.bin", 10 * MiB, path.join(root, "big.bin"), "127.0.0.1"],
        ["ftp", "alice", "/in/report.csv", 4, path.join(root, "in", "report.csv"), "127.0.0.1"],
        ["ftp", "alice", "/in/data.csv", 6, path.join(root, "in", "data.csv"), "127.0.0.1"],
        ["ftp", "alice", "/big.bin", 10 * MiB + 5, path.join(root, "big.bin"), "127.0.0.1"],
        ["ftp", "alice", "/marker", 4, path.join(root, "marker"), "127.0.0.1"]
      ])
      assert.strictEqual(sha256File(got[0]!.fullPath), sha256(Buffer.concat([big, Buffer.from("more\n")])))
      assert.strictEqual(fs.readFileSync(got[2]!.fullPath, "utf8"), "1,2,3\n")
    }))

  it.effect("an upload that breaks off publishes nothing: the source fails, the client closes mid-transfer, the user may not write", () =>
    Effect.gen(function*() {
      const server = yield* testServer({ ftp: {} })
      const { uploads, auth } = yield* subscribe(server)

      // The source fails after 2 MiB: basic-ftp destroys the data connection (no TLS close_notify).
      const failing = yield* connect(server)
      const broken = yield* Effect.flip(ftp(() =>
        failing.uploadFrom(
          generated(8 * MiB, (sent, stream) => {
            if (sent >= 2 * MiB) stream.destroy(new Error("the source broke"))
          }),
          "broken.bin"
        )
      ))
      assert.match(broken.message, /the source broke/)

      // client.close() in the middle of a large stream: QUIT, then both sockets destroyed.
      const closing = yield* connect(server)
      const closed = yield* Effect.flip(ftp(() =>
        closing.uploadFrom(
          generated(64 * MiB, (sent) => {
            if (sent >= 3 * MiB && !closing.closed) closing.close()
          }),
          "closed.bin"
        )
      ))
      assert.match(closed.message, /closed/i)

      // A read-only user's upload is refused before any data flows.
      const reader = yield* connect(server, "reader")
      assert.strictEqual(yield* codeOf(ftp(() => reader.uploadFrom(Readable.from([Buffer.from("x")]), "r.bin"))), 550)
      reader.close()
      assert.deepStrictEqual(fs.readdirSync(server.roots["reader"]!), [])

      // Both broken sessions are over on the server (and the reader's): whatever they published is queued.
      yield* logouts(auth, "alice", 2)
      yield* logouts(auth, "reader", 1)
      const marker = yield* connect(server)
      yield* ftp(() => marker.uploadFrom(Readable.from([Buffer.from("marker\n")]), "marker.txt"))
      const got = yield* next(uploads, 1)
      assert.deepStrictEqual(got.map((e) => e.path), ["/marker.txt"], "the first event is the marker's")
      // The broken uploads did not complete: whatever was written is shorter than what was meant.
      for (const name of ["broken.bin", "closed.bin"]) {
        const file = path.join(server.roots["alice"]!, name)
        if (fs.existsSync(file)) assert.isBelow(fs.statSync(file).size, name === "broken.bin" ? 8 * MiB : 64 * MiB, name)
      }
    }))
})
