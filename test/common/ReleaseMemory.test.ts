/**
 * ReleaseMemory: a buffer that owns its ArrayBuffer is freed at once; pooled
 * buffers, views and shared memory are never touched, and a socket that
 * releases what it wrote still delivers every byte.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as net from "node:net"
import { release, releaseWritten } from "../../src/protocols/common/ReleaseMemory.js"

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")

describe("release", () => {
  it("frees a buffer that owns its whole ArrayBuffer", () => {
    const chunk = Buffer.allocUnsafe(64 * 1024)
    const backing = chunk.buffer
    release(chunk)
    assert.isTrue(backing.detached)
    assert.strictEqual(chunk.length, 0)
    release(chunk) // a second release is harmless
  })

  it("leaves pooled buffers and their neighbours alone", () => {
    const a = Buffer.from("first pooled")
    const b = Buffer.from("second pooled")
    assert.strictEqual(a.buffer, b.buffer, "both come from Node's shared pool")
    release(a)
    assert.isFalse(a.buffer.detached)
    assert.strictEqual(a.toString(), "first pooled")
    assert.strictEqual(b.toString(), "second pooled")
  })

  it("leaves views of a larger buffer alone", () => {
    const whole = Buffer.alloc(64 * 1024, 7)
    const view = whole.subarray(16)
    release(view)
    assert.isFalse(whole.buffer.detached)
    assert.strictEqual(view[0], 7)
  })

  it("leaves shared memory alone", () => {
    const shared = new Uint8Array(new SharedArrayBuffer(64 * 1024))
    release(shared)
    assert.strictEqual(shared.length, 64 * 1024)
  })
})

describe("releaseWritten", () => {
  it.live("delivers every byte, then frees the whole buffers written", () =>
    Effect.promise(async () => {
      const server = net.createServer()
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
      const port = (server.address() as net.AddressInfo).port
      const received: Array<Buffer> = []
      const done = new Promise<void>((resolve) =>
        server.once("connection", (peer) => {
          peer.on("data", (chunk: Buffer) => received.push(chunk))
          peer.on("end", resolve)
        })
      )
      const socket = net.connect(port, "127.0.0.1")
      await new Promise<void>((resolve) => socket.once("connect", resolve))
      releaseWritten(socket)
      const big = randomBytes(1024 * 1024)
      const expected = sha256(Buffer.concat([big, Buffer.from("tail")]))
      const pooled = Buffer.from("tail")
      const bigBacking = big.buffer
      // Corked: the two go out through _writev; the first write alone through _write.
      const single = randomBytes(256 * 1024)
      const singleCopy = Buffer.from(single)
      await new Promise<void>((resolve) => socket.write(single, () => resolve()))
      assert.isTrue(single.buffer.detached)
      socket.cork()
      socket.write(big)
      socket.write(pooled)
      process.nextTick(() => socket.uncork())
      await new Promise<void>((resolve) => socket.end(resolve))
      await done
      server.close()
      const all = Buffer.concat(received)
      assert.strictEqual(all.length, singleCopy.length + 1024 * 1024 + 4)
      assert.isTrue(all.subarray(0, singleCopy.length).equals(singleCopy))
      assert.strictEqual(sha256(all.subarray(singleCopy.length)), expected)
      assert.isTrue(bigBacking.detached)
      assert.strictEqual(pooled.toString(), "tail")
    }))

  it.live("hands each chunk to `reuse` only once the kernel has its bytes, and frees only what reuse declines", () =>
    Effect.promise(async () => {
      const server = net.createServer()
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
      const port = (server.address() as net.AddressInfo).port
      const accepted = new Promise<net.Socket>((resolve) =>
        server.once("connection", (peer) => {
          peer.pause() // nothing is read until the writes below are stuck in user space
          resolve(peer)
        })
      )
      const socket = net.connect(port, "127.0.0.1")
      await new Promise<void>((resolve) => socket.once("connect", resolve))
      const peer = await accepted
      const handed: Array<Uint8Array> = []
      const kept = new Set<Uint8Array>()
      // Reuse overwrites a chunk at once, as the next packet would: had the kernel
      // not taken its bytes yet, the peer would receive 0xee instead.
      releaseWritten(socket, (chunk) => {
        handed.push(chunk)
        if (!kept.has(chunk)) return false
        chunk.fill(0xee)
        return true
      })
      // 64 MiB is far more than both kernel socket buffers hold, so some writes wait.
      const chunks = Array.from({ length: 64 }, () => randomBytes(1024 * 1024))
      for (const chunk of chunks.filter((_, i) => i % 2 === 0)) kept.add(chunk)
      const copies = chunks.map((chunk) => Buffer.from(chunk))
      const received: Array<Buffer> = []
      const ended = new Promise<void>((resolve) => {
        peer.on("data", (chunk: Buffer) => received.push(chunk))
        peer.on("end", resolve)
      })
      let flushed = 0
      socket.cork()
      for (const chunk of chunks.slice(0, 32)) socket.write(chunk, () => void flushed++)
      process.nextTick(() => socket.uncork())
      for (const chunk of chunks.slice(32)) socket.write(chunk, () => void flushed++)
      // Once the corked batch went out (the uncork above runs first), 64 MiB cannot all be in
      // the kernel's buffers of a peer that reads nothing: no waiting needed to see writes pending.
      await new Promise((resolve) => process.nextTick(resolve))
      assert.isBelow(flushed, 64, "writes are waiting for the peer")
      assert.isBelow(handed.length, 64, "chunks still being written were not handed over")
      peer.resume()
      await new Promise<void>((resolve) => socket.end(resolve))
      await ended
      server.close()
      assert.strictEqual(handed.length, 64, "each chunk handed over once")
      assert.strictEqual(new Set(handed).size, 64)
      assert.isTrue(Buffer.concat(received).equals(Buffer.concat(copies)), "every byte, in order")
      for (const [i, chunk] of chunks.entries()) assert.strictEqual(chunk.buffer.detached, !kept.has(chunk), `chunk ${i}`)
    }))
})

