import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Ref } from "effect"
import { TestClock } from "effect/testing"
import * as SessionsFiberSet from "../../src/layers/SessionsFiberSet.js"
import type { SessionControl, Sessions, SessionTimeout } from "../../src/services/Sessions.js"

// Lets forked session fibers run up to their next suspension point.
const settle = Effect.yieldNow.pipe(Effect.repeat({ times: 20 }))

const origin = { protocol: "sftp" as const, clientIp: "127.0.0.1" }

const count = (sessions: Sessions["Service"]) => sessions.list.pipe(Effect.map((l) => l.length))

describe("Sessions", () => {
  it.effect("ends a session that does not authenticate within the handshake timeout, not earlier", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionsFiberSet.make({ handshakeTimeout: "30 seconds", idleTimeout: "15 minutes" })
      const timeouts = yield* Ref.make<Array<SessionTimeout["kind"]>>([])
      yield* sessions.start(
        { ...origin, onTimeout: (t) => Ref.update(timeouts, (all) => [...all, t.kind]) },
        (control) => control.touch.pipe(Effect.andThen(Effect.never))
      )
      yield* settle
      yield* TestClock.adjust("29999 millis")
      yield* settle
      assert.strictEqual(yield* count(sessions), 1)
      // Activity does not extend the handshake deadline.
      assert.deepStrictEqual(yield* Ref.get(timeouts), [])
      yield* TestClock.adjust("1 millis")
      yield* settle
      assert.strictEqual(yield* count(sessions), 0)
      assert.deepStrictEqual(yield* Ref.get(timeouts), ["Handshake"])
    }))

  it.effect("reaps an authenticated session after the idle timeout; activity restarts the timer", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionsFiberSet.make({ handshakeTimeout: "30 seconds", idleTimeout: "60 seconds" })
      const controls = yield* Deferred.make<SessionControl>()
      const timeouts = yield* Ref.make<Array<SessionTimeout["kind"]>>([])
      yield* sessions.start(
        { ...origin, onTimeout: (t) => Ref.update(timeouts, (all) => [...all, t.kind]) },
        (control) => control.authenticated("alice").pipe(Effect.andThen(Deferred.succeed(controls, control)), Effect.andThen(Effect.never))
      )
      const control = yield* Deferred.await(controls)
      yield* TestClock.adjust("59 seconds")
      yield* settle
      assert.strictEqual(yield* count(sessions), 1)
      yield* control.touch
      yield* TestClock.adjust("59 seconds")
      yield* settle
      assert.strictEqual(yield* count(sessions), 1, "activity at 59 s moved the deadline to 119 s")
      yield* TestClock.adjust("1 second")
      yield* settle
      assert.strictEqual(yield* count(sessions), 0)
      assert.deepStrictEqual(yield* Ref.get(timeouts), ["Idle"])
    }))

  it.effect("applies an idle timeout shorter than the handshake timeout from the login on", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionsFiberSet.make({ handshakeTimeout: "30 seconds", idleTimeout: "10 seconds" })
      const login = yield* Deferred.make<void>()
      yield* sessions.start(origin, (control) =>
        Deferred.await(login).pipe(Effect.andThen(control.authenticated("alice")), Effect.andThen(Effect.never)))
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* Deferred.succeed(login, undefined)
      yield* settle
      yield* TestClock.adjust("9999 millis")
      yield* settle
      assert.strictEqual(yield* count(sessions), 1)
      yield* TestClock.adjust("1 millis")
      yield* settle
      assert.strictEqual(yield* count(sessions), 0)
    }))

  it.effect("a zero timeout disables that timeout", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionsFiberSet.make({ handshakeTimeout: 0, idleTimeout: 0 })
      yield* sessions.start(origin, () => Effect.never)
      yield* sessions.start(origin, (control) => control.authenticated("bob").pipe(Effect.andThen(Effect.never)))
      yield* settle
      yield* TestClock.adjust("3650 days")
      yield* settle
      assert.strictEqual(yield* count(sessions), 2)
    }))

  it.effect("shutdown lets a session that ends in time finish and reports nothing forced", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionsFiberSet.make({ handshakeTimeout: 0 })
      const finished = yield* Deferred.make<void>()
      const done = yield* Deferred.make<void>()
      yield* sessions.start(origin, () => Deferred.await(done).pipe(Effect.andThen(Deferred.succeed(finished, undefined))))
      yield* settle
      const shutdown = yield* Effect.forkChild(sessions.shutdown("10 seconds"))
      yield* settle
      assert.isFalse(yield* sessions.accepting)
      // The session's work ends 5 seconds into the 10-second deadline.
      yield* TestClock.adjust("5 seconds")
      yield* Deferred.succeed(done, undefined)
      const result = yield* Fiber.join(shutdown)
      assert.deepStrictEqual(result, { forced: 0 })
      assert.isTrue(yield* Deferred.isDone(finished))
    }))

  it.effect("shutdown interrupts a session still running at the deadline, runs its finalizers, and not before", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionsFiberSet.make({ handshakeTimeout: 0 })
      const finalized = yield* Ref.make(false)
      const completed = yield* Ref.make(false)
      const never = yield* Deferred.make<void>()
      yield* sessions.start(origin, () =>
        Deferred.await(never).pipe(
          Effect.andThen(Ref.set(completed, true)),
          Effect.ensuring(Ref.set(finalized, true))
        ))
      yield* settle
      const shutdown = yield* Effect.forkChild(sessions.shutdown("30 seconds"))
      yield* settle
      yield* TestClock.adjust("29999 millis")
      yield* settle
      assert.isFalse(yield* Ref.get(finalized))
      assert.strictEqual(yield* count(sessions), 1)
      yield* TestClock.adjust("1 millis")
      const result = yield* Fiber.join(shutdown)
      assert.deepStrictEqual(result, { forced: 1 })
      assert.isTrue(yield* Ref.get(finalized))
      assert.isFalse(yield* Ref.get(completed))
      assert.strictEqual(yield* count(sessions), 0)
    }))

  it.effect("sessions that listen to draining leave at once on shutdown", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionsFiberSet.make()
      for (let i = 0; i < 3; i++) yield* sessions.start(origin, (control) => control.draining)
      yield* settle
      assert.strictEqual(yield* count(sessions), 3)
      const result = yield* sessions.shutdown("1 minute")
      assert.deepStrictEqual(result, { forced: 0 })
    }))

  it.effect("close stops accepting but lets live sessions run on", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionsFiberSet.make({ handshakeTimeout: 0 })
      const release = yield* Deferred.make<void>()
      assert.isTrue(yield* sessions.start(origin, () => Deferred.await(release)))
      yield* settle
      yield* sessions.close
      yield* sessions.stopped
      assert.isFalse(yield* sessions.accepting)
      let ran = false
      assert.isFalse(yield* sessions.start(origin, () => Effect.sync(() => void (ran = true))))
      yield* settle
      assert.isFalse(ran)
      assert.strictEqual(yield* count(sessions), 1)
      yield* Deferred.succeed(release, undefined)
      yield* sessions.awaitEmpty
    }))

  it.effect("endUser interrupts that user's sessions only", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionsFiberSet.make()
      const as = (name: string) => (control: SessionControl) => control.authenticated(name).pipe(Effect.andThen(Effect.never))
      yield* sessions.start(origin, as("alice"))
      yield* sessions.start(origin, as("alice"))
      yield* sessions.start(origin, as("bob"))
      yield* settle
      assert.strictEqual(yield* sessions.endUser("alice"), 2)
      yield* settle
      const left = yield* sessions.list
      assert.deepStrictEqual(left.map((s) => s.username), ["bob"])
    }))

  it.effect("a failing or dying session body ends that session only", () =>
    Effect.gen(function*() {
      const sessions = yield* SessionsFiberSet.make({ handshakeTimeout: 0 })
      yield* sessions.start(origin, () => Effect.fail("protocol error"))
      yield* sessions.start(origin, () => Effect.die(new Error("bug")))
      yield* sessions.start(origin, () => Effect.never)
      yield* settle
      assert.strictEqual(yield* count(sessions), 1)
    }))

  it.effect("closing the server's scope interrupts every session", () =>
    Effect.gen(function*() {
      const finalized = yield* Ref.make(0)
      yield* Effect.scoped(Effect.gen(function*() {
        const sessions = yield* SessionsFiberSet.make({ handshakeTimeout: 0 })
        for (let i = 0; i < 2; i++) {
          yield* sessions.start(origin, () => Effect.never.pipe(Effect.ensuring(Ref.update(finalized, (n) => n + 1))))
        }
        yield* settle
      }))
      assert.strictEqual(yield* Ref.get(finalized), 2)
    }))
})
