/**
 * Property-based fuzzing of the SFTP packet reader and request decoder
 * (src/protocols/sftp/Codec.ts): valid requests from a model (SftpModel.ts)
 * decode to exactly what was sent; random, truncated and mutated bodies (lying
 * lengths, truncated attributes, huge counts, invalid UTF-8, random types) never
 * throw and fail only with the typed BadPacket, carrying the request id exactly
 * when one was readable; the decoder never reads past the body it is given; and
 * the framer yields the same packets however the stream is chunked.
 */
import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import fc from "fast-check"
import { BadPacket, decodeRequest, FrameError, makePacketReader, type Request } from "../../src/protocols/sftp/Codec.js"
import { SftpPacket } from "../../src/protocols/sftp/Wire.js"
import { fuzzParameters } from "./FuzzRuns.js"
import {
  attrsArbitrary,
  encodeAttrs,
  frame,
  hostileBodyArbitrary,
  idArbitrary,
  invalidUtf8,
  type ModelRequest,
  pathArbitrary,
  referenceFrames,
  requestArbitrary,
  split,
  sshString,
  u32,
  u8
} from "./SftpModel.js"

const reasons = new Set(["Truncated", "InvalidUtf8", "NumberTooLarge", "HandleTooLong", "TooManyExtendedAttributes"])

/** The tag a successfully decoded body of this type byte must have (EXTENDED decodes by name). */
const tagOfType: Readonly<Record<number, string>> = {
  [SftpPacket.Init]: "Init",
  [SftpPacket.Open]: "Open",
  [SftpPacket.Close]: "Close",
  [SftpPacket.Read]: "Read",
  [SftpPacket.Write]: "Write",
  [SftpPacket.Lstat]: "Lstat",
  [SftpPacket.Fstat]: "Fstat",
  [SftpPacket.Setstat]: "Setstat",
  [SftpPacket.Fsetstat]: "Fsetstat",
  [SftpPacket.Opendir]: "Opendir",
  [SftpPacket.Readdir]: "Readdir",
  [SftpPacket.Remove]: "Remove",
  [SftpPacket.Mkdir]: "Mkdir",
  [SftpPacket.Rmdir]: "Rmdir",
  [SftpPacket.Realpath]: "Realpath",
  [SftpPacket.Stat]: "Stat",
  [SftpPacket.Rename]: "Rename",
  [SftpPacket.Readlink]: "Readlink",
  [SftpPacket.Symlink]: "Symlink"
}

const extendedTags = new Set([
  "PosixRename", "Statvfs", "Fstatvfs", "Hardlink", "Fsync", "Lsetstat", "Limits", "ExpandPath", "CopyData", "HomeDirectory", "Extended"
])

/** Decodes, turning a throw into a failed assertion that names what was thrown. */
const decodeSafely = (body: Buffer): Result.Result<Request, BadPacket> => {
  try {
    return decodeRequest(body)
  } catch (error) {
    return assert.fail(`decodeRequest threw ${String(error)} on ${body.toString("hex").slice(0, 200)}`)
  }
}

/** Every Buffer the decoded request holds (handles, data, payloads, extended attribute data). */
const buffersOf = (request: Request): Array<Buffer> => {
  const found: Array<Buffer> = []
  const visit = (value: unknown) => {
    if (Buffer.isBuffer(value)) found.push(value)
    else if (Array.isArray(value)) value.forEach(visit)
    else if (typeof value === "object" && value !== null) Object.values(value).forEach(visit)
  }
  visit(request)
  return found
}

