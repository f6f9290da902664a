/**
 * Clients that vanish in the middle of a transfer, on both protocols: the SFTP
 * TCP connection destroyed while WRITEs or READs are in flight (held at the jail
 * by FaultyJail, so they are in flight for certain), an FTP data connection reset
 * or an FTP control connection closed mid-upload and mid-download, a PROT P
 * upload cut without close_notify.
 *
 * What must hold each time: no UploadCompleted for the cut upload, no file
 * descriptor left in the server (the server runs in this process: /proc/self/fd
 * is counted once every session is gone, by the Sessions service's own signal),
 * and the server keeps serving: another session's upload is the next event.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Queue, type Scope } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import type { UploadCompleted } from "../../src/services/Events.js"
import { connect as ftpConnect, type FtpDataConnection, type FtpRawClient, ftpTestServer, onceEvent, openData, passiveStor } from "../utils/FtpRawClient.js"
import * as FaultyJail from "../utils/FaultyJail.js"
import { call, connect as sftpConnect } from "../utils/SftpClient.js"
import { tempDir } from "../utils/TempDir.js"
import { describeNewFds, drainEvents, openFds, sessionsGone, uploadEvents } from "./Probes.js"

const KiB = 1024
const MiB = 1024 * KiB
const alice = { password: "alice-password" }

type TestServer = Effect.Success<ReturnType<typeof ftpTestServer>>
type UploadQueue = Queue.Dequeue<UploadCompleted, unknown>

const noop = () => {}

/** PASV, STOR, `content`, end of stream; the final reply. */
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

/**
 * One upload and one download per protocol, so whatever a first transfer opens
 * lazily in this process is open before fds are counted; then the fd snapshot.
 */
const warmUp = (server: TestServer, events: UploadQueue) =>
  Effect.gen(function*() {
    const local = yield* tempDir()
    yield* Effect.scoped(Effect.gen(function*() {
      const { sftp } = yield* sftpConnect(server.port, "alice", alice)
      yield* call((cb) => sftp.writeFile("/warm-sftp.bin", crypto.randomBytes(MiB), cb))
      yield* call((cb) => sftp.fastGet("/warm-sftp.bin", path.join(local, "warm"), cb))
    }))
    yield* Effect.scoped(Effect.gen(function*() {
      const client = yield* ftpConnect(server.ftpPort)
      yield* client.login("alice")
      const stored = yield* ftpStore(client, "warm-ftp.bin", crypto.randomBytes(MiB))
      assert.strictEqual(stored.code, 226, stored.text)
      yield* client.expect("QUIT", 221)
      yield* client.closed
    }))
    assert.deepStrictEqual([(yield* Queue.take(events)).path, (yield* Queue.take(events)).path], ["/warm-sftp.bin", "/warm-ftp.bin"])
    yield* sessionsGone(server.context)
    return openFds()
  })

/** Once every session is gone: the fds are the warm-up snapshot's, and no upload was announced. */
const assertClean = (server: TestServer, events: UploadQueue, before: ReadonlyMap<string, string>) =>
  Effect.gen(function*() {
    yield* sessionsGone(server.context)
    const after = openFds()
    assert.strictEqual(after.size, before.size, `new fds: ${describeNewFds(before, after)}`)
    assert.deepStrictEqual(yield* drainEvents(events), [], "no upload event for a cut transfer")
    return { before: before.size, after: after.size }
  })

/** Another session uploads: it succeeds and is the next event. */
const stillServes = (server: TestServer, events: UploadQueue, name: string) =>
  Effect.gen(function*() {
    yield* Effect.scoped(Effect.gen(function*() {
      const { sftp } = yield* sftpConnect(server.port, "alice", alice)
      yield* call((cb) => sftp.writeFile(name, "after the cut", cb))
    }))
    assert.strictEqual((yield* Queue.take(events)).path, name)
  })

/** A server in clear FTP on a faulty jail, its event queue, and the warm fd snapshot. */
/** A RETR of 32 MiB whose client has not read yet, once the server made two reads of the file. */
/** What the FTP cut cases need of `setUp`. */
interface Rig {
  readonly server: TestServer
  readonly root: string
  readonly jail: FaultyJail.FaultyJail
}

/** A transfer under way, from the client's side. */
interface Transfer {
  readonly client: FtpRawClient
  readonly data: FtpDataConnection
}

