/**
 * The ConnectionGuard's rules on the in-memory layer, with every time driven by
 * TestClock: the caps on unauthenticated connections and their slots, the
 * sliding failure window, the ban's exact end (deadline − 1 ms banned, deadline
 * admitted), the bounded tables under a flood of addresses, and the log lines
 * (refusals rate-limited, one `client_banned` per ban). End to end through both
 * protocols: test/security/PreAuthLimits.test.ts and test/security/Bans.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger, References } from "effect"
import { TestClock } from "effect/testing"
import * as ConnectionGuardMemory from "../../src/layers/ConnectionGuardMemory.js"
import { type Admission, clientKey, type ConnectionGuard } from "../../src/services/ConnectionGuard.js"

type Guard = ConnectionGuard["Service"]

const admitted = (admission: Admission) => {
  if (admission._tag !== "Admitted") throw new Error(`refused: ${admission.reason}`)
  return admission.slot
}
const reason = (admission: Admission) => (admission._tag === "Refused" ? admission.reason : "Admitted")

/** `n` failures of `ip`; whether the last one banned it. */
const fail = (guard: Guard, ip: string, n: number) =>
  Effect.gen(function*() {
    let banned = false
    for (let i = 0; i < n; i++) banned = yield* guard.recordFailure(ip)
    return banned
  })

/** Every log record (message plus annotations) while `effect` runs. */
const withLogs = <A, E>(effect: (logs: Array<Record<string, unknown>>) => Effect.Effect<A, E>) => {
  const logs: Array<Record<string, unknown>> = []
  const capture = Logger.make((options) => {
    logs.push({ message: options.message, ...options.fiber.getRef(References.CurrentLogAnnotations) })
  })
  return effect(logs).pipe(Effect.provide(Logger.layer([capture])))
}

