/**
 * GatheredIo on real files: requests arriving while a call runs are gathered
 * into runs of adjacent ranges (checked by counting the calls that reach the
 * kernel through node:fs), short reads end later requests at EOF, errors reach
 * every request of a run, and appends stay in arrival order.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as GatheredIo from "../../src/layers/GatheredIo.js"

const tempFile = (content: Buffer) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gathered-"))
  const file = path.join(dir, "f")
  fs.writeFileSync(file, content)
  return { file, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) }
}

const pattern = (size: number) => Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + 3) & 0xff))

/** The real fs.readv/fs.writev, counted. */
const counted = () => {
  const calls = { readv: 0, writev: 0 }
  const sys: GatheredIo.VectorIo = {
    readv: ((...args: Parameters<typeof fs.readv>) => {
      calls.readv++
      return (fs.readv as (...a: Parameters<typeof fs.readv>) => void)(...args)
    }) as typeof fs.readv,
    writev: ((...args: Parameters<typeof fs.writev>) => {
      calls.writev++
      return (fs.writev as (...a: Parameters<typeof fs.writev>) => void)(...args)
    }) as typeof fs.writev
  }
  return { calls, sys }
}

describe("GatheredIo", () => {
  it.live("gathers reads that arrive while one runs; bytes land in each request's buffer", () =>
    Effect.promise(async () => {
      const content = pattern(64 * 1024 + 100)
      const { cleanup, file } = tempFile(content)
      const fd = fs.openSync(file, "r")
      try {
        const { calls, sys } = counted()
        const io = GatheredIo.make(fd, { append: false, sys })
        const result = await Promise.all(Array.from({ length: 9 }, (_, i) => {
          const into = Buffer.alloc(8 * 1024)
          return io.read(i * 8 * 1024, into).then((bytes) => into.subarray(0, bytes))
        }))
        // The first alone, the other eight in one run: the last gets the 100 bytes before EOF.
        assert.strictEqual(calls.readv, 2)
        assert.deepStrictEqual(result.map((r) => r.length), [8192, 8192, 8192, 8192, 8192, 8192, 8192, 8192, 100])
        assert.isTrue(Buffer.concat(result).equals(content))
        // Past the end: zero bytes.
        assert.strictEqual(await io.read(content.length + 10, Buffer.alloc(16)), 0)
      } finally {
        fs.closeSync(fd)
        cleanup()
      }
    }))

  it.live("keeps separate ranges apart: overlapping and distant reads each get their own bytes", () =>
    Effect.promise(async () => {
      const content = pattern(100_000)
      const { cleanup, file } = tempFile(content)
      const fd = fs.openSync(file, "r")
      try {
        const io = GatheredIo.make(fd, { append: false })
        const ranges = [[0, 10], [50_000, 4096], [5, 10], [90_000, 20_000], [10, 1]] as const
        const out = await Promise.all(ranges.map(([offset, length]) => {
          const into = Buffer.alloc(length)
          return io.read(offset, into).then((bytes) => into.subarray(0, bytes))
        }))
        ranges.forEach(([offset, length], i) =>
          assert.isTrue(out[i]!.equals(content.subarray(offset, Math.min(offset + length, content.length))), `range ${i}`))
      } finally {
        fs.closeSync(fd)
        cleanup()
      }
    }))

  it.live("gathers writes into pwritev runs, and the file holds every byte", () =>
    Effect.promise(async () => {
      const { cleanup, file } = tempFile(Buffer.alloc(0))
      const fd = fs.openSync(file, "r+")
      try {
        const { calls, sys } = counted()
        const io = GatheredIo.make(fd, { append: false, sys })
        const content = pattern(12 * 32 * 1024)
        const parts = Array.from({ length: 12 }, (_, i) => content.subarray(i * 32 * 1024, (i + 1) * 32 * 1024))
        // Out of order: the gatherer sorts by offset.
        const order = [0, 5, 3, 4, 1, 2, 11, 10, 9, 6, 7, 8]
        await Promise.all(order.map((i) => io.write(i * 32 * 1024, parts[i]!)))
        assert.strictEqual(calls.writev, 2)
        assert.isTrue(fs.readFileSync(file).equals(content))
      } finally {
        fs.closeSync(fd)
        cleanup()
      }
    }))

  it.live("an error reaches every request of the run", () =>
    Effect.promise(async () => {
      const { cleanup, file } = tempFile(pattern(1000))
      const fd = fs.openSync(file, "r") // read-only: writes fail with EBADF
      try {
        const io = GatheredIo.make(fd, { append: false })
        const results = await Promise.allSettled([0, 10, 20].map((offset) => io.write(offset, Buffer.alloc(10, 1))))
        assert.deepStrictEqual(results.map((r) => r.status), ["rejected", "rejected", "rejected"])
        assert.deepStrictEqual(results.map((r) => r.status === "rejected" ? (r.reason as NodeJS.ErrnoException).code : ""), ["EBADF", "EBADF", "EBADF"])
      } finally {
        fs.closeSync(fd)
        cleanup()
      }
    }))

  it.live("appends go one at a time, in arrival order", () =>
    Effect.promise(async () => {
      const { cleanup, file } = tempFile(Buffer.from("start:"))
      const fd = fs.openSync(file, "a")
      try {
        const io = GatheredIo.make(fd, { append: true })
        // The offsets say nothing on an O_APPEND fd; arrival order is the order in the file.
        await Promise.all(["c", "a", "b"].map((s, i) => io.write(100 - i, Buffer.from(s))))
        assert.strictEqual(fs.readFileSync(file, "utf8"), "start:cab")
      } finally {
        fs.closeSync(fd)
        cleanup()
      }
    }))
})