/** The contract every decode result keeps, whatever the input. */
const checkContract = (body: Buffer, result: Result.Result<Request, BadPacket>) => {
  if (Result.isFailure(result)) {
    const failure = result.failure
    assert.instanceOf(failure, BadPacket)
    assert.isTrue(reasons.has(failure.reason), failure.reason)
    if (failure.id !== undefined) {
      // An id is reported only when it was really read from the body.
      assert.isAtLeast(body.length, 5)
      assert.strictEqual(failure.id, body.readUInt32BE(1))
    }
    return
  }
  const request = result.success
  const type = body[0]!
  if (request._tag === "Unknown") {
    assert.strictEqual(request.type, type)
    assert.isUndefined(tagOfType[type], "a request type decoded as Unknown")
    assert.notStrictEqual(type, SftpPacket.Extended)
    assert.strictEqual(request.id, body.length >= 5 ? body.readUInt32BE(1) : undefined)
  } else if (type === SftpPacket.Extended) {
    assert.isTrue(extendedTags.has(request._tag), request._tag)
  } else {
    assert.strictEqual(request._tag, tagOfType[type])
  }
  if (request._tag !== "Init" && request._tag !== "Unknown") assert.strictEqual(request.id, body.readUInt32BE(1))
  // Views into the body, never beyond it.
  for (const view of buffersOf(request)) {
    assert.strictEqual(view.buffer, body.buffer, "a decoded buffer is a view of the body")
    assert.isAtLeast(view.byteOffset, body.byteOffset)
    assert.isAtMost(view.byteOffset + view.length, body.byteOffset + body.length)
  }
}

/** `body` placed inside a larger allocation, with junk after it that a read past the end would see. */
const withJunkAfter = (body: Buffer, junk: Uint8Array): Buffer => {
  const big = Buffer.concat([Buffer.from([0xaa, 0xbb]), body, junk, Buffer.alloc(16, 0xff)])
  return big.subarray(2, 2 + body.length)
}

/** A comparable form of a result: plain data, Buffers as hex. */
const comparable = (result: Result.Result<Request, BadPacket>): unknown =>
  JSON.parse(JSON.stringify(
    Result.isSuccess(result) ? { ok: result.success } : { id: result.failure.id, reason: result.failure.reason },
    (_key, value: unknown) =>
      typeof value === "object" && value !== null && (value as { type?: unknown }).type === "Buffer" && Array.isArray((value as { data?: unknown }).data)
        ? Buffer.from((value as { data: Array<number> }).data).toString("hex")
        : value
  ))