/** A logged-in client whose RETR of a 32 MiB file is under way: the jail has read twice. */
const retrAfterTwoReads = ({ jail, root, server }: Rig) =>
  Effect.gen(function*() {
    fs.writeFileSync(path.join(root, "big.bin"), crypto.randomBytes(32 * MiB))
    yield* jail.arm(FaultyJail.readsObserved("/big.bin"))
    const client = yield* ftpConnect(server.ftpPort)
    yield* client.login("alice")
    const port = yield* client.pasv
    yield* client.expect("RETR big.bin", 150)
    const data = yield* openData(port, { paused: true })
    yield* data.connected
    yield* jail.awaitFired(2)
    return { client, data } satisfies Transfer
  })

const setUp = Effect.gen(function*() {
  const jail = FaultyJail.make()
  const server = yield* ftpTestServer({ jail: jail.layer, ftp: { requireTLS: false } })
  const events = yield* uploadEvents(server.context)
  const before = yield* warmUp(server, events)
  return { jail, server, events, before, root: server.roots["alice"]! }
})

/** The data connection cut by `cut`: 426, and the control connection still answers. */
const cutData = (cut: (data: FtpDataConnection) => void) => ({ client, data }: Transfer) =>
  Effect.gen(function*() {
    cut(data)
    yield* data.closed
    yield* client.expectReply(426)
    yield* client.expect("NOOP", 200)
    yield* client.expect("QUIT", 221)
    yield* client.closed
  })

/** The control connection closed: the session ends, and its data connection with it. */
const closeControl = ({ client, data }: Transfer) =>
  Effect.gen(function*() {
    client.raw.destroy()
    yield* client.closed
    // Read on, so the end the server sends is seen.
    data.socket.resume()
    yield* data.closed
  })

/** A transfer started by `start` and cut by `cut`; then no event, no fd left, and the server still serves. */
const cutMidTransfer = <E1, E2>(
  start: (rig: Rig) => Effect.Effect<Transfer, E1, Scope.Scope>,
  cut: (transfer: Transfer) => Effect.Effect<void, E2>
) =>
  Effect.gen(function*() {
    const rig = yield* setUp
    yield* Effect.scoped(Effect.flatMap(start(rig), cut))
    yield* assertClean(rig.server, rig.events, rig.before)
    yield* stillServes(rig.server, rig.events, "/next.txt")
  })

describe("SFTP: the TCP connection destroyed mid-transfer", () => {
  for (const gateOpens of ["never", "during the teardown"] as const) {
    it.effect(`16 WRITEs held at the jail, then the socket destroyed (held writes released: ${gateOpens}): no event, no fd left`, () =>
      Effect.gen(function*() {
        const { before, events, jail, root, server } = yield* setUp
        const gate = yield* Deferred.make<void>()
        yield* jail.arm(FaultyJail.writesHeld(gate, "/cut.bin"))
        yield* Effect.scoped(Effect.gen(function*() {
          const { client, sftp } = yield* sftpConnect(server.port, "alice", alice)
          const handle = yield* call<Buffer>((cb) => sftp.open("/cut.bin", "w", cb))
          const chunk = crypto.randomBytes(32 * KiB)
          for (let i = 0; i < 16; i++) sftp.write(handle, chunk, 0, chunk.length, i * chunk.length, noop)
          yield* jail.awaitFired(16)
          const closed = onceEvent(client, "close")
          client.destroy()
          if (gateOpens === "during the teardown") yield* Deferred.succeed(gate, undefined)
          yield* closed
        }))
        yield* assertClean(server, events, before)
        // Every request fiber is gone with its session: opening the gate now writes nothing.
        yield* Deferred.succeed(gate, undefined)
        if (gateOpens === "never") assert.strictEqual(fs.statSync(path.join(root, "cut.bin")).size, 0)
        else assert.isAtMost(fs.statSync(path.join(root, "cut.bin")).size, 16 * 32 * KiB)
        yield* jail.disarm
        yield* stillServes(server, events, "/next.txt")
      }))
  }

  it.effect("16 READs held at the jail, then the socket destroyed: no fd left, the server goes on", () =>
    Effect.gen(function*() {
      const { before, events, jail, root, server } = yield* setUp
      fs.writeFileSync(path.join(root, "big.bin"), crypto.randomBytes(4 * MiB))
      const gate = yield* Deferred.make<void>()
      yield* jail.arm(FaultyJail.readsHeld(gate, "/big.bin"))
      yield* Effect.scoped(Effect.gen(function*() {
        const { client, sftp } = yield* sftpConnect(server.port, "alice", alice)
        const handle = yield* call<Buffer>((cb) => sftp.open("/big.bin", "r", cb))
        for (let i = 0; i < 16; i++) sftp.read(handle, Buffer.alloc(32 * KiB), 0, 32 * KiB, i * 32 * KiB, noop)
        yield* jail.awaitFired(16)
        const closed = onceEvent(client, "close")
        client.destroy()
        yield* closed
      }))
      yield* assertClean(server, events, before)
      yield* Deferred.succeed(gate, undefined)
      yield* jail.disarm
      yield* stillServes(server, events, "/next.txt")
    }))

  it.effect("64 pipelined READs of a 16 MiB file, the socket destroyed as the first reply arrives: no fd left", () =>
    Effect.gen(function*() {
      const { before, events, root, server } = yield* setUp
      fs.writeFileSync(path.join(root, "big.bin"), crypto.randomBytes(16 * MiB))
      yield* Effect.scoped(Effect.gen(function*() {
        const { client, sftp } = yield* sftpConnect(server.port, "alice", alice)
        const handle = yield* call<Buffer>((cb) => sftp.open("/big.bin", "r", cb))
        const closed = onceEvent(client, "close")
        // Not awaited: ssh2 never calls back the requests a destroyed connection left unanswered.
        for (let i = 0; i < 64; i++) {
          sftp.read(handle, Buffer.alloc(256 * KiB), 0, 256 * KiB, i * 256 * KiB, () => void client.destroy())
        }
        yield* closed
      }))
      yield* assertClean(server, events, before)
      yield* stillServes(server, events, "/next.txt")
    }))
})