describe("ConnectionGuardMemory", () => {
  it.effect("caps unauthenticated connections in all and per IP; a released slot makes room, releasing twice frees one", () =>
    Effect.gen(function*() {
      const guard = yield* ConnectionGuardMemory.make({ maxPreAuthConnections: 5, maxPreAuthConnectionsPerIp: 3 })
      const a = [admitted(yield* guard.admit("10.0.0.1")), admitted(yield* guard.admit("10.0.0.1")), admitted(yield* guard.admit("10.0.0.1"))]
      assert.strictEqual(reason(yield* guard.admit("10.0.0.1")), "TooManyPreAuthFromIp")
      const b = [admitted(yield* guard.admit("10.0.0.2")), admitted(yield* guard.admit("10.0.0.2"))]
      assert.strictEqual(reason(yield* guard.admit("10.0.0.3")), "TooManyPreAuth", "5 in all")
      assert.strictEqual(reason(yield* guard.admit("10.0.0.2")), "TooManyPreAuth", "the global cap comes first")
      yield* a[0]!.release
      yield* a[0]!.release
      assert.strictEqual((yield* guard.stats).preAuthConnections, 4, "a second release changes nothing")
      assert.strictEqual(reason(yield* guard.admit("10.0.0.3")), "Admitted")
      assert.strictEqual(reason(yield* guard.admit("10.0.0.1")), "TooManyPreAuth")
      for (const slot of [...a, ...b]) yield* slot.release
      const stats = yield* guard.stats
      assert.deepStrictEqual([stats.preAuthConnections, stats.preAuthAddresses], [1, 1], "only 10.0.0.3's slot is left")
      assert.deepStrictEqual(stats.refused, { Banned: 0, TooManyPreAuth: 3, TooManyPreAuthFromIp: 1 })
    }))

  it.effect("zero turns each cap off, and zero maxFailures turns bans off", () =>
    Effect.gen(function*() {
      const guard = yield* ConnectionGuardMemory.make({ maxPreAuthConnections: 0, maxPreAuthConnectionsPerIp: 0, bans: { maxFailures: 0 } })
      for (let i = 0; i < 1000; i++) admitted(yield* guard.admit("10.0.0.1"))
      assert.isFalse(yield* fail(guard, "10.0.0.1", 100))
      assert.strictEqual(reason(yield* guard.admit("10.0.0.1")), "Admitted")
      assert.deepStrictEqual((yield* guard.stats).trackedAddresses, 0, "no failure is even recorded")
    }))

  it.effect("a ban needs maxFailures within the window; failures older than the window no longer count", () =>
    Effect.gen(function*() {
      const guard = yield* ConnectionGuardMemory.make({ bans: { maxFailures: 10, window: "1 minute", duration: "15 minutes" } })
      assert.isFalse(yield* fail(guard, "10.0.0.1", 9))
      yield* TestClock.adjust("59999 millis")
      assert.isTrue(yield* guard.recordFailure("10.0.0.1"), "the 10th failure, 1 ms inside the window of the first 9")
      assert.isTrue(yield* guard.isBanned("10.0.0.1"))

      assert.isFalse(yield* fail(guard, "10.0.0.2", 9))
      yield* TestClock.adjust("1 minute")
      assert.isFalse(yield* guard.recordFailure("10.0.0.2"), "the first 9 left the window exactly at 1 minute")
      assert.isFalse(yield* fail(guard, "10.0.0.2", 8))
      assert.isTrue(yield* guard.recordFailure("10.0.0.2"), "10 within the last minute")
      assert.isFalse(yield* guard.isBanned("10.0.0.3"), "other addresses are not affected")
    }))

  it.effect("a ban lasts exactly its duration: refused at the deadline − 1 ms, admitted at the deadline, failures counted afresh", () =>
    Effect.gen(function*() {
      const guard = yield* ConnectionGuardMemory.make({ bans: { maxFailures: 3, window: "1 minute", duration: "15 minutes" } })
      yield* TestClock.adjust("5 seconds")
      assert.isTrue(yield* fail(guard, "10.0.0.1", 3))
      assert.strictEqual(reason(yield* guard.admit("10.0.0.1")), "Banned")
      assert.deepStrictEqual(yield* guard.bans, [{ clientIp: "10.0.0.1", untilMs: 5_000 + 15 * 60_000 }])
      assert.isTrue(yield* guard.recordFailure("10.0.0.1"), "still banned: a failure does not extend the ban")
      yield* TestClock.adjust("899999 millis")
      assert.strictEqual(reason(yield* guard.admit("10.0.0.1")), "Banned")
      assert.isTrue(yield* guard.isBanned("10.0.0.1"))
      yield* TestClock.adjust("1 millis")
      assert.isFalse(yield* guard.isBanned("10.0.0.1"))
      assert.strictEqual(reason(yield* guard.admit("10.0.0.1")), "Admitted")
      assert.deepStrictEqual(yield* guard.bans, [])
      assert.isFalse(yield* fail(guard, "10.0.0.1", 2), "the failures before the ban are forgotten")
      assert.isTrue(yield* guard.recordFailure("10.0.0.1"))
    }))

  it.effect("a ban refuses before the caps; unban lifts it and forgets the failures; IPv4-mapped addresses are the same client", () =>
    Effect.gen(function*() {
      const guard = yield* ConnectionGuardMemory.make({ maxPreAuthConnections: 1, bans: { maxFailures: 2 } })
      const slot = admitted(yield* guard.admit("10.0.0.9"))
      assert.isFalse(yield* guard.recordFailure("::ffff:10.0.0.1"))
      assert.isTrue(yield* guard.recordFailure("10.0.0.1"), "the mapped and the plain form count together")
      assert.strictEqual(reason(yield* guard.admit("::ffff:10.0.0.1")), "Banned", "banned, even though the cap is also reached")
      assert.strictEqual(reason(yield* guard.admit("10.0.0.2")), "TooManyPreAuth")
      assert.isTrue(yield* guard.unban("::FFFF:10.0.0.1"))
      assert.isFalse(yield* guard.unban("10.0.0.1"), "not banned any more")
      yield* slot.release
      assert.strictEqual(reason(yield* guard.admit("10.0.0.1")), "Admitted")
      assert.isFalse(yield* guard.recordFailure("10.0.0.1"), "one failure after unban: the old one was forgotten")
      assert.strictEqual(clientKey("::ffff:1:2"), "::ffff:1:2", "an IPv6 address that merely starts like a mapped one is its own key")
    }))

  it.effect("memory is bounded: 50,000 failing addresses and 20,000 bans leave at most maxTrackedAddresses entries each", () =>
    Effect.gen(function*() {
      const guard = yield* ConnectionGuardMemory.make({ maxTrackedAddresses: 1000, bans: { maxFailures: 2, window: "1 minute", duration: "15 minutes" } })
      const ip = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`
      for (let i = 0; i < 50_000; i++) yield* guard.recordFailure(ip(i))
      let stats = yield* guard.stats
      assert.strictEqual(stats.trackedAddresses, 1000)
      assert.isTrue(yield* guard.recordFailure(ip(49_999)), "the newest addresses are kept: a second failure bans")
      assert.isFalse(yield* guard.recordFailure(ip(0)), "the oldest were evicted: this is a first failure again")
      for (let i = 100_000; i < 120_000; i++) yield* fail(guard, ip(i), 2)
      stats = yield* guard.stats
      assert.strictEqual(stats.bans, 1000)
      assert.isTrue(yield* guard.isBanned(ip(119_999)), "the newest bans are kept")
      assert.isFalse(yield* guard.isBanned(ip(100_000)), "the oldest ban made room")
      // Expired entries leave first: after the window and the ban, one new failure empties both tables of the old ones.
      yield* TestClock.adjust("15 minutes")
      yield* fail(guard, "192.0.2.1", 2)
      yield* guard.recordFailure("192.0.2.2")
      stats = yield* guard.stats
      assert.deepStrictEqual([stats.trackedAddresses, stats.bans], [1, 1])
    }))

  it.effect("refusals are logged at most once per interval, with the counts since the last line; a ban is one client_banned line", () =>
    withLogs((logs) =>
      Effect.gen(function*() {
        const guard = yield* ConnectionGuardMemory.make({ maxPreAuthConnections: 1, bans: { maxFailures: 2, window: "1 minute", duration: "15 minutes" } })
        admitted(yield* guard.admit("10.0.0.1"))
        for (let i = 0; i < 10_000; i++) yield* guard.admit("10.0.0.2")
        yield* TestClock.adjust("10 seconds")
        yield* fail(guard, "10.0.0.3", 2)
        for (let i = 0; i < 5; i++) yield* guard.admit("10.0.0.3")
        yield* guard.admit("10.0.0.4")
        const refusals = logs.filter((l) => l["event"] === "connections_refused")
        assert.deepStrictEqual(refusals.map((l) => [l["lastClientIp"], l["addresses"], l["tooManyPreAuth"], l["banned"]]), [
          ["10.0.0.2", 1, 1, 0],
          ["10.0.0.3", 2, 9_999, 1]
        ])
        const bans = logs.filter((l) => l["event"] === "client_banned")
        assert.deepStrictEqual(bans.map((l) => [l["clientIp"], l["until"]]), [["10.0.0.3", new Date(10_000 + 15 * 60_000).toISOString()]])
        assert.isAtMost(logs.length, 3)
      })))
})
