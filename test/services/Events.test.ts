import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import * as EventsHub from "../../src/layers/EventsHub.js"
import { LoginFailed, LoginSucceeded, Logout, UploadCompleted } from "../../src/services/Events.js"

const upload = (n: number) =>
  new UploadCompleted({
    protocol: "sftp",
    username: "alice",
    path: `/f${n}`,
    fullPath: `/srv/alice/f${n}`,
    clientIp: "127.0.0.1",
    size: n
  })

describe("Events", () => {
  it.effect("delivers events published after subscribing, in order, to every subscriber", () =>
    Effect.gen(function*() {
      const events = yield* EventsHub.make()
      const a = yield* events.subscribeUploads
      const b = yield* events.subscribeUploads
      yield* events.publishUpload(upload(1))
      yield* events.publishUpload(upload(2))
      const [fromA, fromB] = yield* Effect.all([
        a.pipe(Stream.take(2), Stream.runCollect),
        b.pipe(Stream.take(2), Stream.runCollect)
      ])
      assert.deepStrictEqual(fromA.map((e) => e.path), ["/f1", "/f2"])
      assert.deepStrictEqual(fromB.map((e) => e.path), ["/f1", "/f2"])
    }))

  it.effect("a full subscriber loses events without blocking the publisher or other subscribers", () =>
    Effect.gen(function*() {
      const events = yield* EventsHub.make({ uploadCapacity: 2 })
      const slow = yield* events.subscribeUploads
      const fast = yield* events.subscribeUploads
      const fastCollector = yield* Effect.forkChild(fast.pipe(Stream.take(5), Stream.runCollect))
      for (let i = 1; i <= 5; i++) {
        yield* events.publishUpload(upload(i))
        yield* Effect.yieldNow
      }
      const fromFast = yield* Fiber.join(fastCollector)
      assert.deepStrictEqual(fromFast.map((e) => e.size), [1, 2, 3, 4, 5])
      // The slow subscriber kept the first two and lost three, all counted.
      const fromSlow = yield* slow.pipe(Stream.take(2), Stream.runCollect)
      assert.deepStrictEqual(fromSlow.map((e) => e.size), [1, 2])
      assert.deepStrictEqual(yield* events.dropped, { uploads: 3, auth: 0 })
    }))

  it.effect("publishing with no subscriber is a no-op and loses nothing that is counted", () =>
    Effect.gen(function*() {
      const events = yield* EventsHub.make({ uploadCapacity: 1 })
      for (let i = 0; i < 100; i++) yield* events.publishUpload(upload(i))
      assert.deepStrictEqual(yield* events.dropped, { uploads: 0, auth: 0 })
    }))

  it.effect("auth events have their own hub", () =>
    Effect.gen(function*() {
      const events = yield* EventsHub.make()
      const auth = yield* events.subscribeAuth
      const uploads = yield* events.subscribeUploads
      const base = { protocol: "ftp" as const, username: "bob", clientIp: "10.0.0.1" }
      yield* events.publishAuth(new LoginFailed({ ...base, method: "password" }))
      yield* events.publishAuth(new LoginSucceeded({ ...base, method: "password" }))
      yield* events.publishAuth(new Logout(base))
      yield* events.publishUpload(upload(7))
      const tags = yield* auth.pipe(Stream.take(3), Stream.runCollect)
      assert.deepStrictEqual(tags.map((e) => e._tag), ["LoginFailed", "LoginSucceeded", "Logout"])
      const fromUploads = yield* uploads.pipe(Stream.take(1), Stream.runCollect)
      assert.deepStrictEqual(fromUploads.map((e) => e.size), [7])
    }))

  it.effect("streams end after delivering what was buffered when the server's scope closes", () =>
    Effect.gen(function*() {
      const collected = yield* Effect.scoped(Effect.gen(function*() {
        const events = yield* EventsHub.make()
        const stream = yield* events.subscribeUploads
        yield* events.publishUpload(upload(1))
        yield* events.publishUpload(upload(2))
        return stream
      })).pipe(Effect.flatMap((stream) => Stream.runCollect(stream)))
      assert.deepStrictEqual(collected.map((e) => e.size), [1, 2])
    }))

  it.effect("the lazy stream subscribes when it starts running", () =>
    Effect.gen(function*() {
      const events = yield* EventsHub.make()
      yield* events.publishUpload(upload(1))
      const fiber = yield* Effect.forkChild(events.uploads.pipe(Stream.take(1), Stream.runCollect))
      yield* Effect.yieldNow.pipe(Effect.repeat({ times: 10 }))
      yield* events.publishUpload(upload(2))
      const got = yield* Fiber.join(fiber)
      assert.deepStrictEqual(got.map((e) => e.size), [2])
    }))
})
