/**
 * A model of SFTP version 3 client requests for fast-check: arbitraries that
 * build valid packet bodies together with the request the decoder must return
 * for them, mutations that break those bodies the ways hostile clients do, and
 * a reference framer.
 *
 * The encoder here is written from the draft (filexfer-02) and OpenSSH's
 * PROTOCOL file, independently of src/protocols/sftp/Codec.ts, so a round trip
 * through the real decoder checks both. Values a valid request carries are kept
 * small where the server would act on them (sizes, offsets, lengths up to
 * 1 MiB), so a fuzzed session cannot make the server write terabytes of sparse
 * file; mutations may still produce any value.
 */
import fc from "fast-check"
import type { Attrs, Request } from "../../src/protocols/sftp/Codec.js"
import { SftpExtension, SftpPacket } from "../../src/protocols/sftp/Wire.js"

// --- encoding -------------------------------------------------------------------------------

export const u8 = (n: number): Buffer => Buffer.from([n & 0xff])
export const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return b
}
export const u64 = (n: number): Buffer => {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(n))
  return b
}
/** An SSH string: uint32 length, then the bytes (UTF-8 for a JS string). */
export const sshString = (s: string | Uint8Array): Buffer => {
  const bytes = typeof s === "string" ? Buffer.from(s, "utf8") : Buffer.from(s)
  return Buffer.concat([u32(bytes.length), bytes])
}

/** ATTRS with the flags of the fields present (uid/gid and atime/mtime in pairs). */
export const encodeAttrs = (a: Attrs): Buffer => {
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
    for (const [type, data] of a.extended) parts.push(sshString(type), sshString(data))
  }
  return Buffer.concat([u32(flags), ...parts])
}

/** A packet on the wire: uint32 length, then the body. */
export const frame = (body: Uint8Array): Buffer => Buffer.concat([u32(body.length), body])

// --- the model --------------------------------------------------------------------------------

/**
 * One valid request: its body (type byte first, no length prefix) and what
 * `decodeRequest` must make of it. `id` is undefined for INIT.
 */
export interface ModelRequest {
  readonly body: Buffer
  readonly expected: Request
}

const withId = (type: number, id: number, ...fields: ReadonlyArray<Buffer>): Buffer =>
  Buffer.concat([u8(type), u32(id), ...fields])

const extendedBody = (id: number, name: string, ...fields: ReadonlyArray<Buffer>): Buffer =>
  withId(SftpPacket.Extended, id, sshString(name), ...fields)

/** Path components that matter to a jail: traversal, separators, look-alikes, names of the tree. */
export const pathPieces: ReadonlyArray<string> = [
  "..", ".", "", "f", "d", "g", "e", "new", "t.tmp", "x.tmp", "alice", "alice2", "outside", "home", "sub", "..\\..",
  "\\", "a\\b", "%2e%2e", "\u2024\u2024", "\uff0e\uff0e", "~", " ", "é", "\u{1f642}", "\u0000", "\r", "\n", "\u001b[31m",
  "\u007f", "\u0085", "x".repeat(255), "y".repeat(256), "proc", "self", "root", "etc", "passwd",
  // Symlinks FuzzServer plants in the root, leading out of it.
  "out", "abs", "sib", "slash", "file-out"
]

/** Names that exist in the fuzz server's root after each reset (FuzzServer.ts), or could be created there. */
export const friendlyPaths: ReadonlyArray<string> = ["f", "/f", "d/g", "/d/g", "new", "/new", "d/new", "d", "d/e", "t.tmp", "x.tmp", "/", "."]

/**
 * Paths as a hostile client writes them: traversal pieces joined by "/" (maybe
 * absolute, maybe with a trailing "/"), random Unicode (NUL and controls
 * included), and over-long forms (unless `long` is false). `extra` adds pieces
 * such as host paths.
 */
