/**
 * ChannelChunks: chunks pushed in one burst arrive as one batch; a batch over
 * the limit pauses the channel until it is taken; a clean end gives an empty
 * batch after the last bytes; a close before the end fails. Each chunk is
 * framed when it arrives and reported to `onFramed` before the next one; a
 * framing failure comes after the items framed before it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Result } from "effect"
import { PassThrough } from "node:stream"
import * as ChannelChunks from "../../src/protocols/sftp/ChannelChunks.js"

const broken = () => "broken" as const

/** Reads `channel` with each chunk as its own item. */
const chunksOf = (channel: PassThrough, maxBatchBytes: number) =>
  ChannelChunks.make(channel, { maxBatchBytes, frame: (chunk) => Result.succeed([chunk]), onBroken: broken })

describe("ChannelChunks", () => {
  it.effect("takes the chunks of one burst together, then an empty batch at the end", () =>
    Effect.gen(function*() {
      const channel = new PassThrough()
      const chunks = chunksOf(channel, 1024)
      channel.write(Buffer.from("one"))
      channel.write(Buffer.from("two"))
      const first = yield* chunks.next
      assert.deepStrictEqual(Buffer.concat([...first]).toString(), "onetwo")
      channel.end(Buffer.from("three"))
      const second = yield* chunks.next
      assert.strictEqual(Buffer.concat([...second]).toString(), "three")
      assert.deepStrictEqual(yield* chunks.next, [])
      yield* chunks.release
    }))

  it.effect("pauses the channel while a full batch waits, and resumes it when taken", () =>
    Effect.gen(function*() {
      const channel = new PassThrough({ highWaterMark: 16 })
      const chunks = chunksOf(channel, 8)
      channel.write(Buffer.alloc(10, 1))
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      assert.isTrue(channel.isPaused(), "a batch over the limit pauses the channel")
      // Paused: what the writer adds stays in the stream's buffer, which pushes back on the writer.
      const accepted = channel.write(Buffer.alloc(32, 2))
      assert.isFalse(accepted)
      const batch = yield* chunks.next
      assert.strictEqual(Buffer.concat([...batch]).length, 10)
      assert.isFalse(channel.isPaused())
      const rest = yield* chunks.next
      assert.strictEqual(Buffer.concat([...rest]).length, 32)
      yield* chunks.release
    }))

  it.effect("fails when the channel closes before its end, after the bytes already received", () =>
    Effect.gen(function*() {
      const channel = new PassThrough()
      const chunks = chunksOf(channel, 1024)
      channel.write(Buffer.from("partial"))
      const first = yield* chunks.next
      assert.strictEqual(Buffer.concat([...first]).toString(), "partial")
      channel.destroy()
      const exit = yield* Effect.exit(chunks.next)
      assert.deepStrictEqual(exit, Exit.fail("broken"))
      yield* chunks.release
    }))

  it.effect("a waiting take is woken by the first chunk", () =>
    Effect.gen(function*() {
      const channel = new PassThrough()
      const chunks = chunksOf(channel, 1024)
      setImmediate(() => channel.write(Buffer.from("late")))
      const batch = yield* chunks.next
      assert.strictEqual(Buffer.concat([...batch]).toString(), "late")
      yield* chunks.release
    }))

  it.effect("frames each chunk on arrival and reports it before the next one arrives", () =>
    Effect.gen(function*() {
      const channel = new PassThrough()
      const events: Array<string> = []
      const chunks = ChannelChunks.make(channel, {
        maxBatchBytes: 1024,
        frame: (chunk) => {
          events.push(`frame ${chunk.toString()}`)
          return Result.succeed(chunk.length > 1 ? [Buffer.from(chunk.subarray(0, 1)), Buffer.from(chunk.subarray(1))] : [])
        },
        onBroken: broken,
        onFramed: (chunk) => events.push(`framed ${chunk.toString()}`)
      })
      channel.write(Buffer.from("ab"))
      channel.write(Buffer.from("c"))
      channel.write(Buffer.from("de"))
      const batch = yield* chunks.next
      assert.deepStrictEqual(batch.map((item) => item.toString()), ["a", "b", "d", "e"], "a chunk that completes nothing adds nothing")
      assert.deepStrictEqual(events, ["frame ab", "framed ab", "frame c", "framed c", "frame de", "framed de"])
      yield* chunks.release
    }))

  it.effect("a framing failure comes after the items framed before it, and later chunks are ignored", () =>
    Effect.gen(function*() {
      const channel = new PassThrough()
      const framed: Array<string> = []
      const chunks = ChannelChunks.make(channel, {
        maxBatchBytes: 1024,
        frame: (chunk) => (chunk.toString() === "bad" ? Result.fail("unframable" as const) : Result.succeed([chunk])),
        onBroken: () => "broken" as const,
        onFramed: (chunk) => framed.push(chunk.toString())
      })
      channel.write(Buffer.from("good"))
      channel.write(Buffer.from("bad"))
      channel.write(Buffer.from("late"))
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      const batch = yield* chunks.next
      assert.deepStrictEqual(batch.map((item) => item.toString()), ["good"])
      assert.deepStrictEqual(yield* Effect.exit(chunks.next), Exit.fail<"broken" | "unframable">("unframable"))
      assert.deepStrictEqual(framed, ["good", "bad"], "nothing is framed after the failure")
      yield* chunks.release
    }))
})
