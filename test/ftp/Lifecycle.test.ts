/**
 * Timeouts and shutdown of real FTP sessions, every deadline driven by
 * TestClock: nothing happens at deadline − 1 ms, it happens at the deadline.
 * Waiting on sockets uses their events and the replies, never a sleep.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Queue, Stream } from "effect"
import { TestClock } from "effect/testing"
import * as fs from "node:fs"
import * as path from "node:path"
import { Events, type UploadCompleted } from "../../src/services/Events.js"
import { Server } from "../../src/services/Server.js"
import { Sessions } from "../../src/services/Sessions.js"
import * as FaultyJail from "../utils/FaultyJail.js"
import { connect, type FtpRawClient, type FtpReply, ftpTestServer, openData, passiveStor } from "../utils/FtpRawClient.js"

/** Lets server fibers react to what just happened. */
const settle = Effect.yieldNow.pipe(Effect.repeat({ times: 50 }))

/** Every reply until the server closes the connection. */
const repliesUntilClosed = (client: FtpRawClient) =>
  Effect.gen(function*() {
    const replies: Array<FtpReply> = []
    while (true) {
      const next = yield* Effect.result(client.reply)
      if (next._tag === "Failure") return replies
      replies.push(next.success)
    }
  })

const liveSessions = (context: Context.Context<Sessions>) => Context.get(context, Sessions).list.pipe(Effect.map((l) => l.length))

const uploads = (context: Context.Context<Events>) =>
  Effect.gen(function*() {
    const stream: Stream.Stream<UploadCompleted> = yield* Context.get(context, Events).subscribeUploads
    return yield* Stream.toQueue(stream, { capacity: "unbounded" })
  })

