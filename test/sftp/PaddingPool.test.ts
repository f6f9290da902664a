/**
 * PaddingPool: packets laid out exactly as ssh2's own binding ciphers lay them
 * out (length, padding length, payload room, padding, tag room) for every
 * payload size class; padding bytes that are never reused; and, on a real ssh2
 * connection with each cipher, the pool in use after the handshake and after a
 * re-key, with data sent through it arriving intact.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import { createRequire } from "node:module"
import type { AddressInfo } from "node:net"
import ssh2 from "ssh2"
import * as PaddingPool from "../../src/protocols/sftp/PaddingPool.js"
import { validHostKey } from "../utils/FtpRawClient.js"

const require = createRequire(import.meta.url)

interface CipherInfo {
  readonly keyLen: number
  readonly ivLen: number
}
interface Cipher {
  allocPacket: (payloadLength: number) => Buffer
}
const ssh2Crypto = require("ssh2/lib/protocol/crypto.js") as {
  readonly CIPHER_INFO: Record<string, CipherInfo>
  readonly createCipher: (config: unknown) => Cipher
}

const ciphers = ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"] as const

const makeCipher = (name: string): Cipher => {
  const cipherInfo = ssh2Crypto.CIPHER_INFO[name]!
  return ssh2Crypto.createCipher({
    outbound: {
      onWrite: () => {},
      cipherInfo,
      cipherKey: crypto.randomBytes(cipherInfo.keyLen),
      cipherIV: crypto.randomBytes(cipherInfo.ivLen),
      seqno: 0,
      macInfo: { actualLen: 0, isETM: false },
      macKey: null
    }
  })
}

/** The packet's layout without its random and uninitialised bytes: total length, length field, padding length. */
const layout = (packet: Buffer) => [packet.length, packet.readUInt32BE(0), packet[4]]

describe("PaddingPool", () => {
  for (const name of ciphers) {
    it(`${name}: packets laid out as ssh2's own, for every payload size`, () => {
      const cipher = makeCipher(name)
      const own = cipher.allocPacket.bind(cipher)
      PaddingPool.usePool(cipher)
      assert.notStrictEqual(cipher.allocPacket, own, "the pool is in use")
      for (const size of [...Array.from({ length: 80 }, (_, i) => i), 255, 256, 1000, 4096, 32768 + 9, 65535]) {
        assert.deepStrictEqual(layout(cipher.allocPacket(size)), layout(own(size)), `payload of ${size} bytes`)
      }
    })
  }

  it("leaves a cipher it does not know alone", () => {
    class GenericCipher {
      allocPacket(payloadLength: number) {
        return Buffer.alloc(payloadLength)
      }
    }
    const cipher = new GenericCipher()
    const own = cipher.allocPacket
    PaddingPool.usePool(cipher)
    assert.strictEqual(cipher.allocPacket, own)
  })

  it("never hands out the same random bytes twice, across refills", () => {
    const draws = new Set<string>()
    const draw = Buffer.alloc(16)
    // 4,096 draws of 16 bytes: 16 refills of the 4 KiB pool.
    for (let i = 0; i < 4096; i++) {
      PaddingPool.fillRandom(draw, 0, draw.length)
      draws.add(draw.toString("hex"))
    }
    assert.strictEqual(draws.size, 4096)
  })

  for (const name of ciphers) {
    it.live(`${name}: a connection pads from the pool after its handshake and after a re-key; 8 MiB arrive intact`, () =>
      Effect.gen(function*() {
        const server = new ssh2.Server({ hostKeys: [validHostKey()], algorithms: { compress: ["none"] } })
        yield* Effect.addFinalizer(() => Effect.sync(() => server.close()))
        yield* Effect.callback<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void)))
        const port = (server.address() as AddressInfo).port
        const data = crypto.randomBytes(8 * 1024 * 1024)
        const pooled: Array<boolean> = []
        const isPooled = (connection: ssh2.Connection) => {
          const cipher = Reflect.get(Reflect.get(connection, "_protocol") as object, "_cipher") as Cipher
          return cipher.allocPacket !== Object.getPrototypeOf(cipher).allocPacket
        }
        server.on("connection", (connection) => {
          PaddingPool.attach(connection)
          connection.on("authentication", (ctx) => ctx.accept())
          connection.on("ready", () => pooled.push(isPooled(connection)))
          connection.on("rekey", () => pooled.push(isPooled(connection)))
          connection.on("session", (accept) =>
            accept().on("subsystem", (acceptSubsystem) => {
              const channel: ssh2.ServerChannel = acceptSubsystem()
              channel.write(data.subarray(0, data.length / 2), () => {
                connection.rekey()
                channel.end(data.subarray(data.length / 2))
              })
            }))
        })
        const received = yield* Effect.acquireRelease(
          Effect.callback<Buffer, Error>((resume) => {
            const client = new ssh2.Client()
            client.on("error", (error) => resume(Effect.fail(error)))
            client.on("ready", () =>
              client.subsys("sftp", (error, stream) => {
                if (error) return resume(Effect.fail(error))
                const parts: Array<Buffer> = []
                stream.on("data", (part: Buffer) => parts.push(part))
                stream.on("end", () => {
                  client.end()
                  resume(Effect.succeed(Buffer.concat(parts)))
                })
              }))
            client.connect({ host: "127.0.0.1", port, username: "u", password: "p", algorithms: { cipher: [name] }, readyTimeout: 20_000 })
          }),
          () => Effect.void
        )
        assert.isTrue(received.equals(data), "the data arrived intact")
        assert.deepStrictEqual(pooled, [true, true], "after the handshake and after the re-key")
      }).pipe(Effect.scoped))
  }
})