export const pathArbitrary = (extra: ReadonlyArray<string> = [], options: { readonly long?: boolean } = {}): fc.Arbitrary<string> => {
  const piece = fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...pathPieces, ...extra) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 12 }) }
  )
  return fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...friendlyPaths) },
    {
      weight: 10,
      arbitrary: fc.tuple(fc.boolean(), fc.array(piece, { maxLength: 6 }), fc.boolean()).map(([absolute, parts, slash]) =>
        `${absolute ? "/" : ""}${parts.join("/")}${slash ? "/" : ""}`
      )
    },
    { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }) },
    {
      weight: options.long === false ? 0 : 1,
      arbitrary: fc.tuple(fc.constantFrom("../", "/a", "x", "//", "é/"), fc.integer({ min: 200, max: 2500 })).map(([unit, n]) => unit.repeat(n))
    }
  )
}

/** Small numbers a server acts on (sizes, offsets): at most 1 MiB. */
const smallNat = fc.oneof(fc.constantFrom(0, 1, 4095, 4096, 65536, 1 << 20), fc.nat({ max: 1 << 20 }))

const u32Arbitrary = fc.oneof(fc.constantFrom(0, 1, 0x7fffffff, 0x80000000, 0xffffffff), fc.nat({ max: 0xffffffff }))

/** Attributes as a client sends them; sizes stay small (see the module header). */
export const attrsArbitrary: fc.Arbitrary<Attrs> = fc.record(
  {
    size: smallNat,
    ids: fc.tuple(fc.constantFrom(0, 1000, 65534, 0xffffffff), fc.constantFrom(0, 100, 65534, 0xffffffff)),
    permissions: fc.oneof(fc.nat({ max: 0o177777 }), u32Arbitrary),
    times: fc.tuple(u32Arbitrary, u32Arbitrary),
    extended: fc.array(fc.tuple(fc.string({ unit: "binary", maxLength: 8 }), fc.uint8Array({ maxLength: 8 })), { maxLength: 3 })
  },
  { requiredKeys: [] }
).map((r) => {
  const attrs: { -readonly [K in keyof Attrs]: Attrs[K] } = {}
  if (r.size !== undefined) attrs.size = r.size
  if (r.ids !== undefined) [attrs.uid, attrs.gid] = r.ids
  if (r.permissions !== undefined) attrs.permissions = r.permissions
  if (r.times !== undefined) [attrs.atime, attrs.mtime] = r.times
  if (r.extended !== undefined) attrs.extended = r.extended.map(([type, data]) => [type, Buffer.from(data)] as const)
  return attrs
})

/**
 * Handles: mostly the 4-byte counters a fresh session hands out (1, 2, 3 ...),
 * so requests reach open files; sometimes foreign bytes up to the 256-byte limit.
 */
export const handleArbitrary: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 6 }).map((n) => u32(n)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 8 }).map((b) => Buffer.from(b)) },
  { weight: 1, arbitrary: fc.constantFrom(Buffer.alloc(256, 1), Buffer.alloc(0)) }
)

export const idArbitrary: fc.Arbitrary<number> = fc.oneof(fc.nat({ max: 1000 }), u32Arbitrary)

/** OPEN flags: mostly combinations of the six defined bits, sometimes any uint32. */
const pflagsArbitrary = fc.oneof({ weight: 5, arbitrary: fc.nat({ max: 0x3f }) }, { weight: 1, arbitrary: u32Arbitrary })

/**
 * Every request type of version 3 and every extension the codec knows, plus
 * unknown extensions, each valid. `path` makes the paths they carry.
 */
