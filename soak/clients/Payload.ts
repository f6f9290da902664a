/**
 * The bytes the soak uploads: one random buffer per process, whose last 32
 * bytes are replaced by a fresh random tag for every upload, so no two uploads
 * carry the same content and a file left over from an earlier upload, or one
 * mixed up with another slot's, fails the checksum. The hash of the common part
 * is computed once and copied, so each upload costs one 32-byte hash update.
 */
import * as crypto from "node:crypto"

const tagBytes = 32

export interface Upload {
  /** The content in order, as chunks of `chunkBytes` (the last may be shorter). */
  readonly chunks: ReadonlyArray<Buffer>
  readonly sha256: string
}

export const sha256 = (bytes: Uint8Array): string => crypto.createHash("sha256").update(bytes).digest("hex")

export class Payload {
  readonly #base: Buffer
  readonly #prefixHash: crypto.Hash
  readonly size: number
  readonly chunkBytes: number

  constructor(size: number, chunkBytes: number) {
    if (size < tagBytes + chunkBytes) throw new Error(`the payload must be at least ${tagBytes + chunkBytes} bytes`)
    this.size = size
    this.chunkBytes = chunkBytes
    this.#base = crypto.randomBytes(size)
    this.#prefixHash = crypto.createHash("sha256").update(this.#base.subarray(0, size - tagBytes))
  }

  /** The next upload's content (no copy but the last chunk). */
  next(): Upload {
    const tag = crypto.randomBytes(tagBytes)
    const chunks: Array<Buffer> = []
    const tagAt = this.size - tagBytes
    for (let at = 0; at < this.size; at += this.chunkBytes) {
      const end = Math.min(at + this.chunkBytes, this.size)
      chunks.push(end <= tagAt ? this.#base.subarray(at, end) : Buffer.concat([this.#base.subarray(at, tagAt), tag]))
    }
    return { chunks, sha256: this.#prefixHash.copy().update(tag).digest("hex") }
  }
}
