import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Result, Scope } from "effect"
import { InvalidPortRange, makePassivePortPool, parsePortRange, PortsExhausted } from "../../src/protocols/ftp/PassivePorts.js"

describe("parsePortRange", () => {
  it("accepts low-high within 1024..65535", () => {
    assert.deepStrictEqual(parsePortRange("50000-50100"), Result.succeed({ low: 50000, high: 50100 }))
    assert.deepStrictEqual(parsePortRange("1024-65535"), Result.succeed({ low: 1024, high: 65535 }))
    assert.deepStrictEqual(parsePortRange("2121-2121"), Result.succeed({ low: 2121, high: 2121 }))
  })

  it("refuses privileged, reversed, out-of-range and malformed ranges", () => {
    for (const input of ["1023-2000", "0-100", "2000-1999", "60000-65536", "50000-99999", "", "50000", "50000-", "-50000",
      " 50000-50100", "50000-50100 ", "50000 - 50100", "+5000-6000", "5e4-6e4", "50000-50100-50200", "050000-50100", "0x1000-0x2000"]) {
      const parsed = parsePortRange(input)
      assert.isTrue(Result.isFailure(parsed), input)
      if (Result.isFailure(parsed)) assert.instanceOf(parsed.failure, InvalidPortRange)
    }
  })

  it("makePassivePortPool throws on a range the config should have refused", () => {
    assert.throws(() => makePassivePortPool("100-200"))
    assert.throws(() => makePassivePortPool({ low: 3000, high: 2000 }))
  })
})

describe("PassivePortPool", () => {
  it.effect("reserves distinct ports of the range until it is exhausted, and frees them with the scope", () =>
    Effect.gen(function*() {
      const pool = makePassivePortPool("40000-40002")
      const scope = yield* Scope.make()
      const ports = new Set<number>()
      for (let i = 0; i < 3; i++) ports.add(yield* pool.reserve.pipe(Scope.provide(scope)))
      assert.deepStrictEqual([...ports].sort(), [40000, 40001, 40002])
      assert.strictEqual(pool.reserved(), 3)
      const error = yield* Effect.flip(Effect.scoped(pool.reserve))
      assert.instanceOf(error, PortsExhausted)
      assert.strictEqual(error.size, 3)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(pool.reserved(), 0)
      const again = yield* Effect.scoped(pool.reserve)
      assert.isTrue(again >= 40000 && again <= 40002)
    }))

  it.effect("a failed reservation holds nothing", () =>
    Effect.gen(function*() {
      const pool = makePassivePortPool("40000-40000")
      const scope = yield* Scope.make()
      yield* pool.reserve.pipe(Scope.provide(scope))
      for (let i = 0; i < 5; i++) yield* Effect.flip(Effect.scoped(pool.reserve))
      assert.strictEqual(pool.reserved(), 1)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(pool.reserved(), 0)
    }))

  it.effect("picks ports at random, not in sequence", () =>
    Effect.gen(function*() {
      const pool = makePassivePortPool("1024-65535")
      const picks: Array<number> = []
      for (let i = 0; i < 64; i++) picks.push(yield* Effect.scoped(pool.reserve))
      const sequential = picks.every((port, i) => i === 0 || port === picks[i - 1]! + 1)
      assert.isFalse(sequential)
      // 64 picks among 64512 ports: a repeat or a cluster would betray a predictable generator.
      assert.isAbove(new Set(picks).size, 60)
      assert.isAbove(Math.max(...picks) - Math.min(...picks), 10_000)
    }))

  it.effect("every free port can come out, also when the range is almost full", () =>
    Effect.gen(function*() {
      const pool = makePassivePortPool("40000-40099")
      const scope = yield* Scope.make()
      const held = new Set<number>()
      // Fill 97 of 100 ports; then the three left must each be drawn over repeated single reservations.
      while (held.size < 97) held.add(yield* pool.reserve.pipe(Scope.provide(scope)))
      const free = new Set<number>()
      for (let port = 40000; port <= 40099; port++) if (!held.has(port)) free.add(port)
      const seen = new Set<number>()
      for (let i = 0; i < 300; i++) {
        const port = yield* Effect.scoped(pool.reserve)
        assert.isTrue(free.has(port), `port ${port} was already reserved`)
        seen.add(port)
      }
      assert.deepStrictEqual([...seen].sort(), [...free].sort())
      yield* Scope.close(scope, Exit.void)
    }))

  it.effect("without a range it hands out port 0 and still counts reservations", () =>
    Effect.gen(function*() {
      const pool = makePassivePortPool()
      assert.isUndefined(pool.range)
      const scope = yield* Scope.make()
      assert.strictEqual(yield* pool.reserve.pipe(Scope.provide(scope)), 0)
      assert.strictEqual(yield* pool.reserve.pipe(Scope.provide(scope)), 0)
      assert.strictEqual(pool.reserved(), 2)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(pool.reserved(), 0)
    }))

  it.effect("10,000 reservations whose scopes close keep the count bounded", () =>
    Effect.gen(function*() {
      const pool = makePassivePortPool("40000-40015")
      let peak = 0
      // Up to four held at once, like sessions issuing PASV after PASV.
      const open: Array<Scope.Closeable> = []
      for (let i = 0; i < 10_000; i++) {
        const scope = yield* Scope.make()
        yield* pool.reserve.pipe(Scope.provide(scope))
        open.push(scope)
        peak = Math.max(peak, pool.reserved())
        if (open.length > 4) yield* Scope.close(open.shift()!, Exit.void)
      }
      for (const scope of open) yield* Scope.close(scope, Exit.void)
      assert.strictEqual(peak, 5)
      assert.strictEqual(pool.reserved(), 0)
    }))
})