describe("FTP: a connection closed mid-transfer", () => {
  // An upload over plain TCP is written by the addon's thread; a write fault sends it through `write` instead.
  const uploadPaths = [
    { how: "written by the addon's thread", observe: FaultyJail.receivesObserved("/cut.bin") },
    { how: "written in batches from JS", observe: FaultyJail.writesObserved("/cut.bin") }
  ] as const

  /** A logged-in client whose STOR cut.bin sent 4 MiB, and some of it reached the file (`observe` fired). */
  const uploadUnderway = (observe: FaultyJail.Faults) => ({ jail, server }: Rig) =>
    Effect.gen(function*() {
      yield* jail.arm(observe)
      const client = yield* ftpConnect(server.ftpPort)
      yield* client.login("alice")
      const data = yield* passiveStor(client, "cut.bin")
      data.socket.write(crypto.randomBytes(4 * MiB))
      yield* jail.awaitFired(1)
      return { client, data } satisfies Transfer
    })

  describe.each(uploadPaths)("STOR $how", ({ observe }) => {
    it.effect("the data connection reset once bytes reached the file: 426, the control connection goes on, no event, no fd left", () =>
      cutMidTransfer(uploadUnderway(observe), cutData((data) => data.raw.resetAndDestroy())))

    it.effect("the control connection closed once bytes reached the file: the session ends, its data connection too, no event, no fd left", () =>
      cutMidTransfer(uploadUnderway(observe), closeControl))
  })

  it.effect("RETR, the data connection destroyed after two reads: 426, the control connection goes on, no fd left", () =>
    cutMidTransfer(retrAfterTwoReads, cutData((data) => data.raw.destroy())))

  it.effect("RETR, the control connection closed after two reads: the session ends, its data connection too, no fd left", () =>
    cutMidTransfer(retrAfterTwoReads, closeControl))

  it.effect("PROT P STOR cut by a TCP FIN without close_notify after the first write: refused (4xx), no event, no fd left", () =>
    Effect.gen(function*() {
      const jail = FaultyJail.make()
      const server = yield* ftpTestServer({ jail: jail.layer })
      const ca = fs.readFileSync(server.certFile)
      const events = yield* uploadEvents(server.context)
      yield* sessionsGone(server.context)
      const before = openFds()
      yield* jail.arm(FaultyJail.writesObserved("/cut.bin"))
      yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* ftpConnect(server.ftpPort, { ca })
        yield* client.secureLogin("alice")
        const data = yield* passiveStor(client, "cut.bin", { tls: { ca, session: client.session() } })
        data.tls!.write(crypto.randomBytes(2 * MiB))
        yield* jail.awaitFired(1)
        data.raw.end()
        yield* data.closed
        const refused = yield* client.reply
        assert.isAtLeast(refused.code, 400, refused.text)
        yield* client.expect("NOOP", 200)
        yield* client.expect("QUIT", 221)
        yield* client.closed
      }))
      yield* sessionsGone(server.context)
      const after = openFds()
      assert.strictEqual(after.size, before.size, `new fds: ${describeNewFds(before, after)}`)
      assert.deepStrictEqual(yield* drainEvents(events), [])
    }))
})
