/**
 * InboundBuffers on a real ssh2 connection over TCP: channel data read through
 * ChannelChunks arrives intact, and the socket reads and packet buffers it came
 * in are freed once it was copied out, with both ciphers the server prefers,
 * across key re-exchanges, and while a slow consumer keeps the channel paused.
 * (Re-exchanges started by OpenSSH's client are in OpenSSH.test.ts.)
 * These tests pin the ssh2 internals the module relies on: if an ssh2 update
 * changes them, the freed share drops to zero and they fail.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import * as crypto from "node:crypto"
import type { AddressInfo } from "node:net"
import ssh2 from "ssh2"
import * as ChannelChunks from "../../src/protocols/sftp/ChannelChunks.js"
import * as InboundBuffers from "../../src/protocols/sftp/InboundBuffers.js"
import { validHostKey } from "../utils/FtpRawClient.js"

const MiB = 1024 * 1024

interface Received {
  /** sha256 of the channel data, in order. */
  readonly digest: string
  readonly bytes: number
  /** Reads cut inside a tag (`cutTags`). */
  readonly cuts: number
  /** Bytes of channel data whose underlying buffer was freed by the end. */
  readonly freedBytes: number
}

interface Transfer {
  readonly cipher: ssh2.CipherAlgorithm
  readonly bytes: number
  /** Key re-exchanges the server starts, spread over the upload. */
  readonly rekeys: number
  /** When set, the consumer takes a batch only every few event-loop turns and the batch limit is this small. */
  readonly slowConsumerBatch?: number
  /** Attach only once the client is authenticated (too late: nothing may be freed). */
  readonly attachLate?: boolean
  /**
   * AES-GCM only: cut reads that start with a packet in the middle of its
   * authentication tag, so that ssh2 keeps the decrypted-in-place packet of one
   * read until the next one completes its tag (see `cutInTags`).
   */
  readonly cutTags?: boolean
}

/** Waits `turns` turns of the event loop (a slow consumer, without timers). */
const turns = (count: number) =>
  Effect.promise(() =>
    new Promise<void>((resolve) => {
      const step = (left: number) => (left === 0 ? resolve() : setImmediate(() => step(left - 1)))
      step(count)
    })
  )

/** A copy of `bytes` in an ArrayBuffer of its own, as Node's socket reads are. */
const ownCopy = (bytes: Uint8Array): Buffer => {
  const copy = Buffer.from(new ArrayBuffer(bytes.length))
  copy.set(bytes)
  return copy
}

/**
 * Cuts every read in the middle of the authentication tag of each AES-GCM packet
 * that starts in it (the packet length is in clear with GCM, and the decipher's
 * state says where the read's first packet ends), so ssh2 keeps each packet
 * decrypted in place in one piece until the next piece completes its tag. Wraps
 * the protocol's `parse` outside InboundBuffers' own wrapper; counts the cuts.
 */
const cutInTags = (client: ssh2.Connection): { readonly cuts: () => number } => {
  interface GcmDecipher {
    readonly _lenBytes: number
    readonly _len: number
    readonly _pktLen: number
    readonly _tagPos: number
  }
  interface Internals {
    parse: (chunk: Buffer, start: number, end: number) => void
    readonly _decipher?: GcmDecipher
  }
  const protocol = Reflect.get(client, "_protocol") as Internals
  const parse = protocol.parse
  let cuts = 0
  protocol.parse = (chunk, start, end) => {
    const decipher = protocol._decipher
    if (decipher?.constructor.name !== "AESGCMDecipherBinding" || (decipher._lenBytes !== 0 && decipher._lenBytes !== 4)) {
      return parse.call(protocol, chunk, start, end)
    }
    const feed = (from: number, to: number) => {
      const piece = ownCopy(chunk.subarray(from, to))
      parse.call(protocol, piece, 0, piece.length)
    }
    let boundary = decipher._lenBytes === 0 ? start : start + decipher._len - decipher._pktLen + 16 - decipher._tagPos
    let from = start
    while (boundary + 4 <= end) {
      const cut = boundary + 4 + chunk.readUInt32BE(boundary) + 8
      if (cut >= end) break
      feed(from, cut)
      cuts++
      from = cut
      boundary = cut + 8
    }
    if (from === start) parse.call(protocol, chunk, start, end)
    else feed(from, end)
  }
  return { cuts: () => cuts }
}

