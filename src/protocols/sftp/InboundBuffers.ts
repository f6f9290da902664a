/**
 * Frees the memory an SSH connection reads as soon as its bytes are used,
 * instead of at the next full garbage collection.
 *
 * Node allocates every socket read (up to 64 KiB) as an ArrayBuffer of its own,
 * and ssh2 decrypts each packet in place inside it; a packet split across two
 * reads is assembled in an ArrayBuffer that ssh2 allocates for it. Channel data
 * leaves as views of these buffers. V8 frees such memory only when a full
 * mark-compact finds it dead, and it schedules one for every 64 MiB of it:
 * measured, a 1 GiB SFTP upload ran 29 full collections, about a second of
 * main-thread work and 1.5 s of the marking threads. Detaching a buffer
 * (ReleaseMemory) frees it at once and leaves nothing to collect.
 *
 * A socket read is freed when ssh2 has finished parsing it and:
 * - ssh2 was past its key exchange (its payloads reached the connection's
 *   handler, which this module wraps), with an AES-GCM or ChaCha20-Poly1305
 *   decipher whose layout is known;
 * - every packet decrypted in place in it was a window adjust, an EOF, a close,
 *   or channel data that its consumer copied out before ssh2 went on (the SFTP
 *   session frames each chunk synchronously and reports it with `framed`);
 * - ssh2 does not keep a packet in it whose authentication tag is still to come.
 * A packet that ssh2 assembled in a buffer of its own is freed once its channel
 * data was copied out. Anything else leaves its buffer to the collector, as
 * before: the key exchange (which keeps the peer's KEXINIT for the exchange
 * hash), authentication, a paused channel whose stream buffers the data, and
 * any cipher or message this module does not know.
 *
 * This relies on ssh2's internals (1.17.0, pinned in package.json): the
 * Protocol's `parse`, `_onPayload` and `_decipher`, and the `_packet` of its
 * AES-GCM and ChaCha20-Poly1305 binding deciphers. `attach` checks that they are
 * there and otherwise frees nothing; test/sftp/InboundBuffers.test.ts pins them.
 */
import type ssh2 from "ssh2"
import { releaseBuffer } from "../common/ReleaseMemory.js"

/**
 * The connection's side of freeing its reads, made by `attach`.
 * @category models
 */
export interface InboundBuffers {
  /** A consumer has copied out `data`, a chunk of channel data, and will not read it again. */
  readonly framed: (data: Uint8Array) => void
}

/** SSH message numbers (RFC 4254 §5) whose in-place payloads ssh2 reads into numbers and lets go. */
const Message = { WindowAdjust: 93, Data: 94, Eof: 96, Close: 97 } as const

/** ssh2 decipher classes that decrypt into `_packet`, with the padding length in its first byte. */
const knownDeciphers: ReadonlySet<string> = new Set(["AESGCMDecipherBinding", "ChaChaPolyDecipherBinding"])

interface Decipher {
  readonly _packet: Uint8Array | null
  readonly _onPayload: unknown
}

interface ProtocolInternals {
  parse: (chunk: Buffer, start: number, end: number) => void
  _onPayload: (payload: Buffer) => unknown
  readonly _decipher: Decipher | undefined
}

const inert: InboundBuffers = { framed: () => {} }

const protocolOf = (client: ssh2.Connection): ProtocolInternals | undefined => {
  const protocol: unknown = Reflect.get(client, "_protocol")
  if (typeof protocol !== "object" || protocol === null) return undefined
  const parse: unknown = Reflect.get(protocol, "parse")
  const onPayload: unknown = Reflect.get(protocol, "_onPayload")
  return typeof parse === "function" && typeof onPayload === "function" && "_decipher" in protocol
    ? (protocol as ProtocolInternals)
    : undefined
}

const isKnown = (decipher: Decipher | undefined): decipher is Decipher =>
  decipher !== undefined && knownDeciphers.has(decipher.constructor.name)

/** A socket read that owns its whole ArrayBuffer (not a slice of a shared one). */
const ownsWhole = (chunk: Buffer): boolean =>
  chunk.buffer instanceof ArrayBuffer && chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength

/**
 * A payload that ssh2 decrypted in a packet buffer of its own: the buffer holds
 * exactly the padding length byte, the payload and the padding. (A packet under
 * half of `Buffer.poolSize` is a slice of Node's shared pool, whose buffers are
 * at least twice its size, so never match.)
 */
const ownPacket = (payload: Buffer): boolean => {
  const buffer = payload.buffer
  return buffer instanceof ArrayBuffer && payload.byteOffset === 1 &&
    buffer.byteLength === 1 + payload.length + new Uint8Array(buffer, 0, 1)[0]!
}

/**
 * Hooks `client`'s protocol so that its reads are freed once used. Call it when
 * ssh2 announces the connection, before the key exchange: later, or on an ssh2
 * whose internals differ, it returns a `framed` that does nothing.
 * @category constructors
 */
export const attach = (client: ssh2.Connection): InboundBuffers => {
  const protocol = protocolOf(client)
  // Before the first key exchange ssh2 runs a NullDecipher; after it, deciphers already hold the old handler.
  if (protocol === undefined || (protocol._decipher !== undefined && protocol._decipher.constructor.name !== "NullDecipher")) return inert
  // The ArrayBuffer of the socket read being parsed, as long as it may still be freed.
  let reading: ArrayBuffer | undefined
  // The buffer of the payload being handled, and whether its channel data was copied out.
  let handling: ArrayBufferLike | undefined
  let copied = false

  const onPayload = protocol._onPayload
  const payloadHandler = (payload: Buffer): unknown => {
    const type = payload[0]
    const buffer = payload.buffer
    handling = buffer
    copied = false
    const outcome = onPayload(payload)
    handling = undefined
    const consumed = type === Message.Data && copied
    if (buffer === reading) {
      if (!consumed && type !== Message.WindowAdjust && type !== Message.Eof && type !== Message.Close) reading = undefined
    } else if (consumed && isKnown(protocol._decipher) && ownPacket(payload)) {
      releaseBuffer(buffer)
    }
    return outcome
  }
  // Deciphers made at each NEWKEYS take the protocol's payload handler: this one.
  protocol._onPayload = payloadHandler

  const parse = protocol.parse
  protocol.parse = (chunk, start, end) => {
    const decipher = protocol._decipher
    reading = ownsWhole(chunk) && isKnown(decipher) && decipher._onPayload === payloadHandler
      ? chunk.buffer as ArrayBuffer
      : undefined
    parse.call(protocol, chunk, start, end)
    // Not reached when parsing threw: the read is then left to the collector.
    const done = reading
    reading = undefined
    const after = protocol._decipher
    if (done !== undefined && isKnown(after) && after._packet?.buffer !== done) releaseBuffer(done)
  }

  return {
    framed: (data) => {
      if (data.buffer === handling) copied = true
    }
  }
}