describe("FTP session lifecycle", () => {
  it.effect("an idle logged-in control connection gets 421 and is closed at idleTimeout, not 1 ms before", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer({ ftp: { requireTLS: false }, config: { idleTimeout: "60 seconds" } })
      const client = yield* connect(server.ftpPort)
      yield* client.login("alice")
      // Activity restarts the timer.
      yield* TestClock.adjust("59 seconds")
      yield* client.expect("NOOP", 200)
      yield* settle
      yield* TestClock.adjust("59999 millis")
      yield* settle
      assert.isFalse(client.isClosed(), "still open 1 ms before the deadline")
      assert.strictEqual(client.pendingReplies(), 0)
      yield* TestClock.adjust("1 millis")
      const replies = yield* repliesUntilClosed(client)
      assert.deepStrictEqual(replies.map((r) => r.code), [421])
      yield* client.closed
      yield* settle
      assert.strictEqual(yield* liveSessions(server.context), 0)
    }))

  it.effect("a stalled upload does not hold the session open: 421 at idleTimeout, not before, and no upload event", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer({ ftp: { requireTLS: false }, config: { idleTimeout: "60 seconds" } })
      const events = yield* uploads(server.context)
      const client = yield* connect(server.ftpPort)
      yield* client.login("alice")
      // The data connection opens, and then nothing ever comes.
      const data = yield* passiveStor(client, "stalled.bin")
      yield* settle
      yield* TestClock.adjust("59999 millis")
      yield* settle
      assert.isFalse(client.isClosed())
      assert.strictEqual(client.pendingReplies(), 0)
      yield* TestClock.adjust("1 millis")
      const codes = (yield* repliesUntilClosed(client)).map((r) => r.code)
      assert.include(codes, 421)
      assert.notInclude(codes, 226)
      yield* data.closed
      assert.strictEqual(yield* Queue.size(events), 0)
    }))

  // Bytes that reach the file count as activity, whichever path writes them: the
  // addon's thread (plain TCP) or batches from JS (what a write fault forces).
  it.effect.each([
    { how: "the addon's thread", observe: FaultyJail.receivesObserved("/slow.bin") },
    { how: "batches from JS", observe: FaultyJail.writesObserved("/slow.bin") }
  ])("a slow upload written by $how is activity: bytes every 40 s outlive the 60 s idleTimeout, then 226 and the event", ({ observe }) =>
    Effect.gen(function*() {
      const jail = FaultyJail.make()
      const server = yield* ftpTestServer({ jail: jail.layer, ftp: { requireTLS: false }, config: { idleTimeout: "60 seconds" } })
      const events = yield* uploads(server.context)
      yield* jail.arm(observe)
      const client = yield* connect(server.ftpPort)
      yield* client.login("alice")
      const data = yield* passiveStor(client, "slow.bin")
      for (let round = 1; round <= 3; round++) {
        yield* TestClock.adjust("40 seconds")
        data.socket.write("40 seconds later\n")
        // Fired once the bytes are in the file and the session was touched.
        yield* jail.awaitFired(round)
      }
      yield* settle
      assert.isFalse(client.isClosed(), "120 s after STOR, still open")
      data.socket.end()
      yield* data.closed
      yield* client.expectReply(226)
      const event = yield* Queue.take(events)
      assert.strictEqual(event.path, "/slow.bin")
      assert.strictEqual(event.size, 3 * "40 seconds later\n".length)
      yield* client.expect("QUIT", 221)
    }))

  it.effect("a connection that never logs in gets 421 and is closed at the 1-minute login timeout, not before", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer()
      const client = yield* connect(server.ftpPort, { ca: fs.readFileSync(server.certFile) })
      assert.strictEqual(client.greeting.code, 220)
      // Commands before login do not extend the login deadline.
      yield* client.expect("NOOP", 200)
      yield* settle
      yield* TestClock.adjust("59999 millis")
      yield* settle
      assert.isFalse(client.isClosed())
      assert.strictEqual(client.pendingReplies(), 0)
      assert.strictEqual(yield* liveSessions(server.context), 1)
      yield* TestClock.adjust("1 millis")
      const replies = yield* repliesUntilClosed(client)
      assert.deepStrictEqual(replies.map((r) => r.code), [421])
      yield* client.closed
    }))

  it.effect("the data-accept timeout: a RETR waiting for its data connection gets 425 at 30 s, not before; the control stays usable", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer({ ftp: { requireTLS: false, dataAcceptTimeout: "30 seconds" } })
      fs.writeFileSync(path.join(server.roots["alice"]!, "f.txt"), "contents")
      const client = yield* connect(server.ftpPort)
      yield* client.login("alice")
      const port = yield* client.pasv
      yield* client.expect("RETR f.txt", 150)
      yield* settle
      yield* TestClock.adjust("29999 millis")
      yield* settle
      assert.strictEqual(client.pendingReplies(), 0, "no reply 1 ms before the deadline")
      yield* TestClock.adjust("1 millis")
      yield* client.expectReply(425)
      yield* client.expect("NOOP", 200)
      yield* client.expect("PWD", 257)
      // The passive port is closed: a late client is refused, and a new PASV works.
      const late = yield* openData(port)
      assert.strictEqual((yield* late.done).length, 0)
      const again = yield* client.pasv
      yield* client.expect("RETR f.txt", 150)
      const data = yield* openData(again)
      assert.strictEqual((yield* data.done).toString(), "contents")
      yield* client.expectReply(226)
    }))

  it.effect("shutdown closes idle FTP sessions at once with 421, logged in or not", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer({ ftp: { requireTLS: false } })
      const loggedIn = yield* connect(server.ftpPort)
      yield* loggedIn.login("alice")
      const anonymous = yield* connect(server.ftpPort)
      const shutdown = yield* Effect.forkChild(Context.get(server.context, Server).shutdown("10 seconds"))
      assert.deepStrictEqual((yield* repliesUntilClosed(loggedIn)).map((r) => r.code), [421])
      assert.deepStrictEqual((yield* repliesUntilClosed(anonymous)).map((r) => r.code), [421])
      assert.deepStrictEqual(yield* Fiber.join(shutdown), { forced: 0 })
    }))

  it.effect("shutdown waits for a running transfer: it completes, is announced, then 421", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer({ ftp: { requireTLS: false } })
      const events = yield* uploads(server.context)
      const busy = yield* connect(server.ftpPort)
      yield* busy.login("alice")
      const data = yield* passiveStor(busy, "in-time.bin")
      data.socket.write("part one ")
      const idle = yield* connect(server.ftpPort)
      yield* idle.login("alice")

      const shutdown = yield* Effect.forkChild(Context.get(server.context, Server).shutdown("10 seconds"))
      assert.deepStrictEqual((yield* repliesUntilClosed(idle)).map((r) => r.code), [421])
      yield* TestClock.adjust("9 seconds")
      yield* settle
      assert.isUndefined(shutdown.pollUnsafe(), "the busy session is still being waited for")
      assert.isFalse(busy.isClosed())
      assert.strictEqual(busy.pendingReplies(), 0)
      data.socket.end("part two")
      yield* busy.expectReply(226)
      assert.deepStrictEqual((yield* repliesUntilClosed(busy)).map((r) => r.code), [421])
      assert.deepStrictEqual(yield* Fiber.join(shutdown), { forced: 0 })
      const event = yield* Queue.take(events)
      assert.strictEqual(event.path, "/in-time.bin")
      assert.strictEqual(event.size, 17)
      assert.strictEqual(fs.readFileSync(path.join(server.roots["alice"]!, "in-time.bin"), "utf8"), "part one part two")
    }))

  it.effect("shutdown interrupts a transfer still running at the deadline: no 226, no upload event", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer({ ftp: { requireTLS: false } })
      const events = yield* uploads(server.context)
      const busy = yield* connect(server.ftpPort)
      yield* busy.login("alice")
      const data = yield* passiveStor(busy, "late.bin")
      data.socket.write(Buffer.alloc(1024, 1))

      const shutdown = yield* Effect.forkChild(Context.get(server.context, Server).shutdown("10 seconds"))
      yield* settle
      yield* TestClock.adjust("9999 millis")
      yield* settle
      assert.isUndefined(shutdown.pollUnsafe())
      assert.isFalse(busy.isClosed())
      assert.strictEqual(busy.pendingReplies(), 0)
      yield* TestClock.adjust("1 millis")
      assert.deepStrictEqual(yield* Fiber.join(shutdown), { forced: 1 })
      const replies = yield* repliesUntilClosed(busy)
      for (const reply of replies) assert.include([426, 421], reply.code, reply.text)
      yield* busy.closed
      yield* data.closed
      assert.strictEqual(yield* Queue.size(events), 0, "no completion event for the interrupted upload")
      // The server accepts nothing any more.
      const refused = yield* Effect.exit(connect(server.ftpPort))
      assert.strictEqual(refused._tag, "Failure")
    }))
})
