/**
 * Handshake timeout, idle timeout and graceful shutdown of real SFTP sessions,
 * with every deadline driven by TestClock: nothing happens at deadline − 1 ms,
 * the session is gone at the deadline. Waiting on sockets uses their events.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Fiber, Queue, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { Events, type UploadCompleted } from "../../src/services/Events.js"
import { Server } from "../../src/services/Server.js"
import { Sessions } from "../../src/services/Sessions.js"
import { call, connect } from "../utils/SftpClient.js"
import { testServer } from "../utils/TestServer.js"

/** A Deferred completed by a Node event. */
const onEvent = (emitter: NodeJS.EventEmitter, event: string) =>
  Effect.gen(function*() {
    const done = yield* Deferred.make<void>()
    emitter.once(event, () => Deferred.doneUnsafe(done, Effect.void))
    return done
  })

/** Lets server fibers react to what just happened on the sockets. */
const settle = Effect.yieldNow.pipe(Effect.repeat({ times: 50 }))

const liveSessions = (context: Context.Context<Sessions>) => Context.get(context, Sessions).list.pipe(Effect.map((l) => l.length))

describe("SFTP session lifecycle", () => {
  it.effect("a connection that does not authenticate is closed at the handshake timeout, not before", () =>
    Effect.gen(function*() {
      const server = yield* testServer({ sftp: { handshakeTimeout: "30 seconds" } })
      const socket = net.connect(server.port, "127.0.0.1")
      const closed = yield* onEvent(socket, "close")
      const greeted = yield* onEvent(socket, "data")
      yield* Deferred.await(greeted)
      yield* settle
      yield* TestClock.adjust("29999 millis")
      yield* settle
      assert.isFalse(yield* Deferred.isDone(closed))
      assert.strictEqual(yield* liveSessions(server.context), 1)
      yield* TestClock.adjust("1 millis")
      yield* Deferred.await(closed)
      socket.destroy()
    }))

  it.effect("an authenticated session idle for idleTimeout is closed, not before; activity restarts the timer", () =>
    Effect.gen(function*() {
      const server = yield* testServer({ config: { idleTimeout: "60 seconds" } })
      const { client, sftp } = yield* connect(server.port, "alice", { password: "alice-password" })
      const closed = yield* onEvent(client, "close")
      yield* TestClock.adjust("59 seconds")
      yield* call<string>((cb) => sftp.realpath(".", cb))
      yield* TestClock.adjust("59999 millis")
      yield* settle
      assert.isFalse(yield* Deferred.isDone(closed), "a request at 59 s moved the deadline")
      yield* TestClock.adjust("1 millis")
      yield* Deferred.await(closed)
      yield* settle
      assert.strictEqual(yield* liveSessions(server.context), 0)
    }))

  it.effect("shutdown: idle sessions leave at once; an upload that ends in time completes and is announced", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const uploads = yield* Context.get(server.context, Events).subscribeUploads
      const queue = yield* uploadsQueue(uploads)
      const idle = yield* connect(server.port, "alice", { password: "alice-password" })
      const idleClosed = yield* onEvent(idle.client, "close")
      const busy = yield* connect(server.port, "alice", { password: "alice-password" })
      const handle = yield* call<Buffer>((cb) => busy.sftp.open("/in-time.bin", "w", cb))
      yield* call((cb) => busy.sftp.write(handle, Buffer.from("part one "), 0, 9, 0, cb))

      const shutdown = yield* Effect.forkChild(Context.get(server.context, Server).shutdown("10 seconds"))
      yield* Deferred.await(idleClosed)
      yield* TestClock.adjust("9 seconds")
      yield* settle
      assert.isUndefined(shutdown.pollUnsafe(), "the busy session is still being waited for")
      yield* call((cb) => busy.sftp.write(handle, Buffer.from("part two"), 0, 8, 9, cb))
      yield* call((cb) => busy.sftp.close(handle, cb))
      const result = yield* Fiber.join(shutdown)
      assert.deepStrictEqual(result, { forced: 0 })
      const event = yield* Queue.take(queue)
      assert.strictEqual(event.path, "/in-time.bin")
      assert.strictEqual(event.size, 17)
    }))

  it.effect("shutdown: an upload still open at the deadline is interrupted and never announced", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const uploads = yield* Context.get(server.context, Events).subscribeUploads
      const queue = yield* uploadsQueue(uploads)
      const busy = yield* connect(server.port, "alice", { password: "alice-password" })
      const closed = yield* onEvent(busy.client, "close")
      const handle = yield* call<Buffer>((cb) => busy.sftp.open("/late.bin", "w", cb))
      yield* call((cb) => busy.sftp.write(handle, Buffer.alloc(1024, 1), 0, 1024, 0, cb))
      const shutdown = yield* Effect.forkChild(Context.get(server.context, Server).shutdown("10 seconds"))
      yield* settle
      yield* TestClock.adjust("9999 millis")
      yield* settle
      assert.isUndefined(shutdown.pollUnsafe())
      assert.isFalse(yield* Deferred.isDone(closed))
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* Fiber.join(shutdown), { forced: 1 })
      yield* Deferred.await(closed)
      assert.strictEqual(yield* Queue.size(queue), 0, "no completion event for the interrupted upload")
      assert.strictEqual(fs.statSync(path.join(server.roots["alice"]!, "late.bin")).size, 1024)
      // The server accepts nothing any more.
      const refused = yield* Effect.exit(connect(server.port, "alice", { password: "alice-password" }))
      assert.strictEqual(refused._tag, "Failure")
    }))
})

const uploadsQueue = (stream: Stream.Stream<UploadCompleted>) => Stream.toQueue(stream, { capacity: "unbounded" })
