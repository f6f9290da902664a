/**
 * argon2id computations are rationed (PasswordHash.argon2Concurrency) so that
 * password checks never hold every thread of libuv's pool, which every file
 * call of every session needs too. These tests order events instead of timing
 * them: a check with the hashes below keeps a pool thread for a tenth of a
 * second or more, a stat for microseconds, so a stat made while checks are
 * pending ends first exactly when it found a free thread.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as fs from "node:fs"
import * as PasswordHash from "../../src/layers/PasswordHash.js"

const b64 = (bytes: Buffer) => bytes.toString("base64").replace(/=+$/, "")

/** A valid argon2id hash of 64 MiB and `passes` passes, whose tag matches no password. */
const hashWithPasses = (passes: number) =>
  `$argon2id$v=19$m=65536,t=${passes},p=1$${b64(Buffer.alloc(16, 1))}$${b64(Buffer.alloc(32, 2))}`

const slowHash = hashWithPasses(12)
const quickerHash = hashWithPasses(3)

/** Checks a wrong password against `hash`, then notes that it ended. */
const check = (ended: Array<string>, hash: string) =>
  PasswordHash.verifyPassword("wrong guess", hash).pipe(
    Effect.tap((matched) => Effect.sync(() => ended.push(matched ? "matched" : "check")))
  )

/** Starts at once, so that a check has taken its slot (or queued for one) when this returns. */
const start = <A>(effect: Effect.Effect<A>) => Effect.forkChild(effect, { startImmediately: true })

/** A stat on the thread pool (node:fs), noted when it ends. */
const stat = (ended: Array<string>) =>
  Effect.callback<void>((resume) => {
    fs.stat(".", () => {
      ended.push("stat")
      resume(Effect.void)
    })
  })

describe("PasswordHash: argon2id and the thread pool", () => {
  it.live("rations argon2id to half of libuv's default pool of 4 threads", () =>
    Effect.sync(() => {
      // The tests below rely on this: the vitest workers run with libuv's default pool.
      assert.isUndefined(process.env["UV_THREADPOOL_SIZE"], "run the tests without UV_THREADPOOL_SIZE")
      assert.strictEqual(PasswordHash.argon2Concurrency, 2)
    }))

  it.live("a wave of password checks leaves pool threads free for file calls", () =>
    Effect.gen(function*() {
      const ended: Array<string> = []
      const checks = yield* Effect.forEach(Array.from({ length: 8 }), () => start(check(ended, quickerHash)))
      yield* stat(ended)
      assert.deepStrictEqual(ended, ["stat"], "the stat waited for a check to end")
      yield* Fiber.joinAll(checks)
      assert.deepStrictEqual(ended, ["stat", ...Array.from({ length: 8 }, () => "check")])
    }))

  it.live("an abandoned check keeps its slot until its computation ends", () =>
    Effect.gen(function*() {
      const ended: Array<string> = []
      // Two logins abandoned mid-check (a client that disconnects): their
      // computations go on in the pool, so their slots must stay taken.
      const abandoned = yield* Effect.forEach([1, 2], () => start(check(ended, slowHash)))
      const interruptions = yield* Effect.forEach(abandoned, (fiber) => start(Fiber.interrupt(fiber)))
      const next = yield* Effect.forEach([1, 2], () => start(check(ended, quickerHash)))
      yield* stat(ended)
      assert.deepStrictEqual(ended, ["stat"], "the stat waited for a check to end")
      yield* Fiber.joinAll(interruptions)
      yield* Fiber.joinAll(next)
      assert.deepStrictEqual(ended, ["stat", "check", "check"])
    }))
})