export const requestArbitrary = (
  path: fc.Arbitrary<string> = pathArbitrary(),
  handle: fc.Arbitrary<Buffer> = handleArbitrary
): fc.Arbitrary<ModelRequest> => {
  const id = idArbitrary
  const h = handle
  const pathOnly = <T extends "Lstat" | "Opendir" | "Remove" | "Rmdir" | "Realpath" | "Stat" | "Readlink">(tag: T, type: number) =>
    fc.tuple(id, path).map(([i, p]): ModelRequest => ({ body: withId(type, i, sshString(p)), expected: { _tag: tag, id: i, path: p } as Request }))
  const handleOnly = <T extends "Close" | "Fstat" | "Readdir">(tag: T, type: number) =>
    fc.tuple(id, h).map(([i, hd]): ModelRequest => ({ body: withId(type, i, sshString(hd)), expected: { _tag: tag, id: i, handle: hd } as Request }))
  const pathAttrs = <T extends "Setstat" | "Mkdir">(tag: T, type: number) =>
    fc.tuple(id, path, attrsArbitrary).map(([i, p, a]): ModelRequest => ({
      body: withId(type, i, sshString(p), encodeAttrs(a)),
      expected: { _tag: tag, id: i, path: p, attrs: a } as Request
    }))
  const twoPaths = <T extends "Rename" | "PosixRename" | "Hardlink">(tag: T, name?: string) =>
    fc.tuple(id, path, path).map(([i, a, b]): ModelRequest => ({
      body: name === undefined ? withId(SftpPacket.Rename, i, sshString(a), sshString(b)) : extendedBody(i, name, sshString(a), sshString(b)),
      expected: { _tag: tag, id: i, oldPath: a, newPath: b } as Request
    }))
  const extPath = <T extends "Statvfs" | "ExpandPath">(tag: T, name: string) =>
    fc.tuple(id, path).map(([i, p]): ModelRequest => ({ body: extendedBody(i, name, sshString(p)), expected: { _tag: tag, id: i, path: p } as Request }))
  const extHandle = <T extends "Fstatvfs" | "Fsync">(tag: T, name: string) =>
    fc.tuple(id, h).map(([i, hd]): ModelRequest => ({ body: extendedBody(i, name, sshString(hd)), expected: { _tag: tag, id: i, handle: hd } as Request }))
  const knownNames = new Set<string>(Object.values(SftpExtension))
  return fc.oneof(
    fc.nat({ max: 0xffffffff }).map((version): ModelRequest => ({
      body: Buffer.concat([u8(SftpPacket.Init), u32(version)]),
      expected: { _tag: "Init", version }
    })),
    fc.tuple(id, path, pflagsArbitrary, attrsArbitrary).map(([i, p, pflags, a]): ModelRequest => ({
      body: withId(SftpPacket.Open, i, sshString(p), u32(pflags), encodeAttrs(a)),
      expected: { _tag: "Open", id: i, path: p, pflags, attrs: a }
    })),
    handleOnly("Close", SftpPacket.Close),
    fc.tuple(id, h, smallNat, fc.oneof(fc.nat({ max: 300_000 }), u32Arbitrary)).map(([i, hd, offset, length]): ModelRequest => ({
      body: withId(SftpPacket.Read, i, sshString(hd), u64(offset), u32(length)),
      expected: { _tag: "Read", id: i, handle: hd, offset, length }
    })),
    fc.tuple(id, h, smallNat, fc.uint8Array({ maxLength: 64 })).map(([i, hd, offset, data]): ModelRequest => ({
      body: withId(SftpPacket.Write, i, sshString(hd), u64(offset), sshString(data)),
      expected: { _tag: "Write", id: i, handle: hd, offset, data: Buffer.from(data) }
    })),
    pathOnly("Lstat", SftpPacket.Lstat),
    handleOnly("Fstat", SftpPacket.Fstat),
    pathAttrs("Setstat", SftpPacket.Setstat),
    fc.tuple(id, h, attrsArbitrary).map(([i, hd, a]): ModelRequest => ({
      body: withId(SftpPacket.Fsetstat, i, sshString(hd), encodeAttrs(a)),
      expected: { _tag: "Fsetstat", id: i, handle: hd, attrs: a }
    })),
    pathOnly("Opendir", SftpPacket.Opendir),
    handleOnly("Readdir", SftpPacket.Readdir),
    pathOnly("Remove", SftpPacket.Remove),
    pathAttrs("Mkdir", SftpPacket.Mkdir),
    pathOnly("Rmdir", SftpPacket.Rmdir),
    pathOnly("Realpath", SftpPacket.Realpath),
    pathOnly("Stat", SftpPacket.Stat),
    twoPaths("Rename"),
    pathOnly("Readlink", SftpPacket.Readlink),
    // OpenSSH order: target first, then the link path.
    fc.tuple(id, path, path).map(([i, target, link]): ModelRequest => ({
      body: withId(SftpPacket.Symlink, i, sshString(target), sshString(link)),
      expected: { _tag: "Symlink", id: i, linkPath: link, targetPath: target }
    })),
    twoPaths("PosixRename", SftpExtension.PosixRename),
    extPath("Statvfs", SftpExtension.Statvfs),
    extHandle("Fstatvfs", SftpExtension.Fstatvfs),
    twoPaths("Hardlink", SftpExtension.Hardlink),
    extHandle("Fsync", SftpExtension.Fsync),
    fc.tuple(id, path, attrsArbitrary).map(([i, p, a]): ModelRequest => ({
      body: extendedBody(i, SftpExtension.Lsetstat, sshString(p), encodeAttrs(a)),
      expected: { _tag: "Lsetstat", id: i, path: p, attrs: a }
    })),
    id.map((i): ModelRequest => ({ body: extendedBody(i, SftpExtension.Limits), expected: { _tag: "Limits", id: i } })),
    extPath("ExpandPath", SftpExtension.ExpandPath),
    fc.tuple(id, h, smallNat, fc.integer({ min: 1, max: 65536 }), h, smallNat).map(([i, rh, ro, rl, wh, wo]): ModelRequest => ({
      body: extendedBody(i, SftpExtension.CopyData, sshString(rh), u64(ro), u64(rl), sshString(wh), u64(wo)),
      expected: { _tag: "CopyData", id: i, readHandle: rh, readOffset: ro, readLength: rl, writeHandle: wh, writeOffset: wo }
    })),
    fc.tuple(id, fc.constantFrom("", "alice", "bob", "../alice", "alice2")).map(([i, username]): ModelRequest => ({
      body: extendedBody(i, SftpExtension.HomeDirectory, sshString(username)),
      expected: { _tag: "HomeDirectory", id: i, username }
    })),
    fc.tuple(id, fc.string({ unit: "binary", maxLength: 24 }).filter((n) => !knownNames.has(n)), fc.uint8Array({ maxLength: 16 })).map(
      ([i, name, payload]): ModelRequest => ({
        body: Buffer.concat([extendedBody(i, name), payload]),
        expected: { _tag: "Extended", id: i, name, payload: Buffer.from(payload) }
      })
    )
  )
}

