/**
 * ChannelChunks: chunks pushed in one burst arrive as one batch; a batch over
 * the limit pauses the channel until it is taken; a clean end gives an empty
 * batch after the last bytes; a close before the end fails.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { PassThrough } from "node:stream"
import * as ChannelChunks from "../../src/protocols/sftp/ChannelChunks.js"

const broken = () => "broken" as const

describe("ChannelChunks", () => {
  it.effect("takes the chunks of one burst together, then an empty batch at the end", () =>
    Effect.gen(function*() {
      const channel = new PassThrough()
      const chunks = ChannelChunks.make(channel, 1024, broken)
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
      const chunks = ChannelChunks.make(channel, 8, broken)
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
      const chunks = ChannelChunks.make(channel, 1024, broken)
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
      const chunks = ChannelChunks.make(channel, 1024, broken)
      setImmediate(() => channel.write(Buffer.from("late")))
      const batch = yield* chunks.next
      assert.strictEqual(Buffer.concat([...batch]).toString(), "late")
      yield* chunks.release
    }))
})
