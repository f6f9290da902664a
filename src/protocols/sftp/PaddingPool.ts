/**
 * Random padding for the SSH packets a connection sends, drawn from a pool of
 * CSPRNG bytes instead of one `crypto.randomFillSync` call per packet.
 *
 * ssh2 fills the 4 to 19 padding bytes of every outgoing packet with its own
 * `randomFillSync` call. Each call crosses into OpenSSL, which checks for a
 * fork with a `getpid` system call: measured on a 256 MiB SFTP download with
 * chacha20-poly1305 (8,192 packets of 32 KiB), 45 ms of main-thread time,
 * nearly as much as the encryption itself (56 ms). Here the bytes come from a
 * 4 KiB buffer that `randomFillSync` refills when it runs out, so one call
 * serves about 300 packets. Every byte is used once, and they are the same
 * CSPRNG's bytes, so the padding is exactly as unpredictable (RFC 4253 §6 asks
 * for random padding; OpenSSH takes it from its own buffered arc4random).
 *
 * This relies on ssh2's internals (1.17.0, pinned in package.json): the
 * Protocol's `_cipher`, replaced at every NEWKEYS, and the `allocPacket` of its
 * AES-GCM and ChaCha20-Poly1305 binding ciphers, whose packet layout
 * `allocPacket` below reproduces. Other ciphers keep ssh2's own. The packets'
 * memory comes from PacketMemory, which takes it back once the socket has
 * written them.
 * test/sftp/PaddingPool.test.ts compares the two layouts.
 */
import { randomFillSync } from "node:crypto"
import type ssh2 from "ssh2"
import * as PacketMemory from "./PacketMemory.js"

/** ssh2 cipher classes whose `allocPacket` this replaces, with their padding block size. */
const blockSizes: ReadonlyMap<string, number> = new Map([["AESGCMCipherBinding", 16], ["ChaChaPolyCipherBinding", 8]])

/** Both AEAD ciphers append a 16-byte tag. */
const tagLength = 16

const pool = Buffer.allocUnsafeSlow(4096)
let poolUsed = pool.length

/**
 * Copies `length` fresh random bytes into `target` at `offset` (length ≤ the pool's size).
 * @category constructors
 */
export const fillRandom = (target: Buffer, offset: number, length: number): void => {
  if (poolUsed + length > pool.length) {
    randomFillSync(pool)
    poolUsed = 0
  }
  poolUsed += pool.copy(target, offset, poolUsed, poolUsed + length)
}

/**
 * A plaintext packet for a payload of `payloadLength` bytes, as ssh2's binding
 * ciphers allocate it: length, padding length, room for the payload, random
 * padding to a multiple of `blockSize` (at least 4 bytes), room for the tag.
 * @category constructors
 */
export const allocPacket = (blockSize: number, payloadLength: number): Buffer => {
  let packetLength = 4 + 1 + payloadLength
  let paddingLength = blockSize - ((packetLength - 4) & (blockSize - 1))
  if (paddingLength < 4) paddingLength += blockSize
  packetLength += paddingLength
  const packet = PacketMemory.take(packetLength + tagLength)
  packet.writeUInt32BE(packetLength - 4, 0)
  packet[4] = paddingLength
  fillRandom(packet, 5 + payloadLength, paddingLength)
  return packet
}

interface Cipher {
  allocPacket: (payloadLength: number) => Buffer
}

/**
 * Makes `cipher` pad from the pool when it is one of the binding ciphers above.
 * @category constructors
 */
export const usePool = (cipher: unknown): void => {
  if (typeof cipher !== "object" || cipher === null) return
  const blockSize = blockSizes.get(cipher.constructor.name)
  if (blockSize !== undefined && typeof Reflect.get(cipher, "allocPacket") === "function") {
    ;(cipher as Cipher).allocPacket = (payloadLength) => allocPacket(blockSize, payloadLength)
  }
}

/**
 * Makes every cipher `client`'s protocol takes from now on pad from the pool.
 * Call it when ssh2 announces the connection, before the key exchange; on an
 * ssh2 without the expected `_cipher` it does nothing.
 * @category constructors
 */
export const attach = (client: ssh2.Connection): void => {
  const protocol: unknown = Reflect.get(client, "_protocol")
  if (typeof protocol !== "object" || protocol === null || !("_cipher" in protocol)) return
  let cipher: unknown = protocol._cipher
  usePool(cipher)
  Object.defineProperty(protocol, "_cipher", {
    configurable: true,
    enumerable: true,
    get: () => cipher,
    set: (next: unknown) => {
      cipher = next
      usePool(next)
    }
  })
}
