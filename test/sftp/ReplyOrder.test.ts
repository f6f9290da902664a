/**
 * The reply side of an SFTP channel (Session.ts, ReplyWindow.ts), driven over
 * a raw channel against a real server whose jail holds chosen calls: replies
 * leave in arrival order whatever order their requests finish in, at most 64
 * requests are read and unanswered, a channel closed while the session waits
 * for room ends it at once, and a defect in a handler answers FAILURE in its
 * turn and then ends only its own session.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import * as FaultyJail from "../utils/FaultyJail.js"
import { openHandle, packet, type RawChannel, rawChannel } from "../utils/SftpClient.js"
import { testServer } from "../utils/TestServer.js"

const FXP = { Init: 1, Read: 5, Stat: 17, Status: 101, Data: 103, Attrs: 105 } as const

const alice = { password: "alice-password" }

const idOf = (reply: Buffer) => reply.readUInt32BE(1)

/** A round trip on a new channel of its own: by its end, the server has run what it could of the others. */
const roundTripElsewhere = (port: number) =>
  Effect.scoped(Effect.gen(function*() {
    const other = yield* rawChannel(port, "alice", alice)
    yield* other.send(packet(FXP.Init, 3))
    yield* other.next
  }))

const started = (raw: RawChannel) =>
  Effect.gen(function*() {
    yield* raw.send(packet(FXP.Init, 3))
    yield* raw.next
  })