/**
 * OPEN requests likely to succeed (existing or creatable names, sensible flags),
 * so the handles 1, 2, 3 ... that `handleArbitrary` favours name open files.
 */
export const openArbitrary = (path: fc.Arbitrary<string> = fc.constantFrom(...friendlyPaths)): fc.Arbitrary<ModelRequest> =>
  fc.tuple(idArbitrary, path, fc.constantFrom(0x01, 0x02, 0x03, 0x0a, 0x0b, 0x1a, 0x1e, 0x2a, 0x06, 0x0e), attrsArbitrary).map(([i, p, pflags, a]) => ({
    body: withId(SftpPacket.Open, i, sshString(p), u32(pflags), encodeAttrs(a)),
    expected: { _tag: "Open", id: i, path: p, pflags, attrs: a }
  }))

const handleTags = new Set(["Close", "Read", "Write", "Fstat", "Fsetstat", "Readdir", "Fstatvfs", "Fsync", "CopyData"])

/**
 * An OPEN (of a file) or OPENDIR (of a directory) likely to succeed, then
 * requests on the first handles a fresh session hands out: a client working
 * on the files it opened. Meant to be sent one packet at a time.
 */
export const handleBurstArbitrary = (path: fc.Arbitrary<string> = fc.constantFrom(...friendlyPaths)): fc.Arbitrary<ReadonlyArray<ModelRequest>> =>
  fc.tuple(
    fc.oneof(
      { weight: 3, arbitrary: openArbitrary(path) },
      {
        weight: 1,
        arbitrary: fc.tuple(idArbitrary, fc.constantFrom("/", ".", "d", "d/e", "/d/")).map(([i, p]): ModelRequest => ({
          body: withId(SftpPacket.Opendir, i, sshString(p)),
          expected: { _tag: "Opendir", id: i, path: p }
        }))
      }
    ),
    fc.array(requestArbitrary(path, fc.constantFrom(u32(1), u32(2))).filter((r) => handleTags.has(r.expected._tag)), { minLength: 1, maxLength: 6 })
  ).map(([open, rest]) => [open, ...rest])

