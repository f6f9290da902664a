import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import {
  type Attrs,
  type BadPacket,
  decodeRequest,
  encodeAttrs,
  encodeData,
  encodeDataHeader,
  encodeExtendedReply,
  encodeHandle,
  encodeLimitsReply,
  encodeName,
  encodePathReply,
  encodeStatus,
  encodeStatvfsReply,
  encodeVersion,
  formatLongname,
  type FrameError,
  makePacketReader,
  type Request
} from "../../src/protocols/sftp/Codec.js"
import {
  defaultMaxPacketLength,
  SftpAttrFlag,
  SftpOpenFlag,
  SftpPacket,
  SftpStatus,
  SftpStatvfsFlag
} from "../../src/protocols/sftp/Wire.js"

// ---------------------------------------------------------------------------------------------
// A test-only request encoder, written independently of the codec.
// ---------------------------------------------------------------------------------------------

const u8 = (n: number): Buffer => Buffer.from([n])
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return b
}
const u64 = (n: number | bigint): Buffer => {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(n))
  return b
}
const str = (s: string | Uint8Array): Buffer => {
  const bytes = typeof s === "string" ? Buffer.from(s, "utf8") : Buffer.from(s)
  return Buffer.concat([u32(bytes.length), bytes])
}
const attrsBytes = (a: Attrs): Buffer => {
  let flags = 0
  const parts: Array<Buffer> = []
  if (a.size !== undefined) {
    flags |= 0x1
    parts.push(u64(a.size))
  }
  if (a.uid !== undefined && a.gid !== undefined) {
    flags |= 0x2
    parts.push(u32(a.uid), u32(a.gid))
  }
  if (a.permissions !== undefined) {
    flags |= 0x4
    parts.push(u32(a.permissions))
  }
  if (a.atime !== undefined && a.mtime !== undefined) {
    flags |= 0x8
    parts.push(u32(a.atime), u32(a.mtime))
  }
  if (a.extended !== undefined) {
    flags |= 0x80000000
    parts.push(u32(a.extended.length))
    for (const [type, data] of a.extended) parts.push(str(type), str(data))
  }
  return Buffer.concat([u32(flags), ...parts])
}
const request = (type: number, id: number, ...fields: Array<Buffer>): Buffer =>
  Buffer.concat([u8(type), u32(id), ...fields])
const extended = (id: number, name: string, ...fields: Array<Buffer>): Buffer =>
  request(SftpPacket.Extended, id, str(name), ...fields)
const frame = (body: Buffer): Buffer => Buffer.concat([u32(body.length), body])
const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ""), "hex")
const ascii = (text: string): string => Buffer.from(text, "latin1").toString("hex")

const decoded = (body: Buffer): Request => {
  const result = decodeRequest(body)
  if (Result.isFailure(result)) return assert.fail(`unexpected ${result.failure.reason}`)
  return result.success
}
const refused = (body: Buffer): BadPacket => {
  const result = decodeRequest(body)
  if (Result.isSuccess(result)) return assert.fail(`unexpected ${result.success._tag}`)
  return result.failure
}
const badPacket = (body: Buffer): { readonly id: number | undefined; readonly reason: string } => {
  const failure = refused(body)
  return { id: failure.id, reason: failure.reason }
}