describe("SFTP codec (property-based)", () => {
  it("valid requests from the model decode to exactly what was encoded", () => {
    fc.assert(
      fc.property(requestArbitrary(), (request: ModelRequest) => {
        const result = decodeSafely(request.body)
        if (Result.isFailure(result)) return assert.fail(`refused ${request.expected._tag}: ${result.failure.reason}`)
        assert.deepStrictEqual(comparable(result), comparable(Result.succeed(request.expected)))
        checkContract(request.body, result)
      }),
      fuzzParameters(2000)
    )
  })

  it("random, mutated and valid bodies never throw and fail only with BadPacket, with the id when one was read", () => {
    fc.assert(
      fc.property(hostileBodyArbitrary(), (body) => checkContract(body, decodeSafely(body))),
      fuzzParameters(3000)
    )
  })

  it("never reads past the body: the same answer with junk after it in memory as for an exact copy", () => {
    fc.assert(
      fc.property(hostileBodyArbitrary(), fc.uint8Array({ minLength: 1, maxLength: 64 }), (body, junk) => {
        const inPlace = withJunkAfter(body, junk)
        const exact = Buffer.from(body)
        const a = decodeSafely(inPlace)
        checkContract(inPlace, a)
        assert.deepStrictEqual(comparable(a), comparable(decodeSafely(exact)))
      }),
      fuzzParameters(2000)
    )
  })

  it("every strict prefix of a valid request is refused as Truncated, with the id once it was read", () => {
    fc.assert(
      fc.property(requestArbitrary(), fc.nat(), ({ body, expected }, cut) => {
        const at = cut % body.length
        const prefix = body.subarray(0, at)
        const result = decodeSafely(prefix)
        checkContract(prefix, result)
        // An unknown extension's payload is "the rest of the packet": prefixes that keep the name still decode.
        if (expected._tag === "Extended" && Result.isSuccess(result)) {
          const nameEnd = 9 + Buffer.byteLength(expected.name)
          assert.isAtLeast(at, nameEnd)
          return
        }
        if (Result.isSuccess(result)) return assert.fail(`a ${at}-byte prefix of ${expected._tag} (${body.length} bytes) decoded as ${result.success._tag}`)
        assert.strictEqual(result.failure.reason, "Truncated")
        assert.strictEqual(result.failure.id, expected._tag === "Init" || at < 5 ? undefined : body.readUInt32BE(1))
      }),
      fuzzParameters(2000)
    )
  })

  it("extended attribute counts: above 64 refused, more than the bytes can hold Truncated, never a huge allocation", () => {
    const attrsRequest = fc.tuple(idArbitrary, pathArbitrary(), fc.constantFrom(SftpPacket.Setstat, SftpPacket.Mkdir, SftpPacket.Open))
    fc.assert(
      fc.property(
        attrsRequest,
        fc.oneof(fc.nat({ max: 70 }), fc.constantFrom(0x7fffffff, 0xffffffff, 0x20000000), fc.nat({ max: 0xffffffff })),
        fc.nat({ max: 5 }),
        ([id, p, type], count, present) => {
          const pairs = Array.from({ length: present }, (_, i) => Buffer.concat([sshString(`t${i}`), sshString(Buffer.from([i]))]))
          const attrs = Buffer.concat([u32(0x80000000), u32(count), ...pairs])
          const fields = type === SftpPacket.Open ? [sshString(p), u32(1), attrs] : [sshString(p), attrs]
          const body = Buffer.concat([u8(type), u32(id), ...fields])
          const result = decodeSafely(body)
          checkContract(body, result)
          const expected = count > 64 ? "TooManyExtendedAttributes" : count > present ? "Truncated" : undefined
          if (expected === undefined) {
            assert.isTrue(Result.isSuccess(result))
          } else {
            assert.deepStrictEqual(Result.isFailure(result) ? [result.failure.id, result.failure.reason] : "decoded", [id, expected])
          }
        }
      ),
      fuzzParameters(2000)
    )
  })

  it("invalid UTF-8 in a path or name is InvalidUtf8 with the request id", () => {
    const pathTypes = [SftpPacket.Lstat, SftpPacket.Stat, SftpPacket.Remove, SftpPacket.Rmdir, SftpPacket.Opendir, SftpPacket.Realpath, SftpPacket.Readlink]
    fc.assert(
      fc.property(
        idArbitrary,
        fc.constantFrom(...pathTypes),
        fc.string({ maxLength: 8 }),
        fc.constantFrom(...invalidUtf8),
        fc.string({ maxLength: 8 }),
        attrsArbitrary,
        (id, type, before, bad, after, attrs) => {
          const name = Buffer.concat([Buffer.from(before), bad, Buffer.from(after)])
          for (const body of [
            Buffer.concat([u8(type), u32(id), sshString(name)]),
            Buffer.concat([u8(SftpPacket.Setstat), u32(id), sshString(name), encodeAttrs(attrs)]),
            Buffer.concat([u8(SftpPacket.Rename), u32(id), sshString("ok"), sshString(name)]),
            Buffer.concat([u8(SftpPacket.Extended), u32(id), sshString(name)])
          ]) {
            const result = decodeSafely(body)
            checkContract(body, result)
            assert.deepStrictEqual(Result.isFailure(result) ? [result.failure.id, result.failure.reason] : "decoded", [id, "InvalidUtf8"])
          }
        }
      ),
      fuzzParameters(1000)
    )
  })
})

// --- framing ----------------------------------------------------------------------------------

/** Pushes `chunks` into a fresh reader; the packets yielded and the first failure. */
const feed = (chunks: ReadonlyArray<Buffer>, maxPacketLength: number) => {
  const reader = makePacketReader({ maxPacketLength })
  const packets: Array<string> = []
  let failure: FrameError | undefined
  for (const chunk of chunks) {
    let result: ReturnType<typeof reader.push>
    try {
      result = reader.push(chunk)
    } catch (error) {
      return assert.fail(`push threw ${String(error)}`)
    }
    // Whatever the chunking, at most one incomplete packet is held.
    assert.isAtMost(reader.buffered(), maxPacketLength + 4)
    if (Result.isFailure(result)) {
      failure = result.failure
      assert.instanceOf(failure, FrameError)
      // Once failed, the reader stays failed.
      assert.isTrue(Result.isFailure(reader.push(Buffer.from([0, 0, 0, 1, 1]))))
      break
    }
    for (const body of result.success) packets.push(body.toString("hex"))
  }
  return { packets, failure, buffered: reader.buffered() }
}