describe("SFTP reply order and budget", () => {
  it.effect("a STAT held at the jail holds back the replies of the five STATs sent after it, which finished first; released, all six come in arrival order", () =>
    Effect.gen(function*() {
      const faulty = FaultyJail.make()
      const server = yield* testServer({ jail: faulty.layer })
      for (const name of ["held", "a", "b", "c", "d", "e"]) fs.writeFileSync(path.join(server.roots["alice"]!, name), name)
      const gate = Deferred.makeUnsafe<void>()
      // Every STAT fires once its real call is done; the one of /held then waits for the gate.
      yield* faulty.arm({
        stat: (p, real, tools) =>
          real.pipe(Effect.tap(() => tools.fired), Effect.tap(() => (p === "/held" ? Deferred.await(gate) : Effect.void)))
      })
      yield* Effect.scoped(Effect.gen(function*() {
        const raw = yield* rawChannel(server.port, "alice", alice)
        yield* started(raw)
        yield* raw.send(Buffer.concat(["held", "a", "b", "c", "d", "e"].map((name, i) => packet(FXP.Stat, 10 + i, name))))
        yield* faulty.awaitFired(6)
        yield* roundTripElsewhere(server.port)
        yield* Deferred.succeed(gate, undefined)
        const ids: Array<number> = []
        for (let i = 0; i < 6; i++) {
          const reply = yield* raw.next
          assert.strictEqual(reply[0], FXP.Attrs)
          ids.push(idOf(reply))
        }
        assert.deepStrictEqual(ids, [10, 11, 12, 13, 14, 15])
      }))
    }))

  it.effect("200 pipelined READs while reads are held: exactly 64 reach the jail, the rest wait unread; released, all 200 are answered in order with their bytes", () =>
    Effect.gen(function*() {
      const faulty = FaultyJail.make()
      const server = yield* testServer({ jail: faulty.layer })
      const data = Buffer.alloc(200 * 1024)
      for (let i = 0; i < 200; i++) data.fill(i, i * 1024, (i + 1) * 1024)
      fs.writeFileSync(path.join(server.roots["alice"]!, "data"), data)
      const gate = Deferred.makeUnsafe<void>()
      yield* Effect.scoped(Effect.gen(function*() {
        const raw = yield* rawChannel(server.port, "alice", alice)
        yield* started(raw)
        const handle = yield* openHandle(raw, 1, "/data", 1)
        yield* faulty.arm(FaultyJail.readsHeld(gate))
        yield* raw.send(Buffer.concat(Array.from({ length: 200 }, (_, i) => packet(FXP.Read, 100 + i, handle, 0, i * 1024, 1024))))
        yield* faulty.awaitFired(64)
        yield* roundTripElsewhere(server.port)
        assert.strictEqual(faulty.firedCount(), 64, "requests served at once")
        yield* Deferred.succeed(gate, undefined)
        for (let i = 0; i < 200; i++) {
          const reply = yield* raw.next
          assert.strictEqual(reply[0], FXP.Data)
          assert.strictEqual(idOf(reply), 100 + i)
          assert.isTrue(reply.subarray(9).equals(data.subarray(i * 1024, (i + 1) * 1024)), `reply ${100 + i}`)
        }
        assert.strictEqual(faulty.firedCount(), 200)
      }))
    }))

  it.effect("the channel closed while 64 READs are held and 36 wait unread: the channel's session ends at once, closing its file without waiting for the held reads", () =>
    Effect.gen(function*() {
      const faulty = FaultyJail.make()
      const server = yield* testServer({ jail: faulty.layer })
      fs.writeFileSync(path.join(server.roots["alice"]!, "data"), Buffer.alloc(100 * 1024))
      const gate = Deferred.makeUnsafe<void>()
      yield* Effect.scoped(Effect.gen(function*() {
        const raw = yield* rawChannel(server.port, "alice", alice)
        yield* started(raw)
        const handle = yield* openHandle(raw, 1, "/data", 1)
        // Reads wait for a gate that never opens here; the close of the file counts as fired.
        yield* faulty.arm({
          ...FaultyJail.readsHeld(gate),
          close: (_file, real, tools) => real.pipe(Effect.tap(() => tools.fired))
        })
        yield* raw.send(Buffer.concat(Array.from({ length: 100 }, (_, i) => packet(FXP.Read, 100 + i, handle, 0, i * 1024, 1024))))
        yield* faulty.awaitFired(64)
        yield* raw.close
        yield* raw.closed
        yield* faulty.awaitFired(65)
        assert.strictEqual(faulty.firedCount(), 65, "a read started after the channel closed")
      }))
      yield* Deferred.succeed(gate, undefined)
    }))

  it.effect("a defect in a handler: FAILURE in its turn, after the held request before it; then that session closes and another one goes on", () =>
    Effect.gen(function*() {
      const faulty = FaultyJail.make()
      const server = yield* testServer({ jail: faulty.layer })
      fs.writeFileSync(path.join(server.roots["alice"]!, "held"), "held")
      const gate = Deferred.makeUnsafe<void>()
      yield* faulty.arm({
        stat: (p, real, tools) =>
          p === "/boom"
            ? tools.fired.pipe(Effect.andThen(Effect.die(new Error("a bug in the jail"))))
            : p === "/held"
            ? tools.fired.pipe(Effect.andThen(Deferred.await(gate)), Effect.andThen(real))
            : real
      })
      yield* Effect.scoped(Effect.gen(function*() {
        const raw = yield* rawChannel(server.port, "alice", alice)
        yield* started(raw)
        yield* raw.send(Buffer.concat([packet(FXP.Stat, 6, "held"), packet(FXP.Stat, 7, "boom")]))
        yield* faulty.awaitFired(2)
        yield* roundTripElsewhere(server.port)
        yield* Deferred.succeed(gate, undefined)
        const first = yield* raw.next
        assert.deepStrictEqual([first[0], idOf(first)], [FXP.Attrs, 6])
        const second = yield* raw.next
        assert.deepStrictEqual([second[0], idOf(second), second.readUInt32BE(5)], [FXP.Status, 7, 4])
        assert.strictEqual(second.subarray(13, 13 + second.readUInt32BE(9)).toString(), "Failure")
        yield* raw.closed
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const other = yield* rawChannel(server.port, "alice", alice)
        yield* started(other)
        yield* other.send(packet(FXP.Stat, 8, "held"))
        const reply = yield* other.next
        assert.deepStrictEqual([reply[0], idOf(reply)], [FXP.Attrs, 8])
      }))
    }))
})