const handle = Buffer.from([0, 0, 0, 7])
const otherHandle = Buffer.from("h2")
const fullAttrs: Attrs = {
  size: 2 ** 40 + 3,
  uid: 1000,
  gid: 100,
  permissions: 0o100644,
  atime: 1_700_000_000,
  mtime: 1_700_000_001,
  extended: [["a@example.com", Buffer.from([1, 2, 3])], ["b", Buffer.alloc(0)]]
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

describe("decodeRequest", () => {
  it("decodes every request type", () => {
    const data = Buffer.from("hello, world")
    const cases: ReadonlyArray<readonly [Buffer, Request]> = [
      [Buffer.concat([u8(SftpPacket.Init), u32(3)]), { _tag: "Init", version: 3 }],
      [
        request(
          SftpPacket.Open,
          1,
          str("/dir/file.txt"),
          u32(SftpOpenFlag.Write | SftpOpenFlag.Create | SftpOpenFlag.Truncate),
          attrsBytes({ permissions: 0o644 })
        ),
        { _tag: "Open", id: 1, path: "/dir/file.txt", pflags: 0x1a, attrs: { permissions: 0o644 } }
      ],
      [request(SftpPacket.Close, 2, str(handle)), { _tag: "Close", id: 2, handle }],
      [
        request(SftpPacket.Read, 3, str(handle), u64(2 ** 40 + 5), u32(32768)),
        { _tag: "Read", id: 3, handle, offset: 2 ** 40 + 5, length: 32768 }
      ],
      [
        request(SftpPacket.Write, 4, str(handle), u64(12), str(data)),
        { _tag: "Write", id: 4, handle, offset: 12, data }
      ],
      [request(SftpPacket.Lstat, 5, str("/l")), { _tag: "Lstat", id: 5, path: "/l" }],
      [request(SftpPacket.Fstat, 6, str(handle)), { _tag: "Fstat", id: 6, handle }],
      [
        request(SftpPacket.Setstat, 7, str("/s"), attrsBytes(fullAttrs)),
        { _tag: "Setstat", id: 7, path: "/s", attrs: fullAttrs }
      ],
      [
        request(SftpPacket.Fsetstat, 8, str(handle), attrsBytes({ atime: 1, mtime: 2 })),
        { _tag: "Fsetstat", id: 8, handle, attrs: { atime: 1, mtime: 2 } }
      ],
      [request(SftpPacket.Opendir, 9, str("/")), { _tag: "Opendir", id: 9, path: "/" }],
      [request(SftpPacket.Readdir, 10, str(handle)), { _tag: "Readdir", id: 10, handle }],
      [request(SftpPacket.Remove, 11, str("gone")), { _tag: "Remove", id: 11, path: "gone" }],
      [
        request(SftpPacket.Mkdir, 12, str("new"), attrsBytes({})),
        { _tag: "Mkdir", id: 12, path: "new", attrs: {} }
      ],
      [request(SftpPacket.Rmdir, 13, str("old")), { _tag: "Rmdir", id: 13, path: "old" }],
      [request(SftpPacket.Realpath, 14, str(".")), { _tag: "Realpath", id: 14, path: "." }],
      [request(SftpPacket.Stat, 15, str("ünïcødé/文件")), { _tag: "Stat", id: 15, path: "ünïcødé/文件" }],
      [
        request(SftpPacket.Rename, 16, str("a"), str("b")),
        { _tag: "Rename", id: 16, oldPath: "a", newPath: "b" }
      ],
      [request(SftpPacket.Readlink, 17, str("link")), { _tag: "Readlink", id: 17, path: "link" }],
      // OpenSSH order: targetpath first, then linkpath.
      [
        request(SftpPacket.Symlink, 18, str("target"), str("link")),
        { _tag: "Symlink", id: 18, linkPath: "link", targetPath: "target" }
      ],
      [
        extended(19, "posix-rename@openssh.com", str("a"), str("b")),
        { _tag: "PosixRename", id: 19, oldPath: "a", newPath: "b" }
      ],
      [extended(20, "statvfs@openssh.com", str("/")), { _tag: "Statvfs", id: 20, path: "/" }],
      [extended(21, "fstatvfs@openssh.com", str(handle)), { _tag: "Fstatvfs", id: 21, handle }],
      [
        extended(22, "hardlink@openssh.com", str("existing"), str("new")),
        { _tag: "Hardlink", id: 22, oldPath: "existing", newPath: "new" }
      ],
      [extended(23, "fsync@openssh.com", str(handle)), { _tag: "Fsync", id: 23, handle }],
      [
        extended(24, "lsetstat@openssh.com", str("/l"), attrsBytes({ uid: 1, gid: 2 })),
        { _tag: "Lsetstat", id: 24, path: "/l", attrs: { uid: 1, gid: 2 } }
      ],
      [extended(25, "limits@openssh.com"), { _tag: "Limits", id: 25 }],
      [extended(26, "expand-path@openssh.com", str("~/x")), { _tag: "ExpandPath", id: 26, path: "~/x" }],
      [
        extended(27, "copy-data", str(handle), u64(10), u64(0), str(otherHandle), u64(2 ** 33)),
        {
          _tag: "CopyData",
          id: 27,
          readHandle: handle,
          readOffset: 10,
          readLength: 0,
          writeHandle: otherHandle,
          writeOffset: 2 ** 33
        }
      ],
      [extended(28, "home-directory", str("")), { _tag: "HomeDirectory", id: 28, username: "" }],
      [
        extended(29, "users-groups-by-id@openssh.com", str(u32(0)), str("")),
        {
          _tag: "Extended",
          id: 29,
          name: "users-groups-by-id@openssh.com",
          payload: Buffer.concat([str(u32(0)), str("")])
        }
      ],
      [request(99, 30, str("x")), { _tag: "Unknown", type: 99, id: 30 }],
      [request(SftpPacket.Status, 31), { _tag: "Unknown", type: SftpPacket.Status, id: 31 }]
    ]
    const tags = new Set<string>()
    for (const [body, expected] of cases) {
      assert.deepStrictEqual(decoded(body), expected, expected._tag)
      tags.add(expected._tag)
    }
    assert.strictEqual(tags.size, 31)
  })

  it("keeps WRITE data and handles as views of the packet body", () => {
    const body = request(SftpPacket.Write, 1, str(handle), u64(0), str("payload"))
    const result = decoded(body)
    assert.strictEqual(result._tag, "Write")
    if (result._tag !== "Write") return
    assert.strictEqual(result.data.buffer, body.buffer)
    assert.strictEqual(result.handle.buffer, body.buffer)
    body[body.length - 1] = 0x21
    assert.strictEqual(result.data.toString(), "payloa!")
  })

  it("ignores bytes after a well-formed request", () => {
    assert.deepStrictEqual(decoded(Buffer.concat([u8(SftpPacket.Init), u32(3), str("ext"), str("1")])), {
      _tag: "Init",
      version: 3
    })
    assert.deepStrictEqual(decoded(request(SftpPacket.Realpath, 1, str("/a"), u8(1), str("extra"))), {
      _tag: "Realpath",
      id: 1,
      path: "/a"
    })
    assert.deepStrictEqual(decoded(request(SftpPacket.Close, 2, str(handle), Buffer.from("junk"))), {
      _tag: "Close",
      id: 2,
      handle
    })
  })

  it("ignores unknown attribute flag bits", () => {
    const body = request(SftpPacket.Setstat, 1, str("/a"), u32(0x0000_0100 | SftpAttrFlag.Permissions), u32(0o600))
    assert.deepStrictEqual(decoded(body), { _tag: "Setstat", id: 1, path: "/a", attrs: { permissions: 0o600 } })
  })

  it("refuses empty and id-less bodies without an id", () => {
    assert.deepStrictEqual(badPacket(Buffer.alloc(0)), { id: undefined, reason: "Truncated" })
    assert.deepStrictEqual(badPacket(Buffer.from([SftpPacket.Init, 0, 0])), { id: undefined, reason: "Truncated" })
    assert.deepStrictEqual(badPacket(Buffer.from([SftpPacket.Open, 0, 0, 1])), { id: undefined, reason: "Truncated" })
    assert.deepStrictEqual(badPacket(Buffer.from([SftpPacket.Extended])), { id: undefined, reason: "Truncated" })
  })

  it("decodes unknown types, with an id only when four bytes follow the type", () => {
    assert.deepStrictEqual(decoded(Buffer.from([0xfe])), { _tag: "Unknown", type: 0xfe, id: undefined })
    assert.deepStrictEqual(decoded(Buffer.from([0, 1, 2])), { _tag: "Unknown", type: 0, id: undefined })
    assert.deepStrictEqual(decoded(Buffer.from([21, 0, 0, 1, 2])), { _tag: "Unknown", type: 21, id: 258 })
    assert.deepStrictEqual(decoded(request(SftpPacket.Version, 7)), { _tag: "Unknown", type: 2, id: 7 })
  })

  it("refuses string lengths that lie, with the request id", () => {
    const lying = Buffer.concat([u8(SftpPacket.Stat), u32(42), u32(1000), Buffer.from("short")])
    assert.deepStrictEqual(badPacket(lying), { id: 42, reason: "Truncated" })
    const huge = Buffer.concat([u8(SftpPacket.Open), u32(43), u32(0xffffffff), Buffer.from("x")])
    assert.deepStrictEqual(badPacket(huge), { id: 43, reason: "Truncated" })
    const oneOver = Buffer.concat([u8(SftpPacket.Write), u32(44), str(handle), u64(0), u32(6), Buffer.from("12345")])
    assert.deepStrictEqual(badPacket(oneOver), { id: 44, reason: "Truncated" })
    const exact = Buffer.concat([u8(SftpPacket.Write), u32(44), str(handle), u64(0), u32(5), Buffer.from("12345")])
    assert.strictEqual(decoded(exact)._tag, "Write")
  })

  it("refuses every truncation of a request with attributes", () => {
    const body = request(SftpPacket.Setstat, 45, str("/path"), attrsBytes(fullAttrs))
    for (let length = 5; length < body.length; length++) {
      assert.deepStrictEqual(badPacket(body.subarray(0, length)), { id: 45, reason: "Truncated" }, String(length))
    }
    assert.strictEqual(decoded(body)._tag, "Setstat")
  })

  it("refuses truncated fields of every request type", () => {
    const bodies = [
      request(SftpPacket.Read, 46, str(handle), u64(1), u32(2)),
      request(SftpPacket.Rename, 46, str("a"), str("b")),
      request(SftpPacket.Symlink, 46, str("a"), str("b")),
      extended(46, "copy-data", str(handle), u64(10), u64(0), str(otherHandle), u64(2)),
      extended(46, "lsetstat@openssh.com", str("/l"), attrsBytes({ size: 1 })),
      extended(46, "posix-rename@openssh.com", str("a"), str("b")),
      extended(46, "home-directory", str("me"))
    ]
    for (const body of bodies) {
      for (let length = 5; length < body.length; length++) {
        assert.deepStrictEqual(badPacket(body.subarray(0, length)), { id: 46, reason: "Truncated" })
      }
    }
  })

  it("caps the extended attribute count", () => {
    const count = (n: number, ...rest: Array<Buffer>) =>
      request(SftpPacket.Setstat, 47, str("/a"), u32(SftpAttrFlag.Extended), u32(n), ...rest)
    assert.deepStrictEqual(badPacket(count(0xffffffff)), { id: 47, reason: "TooManyExtendedAttributes" })
    assert.deepStrictEqual(badPacket(count(65)), { id: 47, reason: "TooManyExtendedAttributes" })
    // 64 pairs need at least 512 more bytes.
    assert.deepStrictEqual(badPacket(count(64, Buffer.alloc(511))), { id: 47, reason: "Truncated" })
    const sixtyFour = decoded(count(64, Buffer.alloc(512)))
    assert.strictEqual(sixtyFour._tag === "Setstat" ? sixtyFour.attrs.extended?.length : -1, 64)
    assert.deepStrictEqual(decoded(count(0)), { _tag: "Setstat", id: 47, path: "/a", attrs: { extended: [] } })
  })

  it("refuses invalid UTF-8 in paths and names, with the request id", () => {
    const invalid = [
      Buffer.from([0xff, 0xfe]),
      Buffer.from([0x61, 0x80]),
      Buffer.from([0xc0, 0xaf]), // overlong "/"
      Buffer.from([0xed, 0xa0, 0x80]), // UTF-16 surrogate
      Buffer.from([0xe6, 0x96]) // truncated sequence
    ]
    for (const bytes of invalid) {
      assert.deepStrictEqual(badPacket(request(SftpPacket.Stat, 48, str(bytes))), { id: 48, reason: "InvalidUtf8" })
      assert.deepStrictEqual(badPacket(request(SftpPacket.Rename, 49, str("ok"), str(bytes))), {
        id: 49,
        reason: "InvalidUtf8"
      })
    }
    assert.deepStrictEqual(badPacket(request(SftpPacket.Extended, 50, str(Buffer.from([0xff])))), {
      id: 50,
      reason: "InvalidUtf8"
    })
    const badAttrName = request(
      SftpPacket.Setstat,
      51,
      str("/a"),
      u32(SftpAttrFlag.Extended),
      u32(1),
      str(Buffer.from([0xff])),
      str("")
    )
    assert.deepStrictEqual(badPacket(badAttrName), { id: 51, reason: "InvalidUtf8" })
    // NUL and control characters are valid UTF-8: path policy belongs to VirtualPath, not the codec.
    assert.deepStrictEqual(decoded(request(SftpPacket.Stat, 52, str("a\u0000\n"))), {
      _tag: "Stat",
      id: 52,
      path: "a\u0000\n"
    })
  })

  it("refuses 64-bit numbers above Number.MAX_SAFE_INTEGER", () => {
    const read = (offset: bigint) => request(SftpPacket.Read, 53, str(handle), u64(offset), u32(1))
    assert.deepStrictEqual(decoded(read(BigInt(Number.MAX_SAFE_INTEGER))), {
      _tag: "Read",
      id: 53,
      handle,
      offset: Number.MAX_SAFE_INTEGER,
      length: 1
    })
    for (const offset of [2n ** 53n, 2n ** 63n, 2n ** 64n - 1n]) {
      assert.deepStrictEqual(badPacket(read(offset)), { id: 53, reason: "NumberTooLarge" })
    }
    const size = request(SftpPacket.Setstat, 54, str("/a"), u32(SftpAttrFlag.Size), u64(2n ** 60n))
    assert.deepStrictEqual(badPacket(size), { id: 54, reason: "NumberTooLarge" })
    const copy = extended(55, "copy-data", str(handle), u64(0), u64(2n ** 64n - 1n), str(handle), u64(0))
    assert.deepStrictEqual(badPacket(copy), { id: 55, reason: "NumberTooLarge" })
  })

  it("refuses handles over 256 bytes", () => {
    const withHandle = (h: Buffer) => request(SftpPacket.Read, 56, str(h), u64(0), u32(1))
    assert.strictEqual(decoded(withHandle(Buffer.alloc(256, 1)))._tag, "Read")
    assert.deepStrictEqual(badPacket(withHandle(Buffer.alloc(257, 1))), { id: 56, reason: "HandleTooLong" })
    assert.deepStrictEqual(badPacket(extended(57, "fsync@openssh.com", str(Buffer.alloc(300)))), {
      id: 57,
      reason: "HandleTooLong"
    })
    assert.deepStrictEqual(decoded(request(SftpPacket.Close, 58, str(""))), {
      _tag: "Close",
      id: 58,
      handle: Buffer.alloc(0)
    })
  })

  it("decodes unknown extensions generically so the reply can carry the id", () => {
    assert.deepStrictEqual(decoded(extended(59, "foo@example.com", u32(1), Buffer.from("x"))), {
      _tag: "Extended",
      id: 59,
      name: "foo@example.com",
      payload: Buffer.concat([u32(1), Buffer.from("x")])
    })
    assert.deepStrictEqual(decoded(extended(60, "")), { _tag: "Extended", id: 60, name: "", payload: Buffer.alloc(0) })
    // A known name is matched exactly.
    assert.strictEqual(decoded(extended(61, "LIMITS@openssh.com"))._tag, "Extended")
  })
})

// ---------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------

const pushAll = (
  chunks: ReadonlyArray<Buffer>,
  maxPacketLength?: number
): Result.Result<ReadonlyArray<Buffer>, FrameError> => {
  const reader = makePacketReader(maxPacketLength === undefined ? undefined : { maxPacketLength })
  const packets: Array<Buffer> = []
  for (const chunk of chunks) {
    const result = reader.push(chunk)
    if (Result.isFailure(result)) return result
    packets.push(...result.success)
  }
  return Result.succeed(packets)
}

const framed = (chunks: ReadonlyArray<Buffer>, maxPacketLength?: number): ReadonlyArray<Buffer> => {
  const result = pushAll(chunks, maxPacketLength)
  if (Result.isFailure(result)) return assert.fail(`unexpected ${result.failure.reason}`)
  return result.success
}

const frameFailure = (chunks: ReadonlyArray<Buffer>, maxPacketLength?: number) => {
  const result = pushAll(chunks, maxPacketLength)
  if (Result.isSuccess(result)) return assert.fail("framed")
  return { reason: result.failure.reason, length: result.failure.length }
}

describe("PacketReader", () => {
  const bodies = [
    Buffer.concat([u8(SftpPacket.Init), u32(3)]),
    request(SftpPacket.Write, 1, str(handle), u64(0), str("some data")),
    Buffer.from([SftpPacket.Extended]),
    request(SftpPacket.Stat, 2, str("/a/b")),
    request(SftpPacket.Close, 3, str(handle))
  ]
  const stream = Buffer.concat(bodies.map(frame))

  it("yields packets whatever the split point", () => {
    for (let split = 0; split <= stream.length; split++) {
      const packets = framed([stream.subarray(0, split), stream.subarray(split)])
      assert.deepStrictEqual(packets, bodies, `split at ${split}`)
    }
  })

  it("yields packets from two split points and from single bytes", () => {
    for (let first = 0; first <= stream.length; first += 3) {
      for (let second = first; second <= stream.length; second += 2) {
        const chunks = [stream.subarray(0, first), stream.subarray(first, second), stream.subarray(second)]
        assert.deepStrictEqual(framed(chunks), bodies)
      }
    }
    const bytes = Array.from(stream, (byte) => Buffer.from([byte]))
    assert.deepStrictEqual(framed(bytes), bodies)
  })

  it("copies every packet out of the chunk and counts what it buffers", () => {
    const reader = makePacketReader()
    const chunk = Buffer.from(stream)
    const result = reader.push(chunk)
    assert.isTrue(Result.isSuccess(result))
    if (Result.isFailure(result)) return
    const copies = result.success.map((packet) => Buffer.from(packet))
    chunk.fill(0)
    assert.deepStrictEqual(result.success, copies, "the chunk can be reused once push returns")
    assert.strictEqual(reader.buffered(), 0)
    assert.isTrue(Result.isSuccess(reader.push(stream.subarray(0, 2))))
    assert.strictEqual(reader.buffered(), 2)
    assert.isTrue(Result.isSuccess(reader.push(stream.subarray(2, 7))))
    assert.strictEqual(reader.buffered(), 3)
  })

  it("gives a packet of 4 KiB or more an ArrayBuffer of its own, so a WRITE can free it", () => {
    const body = Buffer.alloc(4096, 5)
    const [packet] = framed([frame(body)])
    assert.deepStrictEqual(packet, body)
    assert.strictEqual(packet?.byteOffset, 0)
    assert.strictEqual(packet?.buffer.byteLength, 4096)
  })

  it("accepts a packet exactly at maxPacketLength and refuses one byte more", () => {
    const atMax = Buffer.alloc(defaultMaxPacketLength, 0xaa)
    atMax[0] = SftpPacket.Extended
    assert.deepStrictEqual(framed([frame(atMax)]), [atMax])
    assert.deepStrictEqual(frameFailure([u32(defaultMaxPacketLength + 1)]), {
      reason: "PacketTooLong",
      length: defaultMaxPacketLength + 1
    })
    assert.deepStrictEqual(frameFailure([u32(0xffffffff)]), { reason: "PacketTooLong", length: 0xffffffff })
    assert.deepStrictEqual(frameFailure([frame(Buffer.alloc(101))], 100), { reason: "PacketTooLong", length: 101 })
    assert.deepStrictEqual(framed([frame(Buffer.alloc(100))], 100), [Buffer.alloc(100)])
  })

  it("refuses a length field of 0, even when split", () => {
    assert.deepStrictEqual(frameFailure([u32(0)]), { reason: "EmptyPacket", length: 0 })
    assert.deepStrictEqual(frameFailure([Buffer.from([0]), Buffer.from([0, 0]), Buffer.from([0, 9])]), {
      reason: "EmptyPacket",
      length: 0
    })
  })

  it("stays failed after a frame error", () => {
    const reader = makePacketReader()
    assert.isTrue(Result.isFailure(reader.push(Buffer.concat([frame(bodies[0] ?? Buffer.alloc(1)), u32(0)]))))
    assert.isTrue(Result.isFailure(reader.push(frame(Buffer.from([1, 0, 0, 0, 3])))))
    assert.strictEqual(reader.buffered(), 0)
  })

  it("buffers at most one incomplete packet, fed in small or large chunks", () => {
    const body = Buffer.alloc(defaultMaxPacketLength, 7)
    const packet = frame(body)
    for (const size of [1, 1000, 65536]) {
      const reader = makePacketReader()
      const out: Array<Buffer> = []
      for (let at = 0; at < packet.length; at += size) {
        const result = reader.push(packet.subarray(at, at + size))
        if (Result.isFailure(result)) return assert.fail(result.failure.reason)
        out.push(...result.success)
        assert.isAtMost(reader.buffered(), defaultMaxPacketLength + 4)
      }
      assert.strictEqual(out.length, 1)
      assert.isTrue(out[0]?.equals(body))
      assert.strictEqual(reader.buffered(), 0)
    }
  })

  it("ignores empty chunks", () => {
    const chunks = [Buffer.alloc(0), stream.subarray(0, 3), Buffer.alloc(0), stream.subarray(3)]
    assert.deepStrictEqual(framed(chunks), bodies)
  })
})

// ---------------------------------------------------------------------------------------------
// Encoding: exact bytes
// ---------------------------------------------------------------------------------------------

describe("encoders", () => {
  it("encodeStatus", () => {
    assert.deepStrictEqual(
      encodeStatus(7, SftpStatus.NoSuchFile, "No such file"),
      hex(`0000001d 65 00000007 00000002 0000000c ${ascii("No such file")} 00000000`)
    )
    assert.deepStrictEqual(
      encodeStatus(0xffffffff, SftpStatus.Ok, "", "en"),
      hex(`00000013 65 ffffffff 00000000 00000000 00000002 ${ascii("en")}`)
    )
  })

  it("encodeHandle", () => {
    assert.deepStrictEqual(encodeHandle(1, Buffer.from([0, 0, 0, 5])), hex("0000000d 66 00000001 00000004 00000005"))
  })

  it("encodeData and encodeDataHeader", () => {
    const data = Buffer.from("abc")
    const expected = hex(`0000000c 67 00000009 00000003 ${ascii("abc")}`)
    assert.deepStrictEqual(encodeData(9, data), expected)
    assert.deepStrictEqual(encodeDataHeader(9, 3), expected.subarray(0, 13))
    assert.deepStrictEqual(Buffer.concat([encodeDataHeader(9, 3), data]), expected)
    assert.deepStrictEqual(encodeData(1, new Uint8Array(0)), hex("00000009 67 00000001 00000000"))
  })

  it("encodeName", () => {
    assert.deepStrictEqual(encodeName(5, []), hex("00000009 68 00000005 00000000"))
    assert.deepStrictEqual(
      encodeName(3, [
        { filename: "a", longname: "-rw", attrs: { size: 5, permissions: 0o100644 } },
        { filename: "é", longname: "d", attrs: {} }
      ]),
      hex(
        "00000034 68 00000003 00000002" +
          `00000001 ${ascii("a")} 00000003 ${ascii("-rw")} 00000005 0000000000000005 000081a4` +
          "00000002 c3a9 00000001 64 00000000"
      )
    )
  })

  it("encodePathReply", () => {
    assert.deepStrictEqual(
      encodePathReply(4, "/home"),
      hex(`0000001f 68 00000004 00000001 00000005 ${ascii("/home")} 00000005 ${ascii("/home")} 00000000`)
    )
  })

  it("encodeAttrs", () => {
    assert.deepStrictEqual(
      encodeAttrs(9, fullAttrs),
      hex(
        "0000004a 69 00000009 8000000f" +
          "0000010000000003" + // size 2^40 + 3
          "000003e8 00000064" + // uid 1000, gid 100
          "000081a4" + // 0o100644
          "6553f100 6553f101" + // atime, mtime
          "00000002" +
          `0000000d ${ascii("a@example.com")} 00000003 010203` +
          `00000001 ${ascii("b")} 00000000`
      )
    )
    assert.deepStrictEqual(encodeAttrs(1, {}), hex("00000009 69 00000001 00000000"))
    // uid without gid, atime without mtime and an empty extended list are left out.
    assert.deepStrictEqual(
      encodeAttrs(1, { uid: 5, mtime: 6, extended: [], permissions: 0o40755 }),
      hex("0000000d 69 00000001 00000004 000041ed")
    )
    // Out-of-range numbers wrap like C casts instead of throwing.
    assert.deepStrictEqual(
      encodeAttrs(2, { atime: -1, mtime: 2 ** 32 + 1 }),
      hex("00000011 69 00000002 00000008 ffffffff 00000001")
    )
  })

  it("encodeAttrs output decodes back to the same attributes", () => {
    const reply = encodeAttrs(1, fullAttrs)
    const asSetstat = Buffer.concat([u8(SftpPacket.Setstat), u32(1), str("/x"), reply.subarray(9)])
    assert.deepStrictEqual(decoded(asSetstat), { _tag: "Setstat", id: 1, path: "/x", attrs: fullAttrs })
  })

  it("encodeVersion", () => {
    assert.deepStrictEqual(encodeVersion([]), hex("00000005 02 00000003"))
    assert.deepStrictEqual(
      encodeVersion([
        ["posix-rename@openssh.com", "1"],
        ["statvfs@openssh.com", "2"]
      ]),
      hex(
        "00000042 02 00000003" +
          `00000018 ${ascii("posix-rename@openssh.com")} 00000001 31` +
          `00000013 ${ascii("statvfs@openssh.com")} 00000001 32`
      )
    )
    assert.deepStrictEqual(encodeVersion([], 6), hex("00000005 02 00000006"))
  })

  it("encodeExtendedReply", () => {
    assert.deepStrictEqual(encodeExtendedReply(2, Buffer.from([9, 8])), hex("00000007 c9 00000002 0908"))
  })

  it("encodeStatvfsReply", () => {
    assert.deepStrictEqual(
      encodeStatvfsReply(12, {
        bsize: 4096,
        frsize: 4096,
        blocks: 2 ** 32 + 1,
        bfree: 1,
        bavail: 2,
        files: 3,
        ffree: 4,
        favail: 5,
        fsid: Number.MAX_SAFE_INTEGER,
        flag: SftpStatvfsFlag.ReadOnly | SftpStatvfsFlag.NoSuid,
        namemax: 255
      }),
      hex(
        "0000005d c9 0000000c" +
          "0000000000001000 0000000000001000 0000000100000001" +
          "0000000000000001 0000000000000002 0000000000000003" +
          "0000000000000004 0000000000000005 001fffffffffffff" +
          "0000000000000003 00000000000000ff"
      )
    )
  })

  it("encodeLimitsReply", () => {
    assert.deepStrictEqual(
      encodeLimitsReply(13, {
        maxPacketLength: 262144,
        maxReadLength: 261120,
        maxWriteLength: 261120,
        maxOpenHandles: 0
      }),
      hex("00000025 c9 0000000d 0000000000040000 000000000003fc00 000000000003fc00 0000000000000000")
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Long names
// ---------------------------------------------------------------------------------------------

describe("formatLongname", () => {
  const at = (year: number, month: number, day: number, hours = 0, minutes = 0) =>
    Date.UTC(year, month - 1, day, hours, minutes) / 1000
  const now = at(2024, 1, 2, 8, 0)
  const file = { permissions: 0o100644, size: 1234, uid: 1000, gid: 1000, mtime: at(2024, 1, 1, 12, 34) }

  it("lays out a regular file like OpenSSH's ls_file", () => {
    assert.strictEqual(
      formatLongname("name", file, now),
      "-rw-r--r--    1 1000     1000         1234 Jan  1 12:34 name"
    )
  })

  it("shows file types, link counts and wide columns", () => {
    const cases: ReadonlyArray<readonly [number, string]> = [
      [0o040755, "drwxr-xr-x"],
      [0o120777, "lrwxrwxrwx"],
      [0o010600, "prw-------"],
      [0o020620, "crw--w----"],
      [0o060660, "brw-rw----"],
      [0o140755, "srwxr-xr-x"],
      [0o000644, "?rw-r--r--"]
    ]
    for (const [permissions, mode] of cases) {
      assert.strictEqual(formatLongname("x", { ...file, permissions }, now).slice(0, 10), mode)
    }
    assert.strictEqual(
      formatLongname(
        "dir",
        { ...file, permissions: 0o040755, nlink: 12, uid: 123456789, gid: 0, size: 12345678901 },
        now
      ),
      "drwxr-xr-x   12 123456789 0        12345678901 Jan  1 12:34 dir"
    )
  })

  it("shows setuid, setgid and sticky bits with and without execute", () => {
    const cases: ReadonlyArray<readonly [number, string]> = [
      [0o104755, "-rwsr-xr-x"],
      [0o104644, "-rwSr--r--"],
      [0o102755, "-rwxr-sr-x"],
      [0o102745, "-rwxr-Sr-x"],
      [0o041777, "drwxrwxrwt"],
      [0o041776, "drwxrwxrwT"],
      [0o107777, "-rwsrwsrwt"],
      [0o107000, "---S--S--T"]
    ]
    for (const [permissions, mode] of cases) {
      assert.strictEqual(formatLongname("x", { ...file, permissions }, now).slice(0, 10), mode)
    }
  })

  it("shows the year for old and future dates, the time within half a year", () => {
    const date = (mtime: number) => formatLongname("n", { ...file, mtime }, now).slice(43, 55)
    assert.strictEqual(date(at(2020, 3, 5, 10, 0)), "Mar  5  2020")
    assert.strictEqual(date(at(2023, 12, 25, 23, 59)), "Dec 25 23:59")
    assert.strictEqual(date(now), "Jan  2 08:00")
    assert.strictEqual(date(now + 60), "Jan  2  2024")
    const halfYear = (365 * 24 * 60 * 60) / 2
    assert.strictEqual(date(now - halfYear + 1), "Jul  3 20:00")
    assert.strictEqual(date(now - halfYear), "Jul  3  2023")
    assert.strictEqual(date(0), "Jan  1  1970")
  })

  it("replaces control characters in the name with '?'", () => {
    const line = formatLongname("a\nb\u001b[31mred\u0007\u007f\u009b\tz é", file, now)
    assert.isTrue(line.endsWith(" a?b?[31mred????z é"))
    assert.notMatch(line, /[\u0000-\u001f\u007f-\u009f]/)
  })
})

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

// mulberry32: a small seeded PRNG, so failures reproduce.
const makeRandom = (seed: number) => {
  let state = seed >>> 0
  return (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

describe("hostile input", () => {
  const seeds: ReadonlyArray<Buffer> = [
    Buffer.concat([u8(SftpPacket.Init), u32(3)]),
    request(SftpPacket.Open, 1, str("/f"), u32(SftpOpenFlag.Read), attrsBytes(fullAttrs)),
    request(SftpPacket.Read, 2, str(handle), u64(10), u32(100)),
    request(SftpPacket.Write, 3, str(handle), u64(10), str("data")),
    request(SftpPacket.Setstat, 4, str("/s"), attrsBytes(fullAttrs)),
    request(SftpPacket.Fsetstat, 5, str(handle), attrsBytes({ size: 1 })),
    request(SftpPacket.Rename, 6, str("a"), str("b")),
    request(SftpPacket.Symlink, 7, str("a"), str("b")),
    extended(8, "copy-data", str(handle), u64(10), u64(0), str(otherHandle), u64(2)),
    extended(9, "lsetstat@openssh.com", str("/l"), attrsBytes(fullAttrs)),
    extended(10, "posix-rename@openssh.com", str("a"), str("b")),
    extended(11, "foo@example.com", str("a"))
  ]

  const mutate = (random: () => number, input: Buffer): Buffer => {
    const bytes = Buffer.from(input)
    const pick = (n: number) => Math.floor(random() * n)
    switch (pick(4)) {
      case 0: {
        const flips = 1 + pick(4)
        for (let i = 0; i < flips; i++) {
          const at = pick(bytes.length)
          bytes[at] = (bytes[at] ?? 0) ^ (1 << pick(8))
        }
        return bytes
      }
      case 1:
        return bytes.subarray(0, pick(bytes.length))
      case 2: {
        // Overwrite a would-be length field with an interesting value.
        const values = [0, 1, 0x7fffffff, 0x80000000, 0xffffffff, bytes.length, bytes.length + 1, pick(2 ** 32)]
        if (bytes.length >= 4) bytes.writeUInt32BE(values[pick(values.length)] ?? 0, pick(bytes.length - 3))
        return bytes
      }
      default:
        return Buffer.concat([bytes, Buffer.from(Array.from({ length: pick(16) }, () => pick(256)))])
    }
  }

  const runThrough = (random: () => number, stream: Buffer): unknown => {
    try {
      const reader = makePacketReader({ maxPacketLength: 1 + Math.floor(random() * 1024) })
      let at = 0
      while (at < stream.length) {
        const size = 1 + Math.floor(random() * 64)
        const result = reader.push(stream.subarray(at, at + size))
        at += size
        if (Result.isFailure(result)) break
        for (const body of result.success) decodeRequest(body)
        if (reader.buffered() > 1024 + 4) return new Error("buffered too much")
      }
      decodeRequest(stream)
      if (stream.length > 4) decodeRequest(stream.subarray(4))
      return undefined
    } catch (error) {
      return error
    }
  }

  it("never throws on random bytes", () => {
    const random = makeRandom(0x5eed)
    for (let i = 0; i < 2000; i++) {
      const stream = Buffer.from(Array.from({ length: Math.floor(random() * 300) }, () => Math.floor(random() * 256)))
      // Bias the first byte of the body towards known types.
      const types = [1, 3, 5, 6, 9, 10, 18, 20, 200]
      if (stream.length > 4 && random() < 0.7) stream[4] = types[Math.floor(random() * types.length)] ?? 0
      assert.isUndefined(runThrough(random, stream), `case ${i}`)
    }
  })

  it("never throws on mutations of valid packets", () => {
    const random = makeRandom(0xc0dec)
    for (let i = 0; i < 2000; i++) {
      const seed = seeds[i % seeds.length] ?? Buffer.alloc(0)
      let packet = frame(seed)
      const rounds = 1 + Math.floor(random() * 3)
      for (let r = 0; r < rounds; r++) packet = mutate(random, packet)
      assert.isUndefined(runThrough(random, Buffer.concat([packet, frame(seed)])), `case ${i}`)
    }
  })
})