/** Serves one connection: reads the first session channel with ChannelChunks until its end. */
const serveOnce = (server: ssh2.Server, transfer: Transfer) =>
  Effect.callback<Received, Error>((resume) => {
    server.once("connection", (client) => {
      let inbound = transfer.attachLate ? undefined : InboundBuffers.attach(client)
      const cutter = transfer.cutTags ? cutInTags(client) : undefined
      client.on("error", (error) => resume(Effect.fail(error)))
      client.on("authentication", (ctx) => ctx.accept())
      client.on("ready", () => {
        if (transfer.attachLate) inbound = InboundBuffers.attach(client)
      })
      client.on("session", (accept) => {
        accept().on("subsystem", (acceptSubsystem) => {
          const channel: ssh2.ServerChannel = acceptSubsystem()
          const hash = crypto.createHash("sha256")
          const seen: Array<{ readonly buffer: ArrayBufferLike; readonly length: number }> = []
          let bytes = 0
          const rekeyEvery = Math.floor(transfer.bytes / (transfer.rekeys + 1))
          let nextRekey = transfer.rekeys > 0 ? rekeyEvery : Infinity
          const chunks = ChannelChunks.make(channel, {
            maxBatchBytes: transfer.slowConsumerBatch ?? 4 * MiB,
            frame: (chunk) => {
              hash.update(chunk)
              bytes += chunk.length
              seen.push({ buffer: chunk.buffer, length: chunk.length })
              if (bytes >= nextRekey) {
                nextRekey += rekeyEvery
                client.rekey()
              }
              return Result.succeed([Buffer.from(chunk)])
            },
            onBroken: () => new Error("channel broken"),
            onFramed: (chunk) => inbound?.framed(chunk)
          })
          const readAll = Effect.gen(function*() {
            while ((yield* chunks.next).length > 0) {
              if (transfer.slowConsumerBatch !== undefined) yield* turns(3)
            }
            yield* chunks.release
            channel.end()
            const freedBytes = seen.reduce((sum, chunk) => sum + (chunk.buffer.byteLength === 0 ? chunk.length : 0), 0)
            return { digest: hash.digest("hex"), bytes, freedBytes, cuts: cutter?.cuts() ?? 0 }
          })
          Effect.runFork(readAll.pipe(Effect.matchEffect({
            onFailure: (error) => Effect.sync(() => resume(Effect.fail(error))),
            onSuccess: (received) => Effect.sync(() => resume(Effect.succeed(received)))
          })))
        })
      })
    })
  })

/** Uploads `data` over an sftp subsystem channel in 64 KiB writes. */
const upload = (port: number, transfer: Transfer, data: Buffer) =>
  Effect.acquireRelease(
    Effect.callback<ssh2.Client, Error>((resume) => {
      const client = new ssh2.Client()
      client.on("error", (error) => resume(Effect.fail(error)))
      client.on("ready", () =>
        client.subsys("sftp", (error, stream) => {
          if (error) return resume(Effect.fail(error))
          const step = 64 * 1024
          let offset = 0
          const writeMore = (): void => {
            while (offset < data.length) {
              const chunk = data.subarray(offset, offset + step)
              offset += chunk.length
              if (!stream.write(chunk)) return void stream.once("drain", writeMore)
            }
            stream.end()
          }
          stream.on("close", () => resume(Effect.succeed(client)))
          stream.resume()
          writeMore()
        }))
      client.connect({
        host: "127.0.0.1",
        port,
        username: "u",
        password: "p",
        algorithms: { cipher: [transfer.cipher] },
        readyTimeout: 20_000
      })
    }),
    (client) => Effect.sync(() => client.end())
  )

const run = (transfer: Transfer) =>
  Effect.gen(function*() {
    const server = new ssh2.Server({ hostKeys: [validHostKey()], algorithms: { compress: ["none"] } })
    yield* Effect.addFinalizer(() => Effect.sync(() => server.close()))
    yield* Effect.callback<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void)))
    const port = (server.address() as AddressInfo).port
    const data = crypto.randomBytes(transfer.bytes)
    const [received] = yield* Effect.all([serveOnce(server, transfer), upload(port, transfer, data)], { concurrency: 2 })
    assert.strictEqual(received.bytes, data.length)
    assert.strictEqual(received.digest, crypto.createHash("sha256").update(data).digest("hex"), "the data arrived intact")
    return received
  }).pipe(Effect.scoped)

describe("InboundBuffers", () => {
  for (const cipher of ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"] as const) {
    it.live(`${cipher}: the reads behind channel data are freed once it is copied out`, () =>
      Effect.gen(function*() {
        const received = yield* run({ cipher, bytes: 16 * MiB, rekeys: 0 })
        assert.isAbove(received.freedBytes / received.bytes, 0.95, `freed ${received.freedBytes} of ${received.bytes}`)
      }))

    it.live(`${cipher}: key re-exchanges in the middle of the data keep it intact`, () =>
      Effect.gen(function*() {
        const received = yield* run({ cipher, bytes: 16 * MiB, rekeys: 6 })
        assert.isAbove(received.freedBytes / received.bytes, 0.5, `freed ${received.freedBytes} of ${received.bytes}`)
      }))
  }

  it.live("a consumer slower than the client: the paused channel's buffered data stays intact", () =>
    Effect.gen(function*() {
      const received = yield* run({ cipher: "aes128-gcm@openssh.com", bytes: 8 * MiB, rekeys: 2, slowConsumerBatch: 64 * 1024 })
      // What the paused stream buffered cannot be freed; what arrived while flowing can.
      assert.isAbove(received.freedBytes, 0, "some reads were freed")
      assert.isBelow(received.freedBytes, received.bytes, "buffered data was not freed")
    }))

  it.live("a packet whose tag ends in the next read is kept until then (aes128-gcm)", () =>
    Effect.gen(function*() {
      const received = yield* run({ cipher: "aes128-gcm@openssh.com", bytes: 8 * MiB, rekeys: 2, cutTags: true })
      assert.isAbove(received.cuts, 100, "reads were cut inside tags")
      // The data lies in the pieces kept for their tags, which are left to the collector.
      assert.isBelow(received.freedBytes, received.bytes, `freed ${received.freedBytes} of ${received.bytes}`)
    }))

  it.live("attached after the key exchange, it frees nothing", () =>
    Effect.gen(function*() {
      const received = yield* run({ cipher: "aes128-gcm@openssh.com", bytes: 4 * MiB, rekeys: 0, attachLate: true })
      assert.strictEqual(received.freedBytes, 0)
    }))
})