// --- mutations --------------------------------------------------------------------------------

/** One way to break a body; positions are taken modulo its length. */
export type Mutation =
  | { readonly _tag: "Flip"; readonly at: number; readonly bit: number }
  | { readonly _tag: "Set"; readonly at: number; readonly value: number }
  | { readonly _tag: "Length"; readonly at: number; readonly value: number }
  | { readonly _tag: "Truncate"; readonly at: number }
  | { readonly _tag: "Insert"; readonly at: number; readonly bytes: Uint8Array }
  | { readonly _tag: "Delete"; readonly at: number; readonly count: number }
  | { readonly _tag: "Type"; readonly type: number }
  | { readonly _tag: "InvalidUtf8"; readonly at: number; readonly bytes: Uint8Array }

/** Byte sequences that are not UTF-8: stray continuation, overlong, surrogate, beyond U+10FFFF, cut short. */
export const invalidUtf8: ReadonlyArray<Uint8Array> = [
  [0x80], [0xbf], [0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80], [0xf5, 0x80, 0x80, 0x80], [0xfe], [0xff], [0xe2, 0x82], [0xf0, 0x9f, 0x99]
].map((bytes) => Uint8Array.from(bytes))

export const mutationArbitrary: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ _tag: fc.constant("Flip" as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }),
  fc.record({ _tag: fc.constant("Set" as const), at: fc.nat(), value: fc.nat({ max: 255 }) }),
  fc.record({ _tag: fc.constant("Length" as const), at: fc.nat(), value: u32Arbitrary }),
  fc.record({ _tag: fc.constant("Truncate" as const), at: fc.nat() }),
  fc.record({ _tag: fc.constant("Insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ _tag: fc.constant("Delete" as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ _tag: fc.constant("Type" as const), type: fc.oneof(fc.integer({ min: 0, max: 21 }), fc.constantFrom(100, 101, 104, 200, 201), fc.nat({ max: 255 })) }),
  fc.record({ _tag: fc.constant("InvalidUtf8" as const), at: fc.nat(), bytes: fc.constantFrom(...invalidUtf8) })
)

/** Applies one mutation to a copy of `body`. */
export const mutate = (body: Buffer, m: Mutation): Buffer => {
  const n = body.length
  const out = Buffer.from(body)
  switch (m._tag) {
    case "Flip":
      if (n > 0) out[m.at % n] = out[m.at % n]! ^ (1 << m.bit)
      return out
    case "Set":
      if (n > 0) out[m.at % n] = m.value
      return out
    case "Length":
      if (n >= 4) out.writeUInt32BE(m.value >>> 0, m.at % (n - 3))
      return out
    case "Truncate":
      return out.subarray(0, n === 0 ? 0 : m.at % n)
    case "Insert": {
      const at = m.at % (n + 1)
      return Buffer.concat([out.subarray(0, at), m.bytes, out.subarray(at)])
    }
    case "Delete": {
      const at = n === 0 ? 0 : m.at % n
      return Buffer.concat([out.subarray(0, at), out.subarray(at + m.count)])
    }
    case "Type":
      if (n > 0) out[0] = m.type
      return out
    case "InvalidUtf8": {
      // Overwrite bytes in place, so string lengths still add up and the bad bytes reach a string.
      if (n === 0) return out
      const at = m.at % n
      out.set(m.bytes.subarray(0, n - at), at)
      return out
    }
  }
}

/** A valid request with one to three mutations. */
export const mutatedArbitrary = (requests: fc.Arbitrary<ModelRequest> = requestArbitrary()): fc.Arbitrary<Buffer> =>
  fc.tuple(requests, fc.array(mutationArbitrary, { minLength: 1, maxLength: 3 })).map(([request, mutations]) =>
    mutations.reduce(mutate, request.body)
  )

/**
 * Hostile bodies: random bytes (the type byte biased towards request types),
 * mutated valid requests, and valid requests.
 */
export const hostileBodyArbitrary = (requests: fc.Arbitrary<ModelRequest> = requestArbitrary()): fc.Arbitrary<Buffer> =>
  fc.oneof(
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)) },
    {
      weight: 2,
      arbitrary: fc.tuple(fc.oneof(fc.integer({ min: 1, max: 20 }), fc.constant(200), fc.nat({ max: 255 })), fc.uint8Array({ maxLength: 64 })).map(
        ([type, rest]) => Buffer.concat([u8(type), rest])
      )
    },
    { weight: 5, arbitrary: mutatedArbitrary(requests) },
    { weight: 3, arbitrary: requests.map((r) => r.body) }
  )