/** Streams of framed bodies, sometimes with a lying or broken length field, or raw bytes. */
const streamArbitrary = (maxPacketLength: number) =>
  fc.oneof(
    {
      weight: 4,
      arbitrary: fc.array(fc.uint8Array({ minLength: 1, maxLength: maxPacketLength }), { maxLength: 6 }).map((bodies) =>
        Buffer.concat(bodies.map(frame))
      )
    },
    {
      weight: 3,
      arbitrary: fc.tuple(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: maxPacketLength }), { maxLength: 4 }),
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: maxPacketLength + 8 }), fc.constantFrom(maxPacketLength, maxPacketLength + 1, 0xffffffff)),
        fc.uint8Array({ maxLength: 2 * maxPacketLength })
      ).map(([bodies, lie, rest]) => Buffer.concat([...bodies.map(frame), u32(lie), rest]))
    },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 4 * maxPacketLength }).map((b) => Buffer.from(b)) }
  )

describe("SFTP packet reader (property-based)", () => {
  const max = 48

  it("yields the reference packets for every single split position of a stream", () => {
    fc.assert(
      fc.property(streamArbitrary(max), (stream) => {
        const expected = referenceFrames(stream, max)
        const whole = feed([stream], max)
        for (let at = 0; at <= stream.length; at++) {
          const got = feed([stream.subarray(0, at), stream.subarray(at)], max)
          if (expected.bad === undefined) {
            assert.deepStrictEqual(got.packets, expected.bodies.map((b) => b.toString("hex")), `split at ${at}`)
            assert.isUndefined(got.failure)
            // What is held is exactly the unfinished tail (its length field not counted once complete).
            assert.strictEqual(got.buffered, expected.tail >= 4 ? expected.tail - 4 : expected.tail)
          } else {
            // Packets completed in the failing chunk are dropped with the session: a prefix arrives.
            assert.deepStrictEqual(got.packets, expected.bodies.slice(0, got.packets.length).map((b) => b.toString("hex")))
            assert.deepStrictEqual({ reason: got.failure?.reason, length: got.failure?.length }, expected.bad)
          }
        }
        assert.deepStrictEqual(whole.failure === undefined, expected.bad === undefined)
      }),
      fuzzParameters(500)
    )
  })

  it("yields the reference packets however the stream is chunked, and holds at most one packet", () => {
    fc.assert(
      fc.property(
        streamArbitrary(max),
        fc.array(fc.nat(), { maxLength: 40 }),
        fc.constantFrom(1, 4, 48, 52, 262144),
        (stream, cuts, limit) => {
          const maxPacketLength = limit === 262144 ? limit : Math.max(limit, 1)
          const expected = referenceFrames(stream, maxPacketLength)
          const got = feed(split(stream, cuts), maxPacketLength)
          if (expected.bad === undefined) {
            assert.deepStrictEqual(got.packets, expected.bodies.map((b) => b.toString("hex")))
            assert.isUndefined(got.failure)
          } else {
            assert.deepStrictEqual(got.packets, expected.bodies.slice(0, got.packets.length).map((b) => b.toString("hex")))
            assert.deepStrictEqual({ reason: got.failure?.reason, length: got.failure?.length }, expected.bad)
          }
        }
      ),
      fuzzParameters(3000)
    )
  })

  it("one byte at a time gives the same packets as one chunk", () => {
    fc.assert(
      fc.property(streamArbitrary(max), (stream) => {
        const bytes = Array.from(stream, (b) => Buffer.from([b]))
        const one = feed([stream], max)
        const many = feed(bytes, max)
        if (one.failure === undefined) assert.deepStrictEqual(many.packets, one.packets)
        assert.deepStrictEqual(many.failure?.reason, one.failure?.reason)
      }),
      fuzzParameters(1000)
    )
  })
})