// --- reference framing ----------------------------------------------------------------------

/** What a correct framer makes of a whole stream. */
export interface Framed {
  /** Complete packet bodies, in order, up to the first bad length. */
  readonly bodies: ReadonlyArray<Buffer>
  /** The stream holds a length of 0 or above the limit (the session must end there). */
  readonly bad: { readonly reason: "EmptyPacket" | "PacketTooLong"; readonly length: number } | undefined
  /** Bytes of an unfinished packet at the end (length field included), when not bad. */
  readonly tail: number
  /** Bytes still missing to complete the unfinished packet (0 when there is none). */
  readonly missing: number
}

/** Splits a whole stream as the protocol says, written without the real reader's state machine. */
export const referenceFrames = (stream: Buffer, maxPacketLength: number): Framed => {
  const bodies: Array<Buffer> = []
  let at = 0
  while (stream.length - at >= 4) {
    const length = stream.readUInt32BE(at)
    if (length === 0 || length > maxPacketLength) {
      return { bodies, bad: { reason: length === 0 ? "EmptyPacket" : "PacketTooLong", length }, tail: 0, missing: 0 }
    }
    if (stream.length - at - 4 < length) return { bodies, bad: undefined, tail: stream.length - at, missing: length - (stream.length - at - 4) }
    bodies.push(stream.subarray(at + 4, at + 4 + length))
    at += 4 + length
  }
  const tail = stream.length - at
  return { bodies, bad: undefined, tail, missing: tail === 0 ? 0 : 4 - tail }
}

/** Cuts `bytes` at the given positions (taken modulo its length, sorted, deduplicated). */
export const split = (bytes: Buffer, cuts: ReadonlyArray<number>): Array<Buffer> => {
  const points = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % (bytes.length + 1))))].sort((a, b) => a - b)
  const chunks: Array<Buffer> = []
  let from = 0
  for (const point of points) {
    chunks.push(bytes.subarray(from, point))
    from = point
  }
  chunks.push(bytes.subarray(from))
  return chunks
}
