/**
 * The SFTP version 3 codec: framing of the channel byte stream into packets, decoding of
 * client requests and encoding of server replies (draft-ietf-secsh-filexfer-02, plus the
 * OpenSSH extensions of its PROTOCOL file, section 4).
 *
 * Pure functions over Buffers, with no I/O and no Effect. The session feeds channel data to a
 * `PacketReader`, passes each packet body to `decodeRequest`, and writes the Buffers the
 * `encode*` functions return (each one a complete packet, length prefix included).
 *
 * Every byte here comes from an unauthenticated-until-proven peer, so nothing in this module
 * throws on client input. Every length field is checked against the bytes that remain before
 * it is used, nothing is allocated from an unchecked length, and failures are values:
 * `FrameError` means the stream can no longer be framed and the session must close;
 * `BadPacket` carries the request id when one was read, so the caller can answer
 * SSH_FX_BAD_MESSAGE and carry on.
 */
import { isUtf8 } from "node:buffer"
import { Data, Result } from "effect"
import {
  defaultMaxPacketLength,
  maxHandleBytes,
  protocolVersion,
  SftpAttrFlag,
  SftpExtension,
  SftpFileType,
  SftpPacket
} from "./Wire.js"

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

/**
 * File attributes (filexfer-02 section 5). A field is present exactly when its flag was sent.
 * `permissions` is the whole st_mode, file type bits included, as OpenSSH sends it.
 * @category models
 */
export interface Attrs {
  readonly size?: number
  readonly uid?: number
  readonly gid?: number
  readonly permissions?: number
  readonly atime?: number
  readonly mtime?: number
  readonly extended?: ReadonlyArray<readonly [type: string, data: Buffer]>
}

/**
 * SSH_FXP_INIT: the client's protocol version. Extension pairs a client appends are ignored.
 * @category models
 */
export interface Init {
  readonly _tag: "Init"
  readonly version: number
}

/**
 * A request that names one path.
 * @category models
 */
export interface PathRequest<Tag extends string> {
  readonly _tag: Tag
  readonly id: number
  readonly path: string
}

/**
 * A request that names one path and carries attributes.
 * @category models
 */
export interface PathAttrsRequest<Tag extends string> {
  readonly _tag: Tag
  readonly id: number
  readonly path: string
  readonly attrs: Attrs
}

/**
 * A request on one open handle. Handles are opaque bytes (at most 256) aliasing the packet body.
 * @category models
 */
export interface HandleRequest<Tag extends string> {
  readonly _tag: Tag
  readonly id: number
  readonly handle: Buffer
}

/**
 * A request from an existing path to a new one (rename, posix-rename, hardlink).
 * @category models
 */
export interface TwoPathRequest<Tag extends string> {
  readonly _tag: Tag
  readonly id: number
  readonly oldPath: string
  readonly newPath: string
}

/**
 * SSH_FXP_OPEN: `pflags` is a mask of `SftpOpenFlag`; `attrs` are the attributes for a created file.
 * @category models
 */
export interface Open {
  readonly _tag: "Open"
  readonly id: number
  readonly path: string
  readonly pflags: number
  readonly attrs: Attrs
}

/**
 * SSH_FXP_CLOSE.
 * @category models
 */
export type Close = HandleRequest<"Close">

/**
 * SSH_FXP_READ: up to `length` bytes at `offset`.
 * @category models
 */
export interface Read {
  readonly _tag: "Read"
  readonly id: number
  readonly handle: Buffer
  readonly offset: number
  readonly length: number
}

/**
 * SSH_FXP_WRITE: `data` is a zero-copy view of the packet body.
 * @category models
 */
export interface Write {
  readonly _tag: "Write"
  readonly id: number
  readonly handle: Buffer
  readonly offset: number
  readonly data: Buffer
}

/**
 * SSH_FXP_LSTAT.
 * @category models
 */
export type Lstat = PathRequest<"Lstat">

/**
 * SSH_FXP_FSTAT.
 * @category models
 */
export type Fstat = HandleRequest<"Fstat">

/**
 * SSH_FXP_SETSTAT.
 * @category models
 */
export type Setstat = PathAttrsRequest<"Setstat">

/**
 * SSH_FXP_FSETSTAT.
 * @category models
 */
export interface Fsetstat {
  readonly _tag: "Fsetstat"
  readonly id: number
  readonly handle: Buffer
  readonly attrs: Attrs
}

/**
 * SSH_FXP_OPENDIR.
 * @category models
 */
export type Opendir = PathRequest<"Opendir">

/**
 * SSH_FXP_READDIR.
 * @category models
 */
export type Readdir = HandleRequest<"Readdir">

/**
 * SSH_FXP_REMOVE.
 * @category models
 */
export type Remove = PathRequest<"Remove">

/**
 * SSH_FXP_MKDIR.
 * @category models
 */
export type Mkdir = PathAttrsRequest<"Mkdir">

/**
 * SSH_FXP_RMDIR.
 * @category models
 */
export type Rmdir = PathRequest<"Rmdir">

/**
 * SSH_FXP_REALPATH. Version 3 has no control byte; OpenSSH clients send only the path.
 * @category models
 */
export type Realpath = PathRequest<"Realpath">

/**
 * SSH_FXP_STAT.
 * @category models
 */
export type Stat = PathRequest<"Stat">

/**
 * SSH_FXP_RENAME.
 * @category models
 */
export type Rename = TwoPathRequest<"Rename">

/**
 * SSH_FXP_READLINK.
 * @category models
 */
export type Readlink = PathRequest<"Readlink">

/**
 * SSH_FXP_SYMLINK: create `linkPath` pointing at `targetPath`.
 *
 * filexfer-02 puts linkpath first, but OpenSSH's sftp-server reversed the two and every
 * OpenSSH-compatible client sends targetpath first (OpenSSH PROTOCOL 4.1). The decoder reads
 * the OpenSSH order. Portcullis refuses symlink creation anyway; the order only matters for logs.
 * @category models
 */
export interface Symlink {
  readonly _tag: "Symlink"
  readonly id: number
  readonly linkPath: string
  readonly targetPath: string
}

/**
 * posix-rename@openssh.com: rename that replaces an existing `newPath`.
 * @category models
 */
export type PosixRename = TwoPathRequest<"PosixRename">

/**
 * statvfs@openssh.com.
 * @category models
 */
export type Statvfs = PathRequest<"Statvfs">

/**
 * fstatvfs@openssh.com.
 * @category models
 */
export type Fstatvfs = HandleRequest<"Fstatvfs">

/**
 * hardlink@openssh.com: link(oldPath, newPath), `oldPath` being the existing file.
 * @category models
 */
export type Hardlink = TwoPathRequest<"Hardlink">

/**
 * fsync@openssh.com.
 * @category models
 */
export type Fsync = HandleRequest<"Fsync">

/**
 * lsetstat@openssh.com: setstat that does not follow a final symlink.
 * @category models
 */
export type Lsetstat = PathAttrsRequest<"Lsetstat">

/**
 * limits@openssh.com: asks for the server's limits (answered by `encodeLimitsReply`).
 * @category models
 */
export interface Limits {
  readonly _tag: "Limits"
  readonly id: number
}

/**
 * expand-path@openssh.com: realpath with "~" expansion.
 * @category models
 */
export type ExpandPath = PathRequest<"ExpandPath">

/**
 * copy-data: server-side copy between two open handles. `readLength` 0 means "until EOF".
 * @category models
 */
export interface CopyData {
  readonly _tag: "CopyData"
  readonly id: number
  readonly readHandle: Buffer
  readonly readOffset: number
  readonly readLength: number
  readonly writeHandle: Buffer
  readonly writeOffset: number
}

/**
 * home-directory: the home of `username` ("" for the logged-in user).
 * @category models
 */
export interface HomeDirectory {
  readonly _tag: "HomeDirectory"
  readonly id: number
  readonly username: string
}

/**
 * An SSH_FXP_EXTENDED request the codec does not decode; the dispatcher answers OP_UNSUPPORTED.
 * `payload` is everything after the name, aliasing the packet body.
 * @category models
 */
export interface Extended {
  readonly _tag: "Extended"
  readonly id: number
  readonly name: string
  readonly payload: Buffer
}

/**
 * A packet type that is not a version 3 request (including reply types sent by a client).
 * `id` is the uint32 after the type byte when at least four bytes follow it.
 * @category models
 */
export interface Unknown {
  readonly _tag: "Unknown"
  readonly type: number
  readonly id: number | undefined
}

/**
 * Every request a client can send, as `decodeRequest` returns it.
 * @category models
 */
export type Request =
  | Init
  | Open
  | Close
  | Read
  | Write
  | Lstat
  | Fstat
  | Setstat
  | Fsetstat
  | Opendir
  | Readdir
  | Remove
  | Mkdir
  | Rmdir
  | Realpath
  | Stat
  | Rename
  | Readlink
  | Symlink
  | PosixRename
  | Statvfs
  | Fstatvfs
  | Hardlink
  | Fsync
  | Lsetstat
  | Limits
  | ExpandPath
  | CopyData
  | HomeDirectory
  | Extended
  | Unknown

/**
 * Why a packet body could not be decoded.
 * - Truncated: a field, or a length that claims more bytes than remain.
 * - InvalidUtf8: a path, name or attribute type that is not well-formed UTF-8.
 * - NumberTooLarge: a uint64 above Number.MAX_SAFE_INTEGER.
 * - HandleTooLong: a handle over 256 bytes.
 * - TooManyExtendedAttributes: more than 64 extended attribute pairs.
 * @category errors
 */
export type BadPacketReason =
  | "Truncated"
  | "InvalidUtf8"
  | "NumberTooLarge"
  | "HandleTooLong"
  | "TooManyExtendedAttributes"

/**
 * A framed packet whose body is malformed. With an `id` the caller can answer
 * SSH_FX_BAD_MESSAGE for that request; without one it should close the session.
 * @category errors
 */
export class BadPacket extends Data.TaggedError("BadPacket")<{
  readonly id: number | undefined
  readonly reason: BadPacketReason
}> {}

/**
 * The byte stream cannot be split into packets any more: a length field of 0, or one above
 * the reader's `maxPacketLength`. The session must be closed.
 * @category errors
 */
export class FrameError extends Data.TaggedError("FrameError")<{
  readonly reason: "EmptyPacket" | "PacketTooLong"
  readonly length: number
}> {}

// ---------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------

/**
 * Splits a byte stream into packet bodies (the bytes after each uint32 length).
 * @category models
 */
export interface PacketReader {
  /**
   * Appends one chunk and returns the packets it completed, in order. Every body is a copy
   * the reader allocated for that packet alone, so the chunk is no longer needed once `push`
   * returns (the SSH connection frees its socket reads then, see InboundBuffers). After a
   * `FrameError` every later push returns the same error; packets completed earlier in the
   * failing chunk are dropped with the session.
   */
  readonly push: (chunk: Buffer) => Result.Result<ReadonlyArray<Buffer>, FrameError>
  /** Bytes of an incomplete packet held between pushes, at most `maxPacketLength` + 4. */
  readonly buffered: () => number
}

/**
 * Options for {@link makePacketReader}.
 * @category models
 */
export interface PacketReaderOptions {
  /**
   * Largest accepted length field, in bytes. Default `defaultMaxPacketLength` (262144, as
   * OpenSSH). Values below 1 refuse every packet. Fixed for the reader's lifetime.
   */
  readonly maxPacketLength?: number
}

/**
 * Bodies of this size or more get an ArrayBuffer of their own, which a WRITE frees as
 * soon as its bytes are on disk (ReleaseMemory); smaller ones share Node's buffer pool.
 */
const ownBufferBytes = 4096

/**
 * Makes an incremental packet reader. Chunks may be split anywhere, including inside a
 * length field. The length is checked as soon as its four bytes arrive, before the body's
 * buffer is allocated, so a peer cannot make the reader hold more than `maxPacketLength`
 * bytes of an incomplete packet. Each body is copied once, straight into its own buffer: a
 * body of 4 KiB or more owns its whole ArrayBuffer, which a WRITE frees once it is on disk.
 * @category constructors
 */
export const makePacketReader = (options?: PacketReaderOptions): PacketReader => {
  const maxPacketLength = options?.maxPacketLength ?? defaultMaxPacketLength
  let failure: FrameError | undefined
  // The length field being assembled, one byte at a time when it straddles chunks.
  let lengthField = 0
  let lengthBytes = 0
  // The body being assembled, undefined while its length field is incomplete.
  let body: Buffer | undefined
  let bodyBytes = 0

  const push = (chunk: Buffer): Result.Result<ReadonlyArray<Buffer>, FrameError> => {
    if (failure !== undefined) return Result.fail(failure)
    const packets: Array<Buffer> = []
    const end = chunk.length
    let offset = 0
    while (offset < end) {
      if (body === undefined) {
        while (lengthBytes < 4 && offset < end) {
          lengthField = lengthField * 256 + chunk[offset]!
          lengthBytes++
          offset++
        }
        if (lengthBytes < 4) break
        if (lengthField === 0 || lengthField > maxPacketLength) {
          failure = new FrameError({ reason: lengthField === 0 ? "EmptyPacket" : "PacketTooLong", length: lengthField })
          lengthBytes = 0
          return Result.fail(failure)
        }
        body = lengthField >= ownBufferBytes ? Buffer.allocUnsafeSlow(lengthField) : Buffer.allocUnsafe(lengthField)
        bodyBytes = 0
        lengthField = 0
        lengthBytes = 0
      } else {
        // Buffer#copy, not set(subarray): no view object per SSH packet on the upload path.
        const copied = chunk.copy(body, bodyBytes, offset, Math.min(end, offset + body.length - bodyBytes))
        offset += copied
        bodyBytes += copied
        if (bodyBytes < body.length) break
        packets.push(body)
        body = undefined
        bodyBytes = 0
      }
    }
    return Result.succeed(packets)
  }

  return { push, buffered: () => lengthBytes + bodyBytes }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

// Reading state for one body. The first failure is recorded in `error`; every read after it
// returns a dummy value without touching the buffer, so decoders read all their fields in
// sequence and check `error` once at the end instead of after each field.
interface Cursor {
  readonly body: Buffer
  pos: number
  error: BadPacketReason | undefined
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

const noBytes = Buffer.alloc(0)

// High half of Number.MAX_SAFE_INTEGER (2^53 - 1): a larger high word cannot be represented exactly.
const maxSafeHighWord = 0x1fffff

// OpenSSH sets no limit, but a real client sends none; the cap bounds the work per packet.
const maxExtendedAttrs = 64

const readU32 = (c: Cursor): number => {
  if (c.error !== undefined) return 0
  if (c.body.length - c.pos < 4) {
    c.error = "Truncated"
    return 0
  }
  const value = c.body.readUInt32BE(c.pos)
  c.pos += 4
  return value
}

// Two uint32 halves rather than readBigUInt64BE: the same range check without a BigInt per READ/WRITE.
const readU64 = (c: Cursor): number => {
  if (c.error !== undefined) return 0
  if (c.body.length - c.pos < 8) {
    c.error = "Truncated"
    return 0
  }
  const high = c.body.readUInt32BE(c.pos)
  if (high > maxSafeHighWord) {
    c.error = "NumberTooLarge"
    return 0
  }
  const value = high * 0x1_0000_0000 + c.body.readUInt32BE(c.pos + 4)
  c.pos += 8
  return value
}

const readBytes = (c: Cursor): Buffer => {
  const length = readU32(c)
  if (c.error !== undefined) return noBytes
  if (length > c.body.length - c.pos) {
    c.error = "Truncated"
    return noBytes
  }
  const bytes = c.body.subarray(c.pos, c.pos + length)
  c.pos += length
  return bytes
}

// isUtf8 validates strictly (no overlongs, no surrogates) without throwing, which a fatal
// TextDecoder would do; only well-formed input is then decoded.
const readText = (c: Cursor): string => {
  const bytes = readBytes(c)
  if (c.error !== undefined) return ""
  if (!isUtf8(bytes)) {
    c.error = "InvalidUtf8"
    return ""
  }
  return bytes.toString("utf8")
}

const readHandle = (c: Cursor): Buffer => {
  const bytes = readBytes(c)
  if (c.error === undefined && bytes.length > maxHandleBytes) c.error = "HandleTooLong"
  return bytes
}

const readExtendedAttrs = (c: Cursor): Array<[string, Buffer]> => {
  const count = readU32(c)
  if (c.error !== undefined) return []
  if (count > maxExtendedAttrs) {
    c.error = "TooManyExtendedAttributes"
    return []
  }
  // Each pair is at least two empty strings: refuse a count the remaining bytes cannot hold.
  if (count * 8 > c.body.length - c.pos) {
    c.error = "Truncated"
    return []
  }
  const pairs: Array<[string, Buffer]> = []
  for (let i = 0; i < count && c.error === undefined; i++) pairs.push([readText(c), readBytes(c)])
  return pairs
}

// Unknown flag bits are ignored, as OpenSSH does: they announce no fields in version 3.
const readAttrs = (c: Cursor): Attrs => {
  const flags = readU32(c)
  const attrs: Mutable<Attrs> = {}
  if ((flags & SftpAttrFlag.Size) !== 0) attrs.size = readU64(c)
  if ((flags & SftpAttrFlag.UidGid) !== 0) {
    attrs.uid = readU32(c)
    attrs.gid = readU32(c)
  }
  if ((flags & SftpAttrFlag.Permissions) !== 0) attrs.permissions = readU32(c)
  if ((flags & SftpAttrFlag.AcModTime) !== 0) {
    attrs.atime = readU32(c)
    attrs.mtime = readU32(c)
  }
  if ((flags & SftpAttrFlag.Extended) !== 0) attrs.extended = readExtendedAttrs(c)
  return attrs
}

const decodeExtended = (c: Cursor, id: number): Request => {
  const name = readText(c)
  switch (name) {
    case SftpExtension.PosixRename:
      return { _tag: "PosixRename", id, oldPath: readText(c), newPath: readText(c) }
    case SftpExtension.Statvfs:
      return { _tag: "Statvfs", id, path: readText(c) }
    case SftpExtension.Fstatvfs:
      return { _tag: "Fstatvfs", id, handle: readHandle(c) }
    case SftpExtension.Hardlink:
      return { _tag: "Hardlink", id, oldPath: readText(c), newPath: readText(c) }
    case SftpExtension.Fsync:
      return { _tag: "Fsync", id, handle: readHandle(c) }
    case SftpExtension.Lsetstat:
      return { _tag: "Lsetstat", id, path: readText(c), attrs: readAttrs(c) }
    case SftpExtension.Limits:
      return { _tag: "Limits", id }
    case SftpExtension.ExpandPath:
      return { _tag: "ExpandPath", id, path: readText(c) }
    case SftpExtension.CopyData:
      return {
        _tag: "CopyData",
        id,
        readHandle: readHandle(c),
        readOffset: readU64(c),
        readLength: readU64(c),
        writeHandle: readHandle(c),
        writeOffset: readU64(c)
      }
    case SftpExtension.HomeDirectory:
      return { _tag: "HomeDirectory", id, username: readText(c) }
    default:
      return { _tag: "Extended", id, name, payload: c.body.subarray(c.pos) }
  }
}

// Packet types a client sends with an id: everything from OPEN to SYMLINK, and EXTENDED.
const isRequestType = (type: number): boolean =>
  (type >= SftpPacket.Open && type <= SftpPacket.Symlink) || type === SftpPacket.Extended

// Object literal fields are evaluated in source order, which is the wire order.
const decodeWithId = (c: Cursor, type: number, id: number): Request => {
  switch (type) {
    case SftpPacket.Open:
      return { _tag: "Open", id, path: readText(c), pflags: readU32(c), attrs: readAttrs(c) }
    case SftpPacket.Close:
      return { _tag: "Close", id, handle: readHandle(c) }
    case SftpPacket.Read:
      return { _tag: "Read", id, handle: readHandle(c), offset: readU64(c), length: readU32(c) }
    case SftpPacket.Write:
      return { _tag: "Write", id, handle: readHandle(c), offset: readU64(c), data: readBytes(c) }
    case SftpPacket.Lstat:
      return { _tag: "Lstat", id, path: readText(c) }
    case SftpPacket.Fstat:
      return { _tag: "Fstat", id, handle: readHandle(c) }
    case SftpPacket.Setstat:
      return { _tag: "Setstat", id, path: readText(c), attrs: readAttrs(c) }
    case SftpPacket.Fsetstat:
      return { _tag: "Fsetstat", id, handle: readHandle(c), attrs: readAttrs(c) }
    case SftpPacket.Opendir:
      return { _tag: "Opendir", id, path: readText(c) }
    case SftpPacket.Readdir:
      return { _tag: "Readdir", id, handle: readHandle(c) }
    case SftpPacket.Remove:
      return { _tag: "Remove", id, path: readText(c) }
    case SftpPacket.Mkdir:
      return { _tag: "Mkdir", id, path: readText(c), attrs: readAttrs(c) }
    case SftpPacket.Rmdir:
      return { _tag: "Rmdir", id, path: readText(c) }
    case SftpPacket.Realpath:
      return { _tag: "Realpath", id, path: readText(c) }
    case SftpPacket.Stat:
      return { _tag: "Stat", id, path: readText(c) }
    case SftpPacket.Rename:
      return { _tag: "Rename", id, oldPath: readText(c), newPath: readText(c) }
    case SftpPacket.Readlink:
      return { _tag: "Readlink", id, path: readText(c) }
    case SftpPacket.Symlink: {
      // OpenSSH order: targetpath, then linkpath (see `Symlink`).
      const targetPath = readText(c)
      return { _tag: "Symlink", id, linkPath: readText(c), targetPath }
    }
    case SftpPacket.Extended:
      return decodeExtended(c, id)
    default:
      return { _tag: "Unknown", type, id }
  }
}

/**
 * Decodes one packet body (type byte onwards, as `PacketReader` yields it) into a request.
 *
 * Bytes after a well-formed request are ignored, as OpenSSH's sftp-server ignores them, so
 * clients that append fields (a REALPATH control byte, INIT extension pairs) still work.
 * Strings that name files are checked to be UTF-8; handles and WRITE data are returned as
 * views of `body` without copying.
 * @category constructors
 */
export const decodeRequest = (body: Buffer): Result.Result<Request, BadPacket> => {
  if (body.length === 0) return Result.fail(new BadPacket({ id: undefined, reason: "Truncated" }))
  const type = body.readUInt8(0)
  const c: Cursor = { body, pos: 1, error: undefined }
  if (type === SftpPacket.Init) {
    const version = readU32(c)
    return c.error === undefined
      ? Result.succeed({ _tag: "Init", version })
      : Result.fail(new BadPacket({ id: undefined, reason: c.error }))
  }
  const id = readU32(c)
  if (c.error !== undefined) {
    return isRequestType(type)
      ? Result.fail(new BadPacket({ id: undefined, reason: c.error }))
      : Result.succeed({ _tag: "Unknown", type, id: undefined })
  }
  const request = decodeWithId(c, type, id)
  return c.error === undefined ? Result.succeed(request) : Result.fail(new BadPacket({ id, reason: c.error }))
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

// Ids, codes and attribute numbers are written with C cast semantics (`>>> 0`), so an
// out-of-range value (a pre-1970 mtime, say) wraps the way OpenSSH's `(u_int32_t)` casts do
// instead of throwing. Lengths are computed here and always fit.

const putU32 = (buf: Buffer, offset: number, value: number): number => buf.writeUInt32BE(value >>> 0, offset)

const putU64 = (buf: Buffer, offset: number, value: number): number =>
  buf.writeUInt32BE(value >>> 0, buf.writeUInt32BE(Math.floor(value / 0x1_0000_0000) >>> 0, offset))

// The buffer is sized exactly beforehand, so `write` always writes the whole string.
const putString = (buf: Buffer, offset: number, text: string): number => {
  const written = buf.write(text, offset + 4, "utf8")
  buf.writeUInt32BE(written, offset)
  return offset + 4 + written
}

const putBytes = (buf: Buffer, offset: number, bytes: Uint8Array): number => {
  buf.writeUInt32BE(bytes.length, offset)
  buf.set(bytes, offset + 4)
  return offset + 4 + bytes.length
}

// Writes length, type and id; what follows starts at offset 9.
const putHeader = (buf: Buffer, bodyLength: number, type: number, id: number): void => {
  buf.writeUInt32BE(bodyLength, 0)
  buf.writeUInt8(type, 4)
  buf.writeUInt32BE(id >>> 0, 5)
}

// Allocates a whole packet, header written.
const startPacket = (bodyLength: number, type: number, id: number): Buffer => {
  const buf = Buffer.allocUnsafe(4 + bodyLength)
  putHeader(buf, bodyLength, type, id)
  return buf
}

const attrsLength = (attrs: Attrs): number => {
  let length = 4
  if (attrs.size !== undefined) length += 8
  if (attrs.uid !== undefined && attrs.gid !== undefined) length += 8
  if (attrs.permissions !== undefined) length += 4
  if (attrs.atime !== undefined && attrs.mtime !== undefined) length += 8
  if (attrs.extended !== undefined && attrs.extended.length > 0) {
    length += 4
    for (const [type, data] of attrs.extended) length += 8 + Buffer.byteLength(type) + data.length
  }
  return length
}

const putAttrs = (buf: Buffer, offset: number, attrs: Attrs): number => {
  // The flags word is filled in last, from the fields actually written.
  let flags = 0
  let at = offset + 4
  if (attrs.size !== undefined) {
    flags |= SftpAttrFlag.Size
    at = putU64(buf, at, attrs.size)
  }
  if (attrs.uid !== undefined && attrs.gid !== undefined) {
    flags |= SftpAttrFlag.UidGid
    at = putU32(buf, putU32(buf, at, attrs.uid), attrs.gid)
  }
  if (attrs.permissions !== undefined) {
    flags |= SftpAttrFlag.Permissions
    at = putU32(buf, at, attrs.permissions)
  }
  if (attrs.atime !== undefined && attrs.mtime !== undefined) {
    flags |= SftpAttrFlag.AcModTime
    at = putU32(buf, putU32(buf, at, attrs.atime), attrs.mtime)
  }
  if (attrs.extended !== undefined && attrs.extended.length > 0) {
    flags |= SftpAttrFlag.Extended
    at = putU32(buf, at, attrs.extended.length)
    for (const [type, data] of attrs.extended) at = putBytes(buf, putString(buf, at, type), data)
  }
  putU32(buf, offset, flags)
  return at
}

/**
 * SSH_FXP_VERSION with the extensions the server announces, as `[name, version]` pairs
 * (OpenSSH PROTOCOL 4.2, e.g. `["posix-rename@openssh.com", "1"]`).
 * @category constructors
 */
export const encodeVersion = (
  extensions: ReadonlyArray<readonly [name: string, data: string]>,
  version: number = protocolVersion
): Buffer => {
  let bodyLength = 5
  for (const [name, data] of extensions) bodyLength += 8 + Buffer.byteLength(name) + Buffer.byteLength(data)
  const buf = Buffer.allocUnsafe(4 + bodyLength)
  buf.writeUInt32BE(bodyLength, 0)
  buf.writeUInt8(SftpPacket.Version, 4)
  let at = putU32(buf, 5, version)
  for (const [name, data] of extensions) at = putString(buf, putString(buf, at, name), data)
  return buf
}

/**
 * SSH_FXP_STATUS. `message` should be a fixed ASCII text chosen by the caller, never an
 * error's message or a host path.
 * @category constructors
 */
export const encodeStatus = (id: number, code: number, message: string, language: string = ""): Buffer => {
  const buf = startPacket(17 + Buffer.byteLength(message) + Buffer.byteLength(language), SftpPacket.Status, id)
  putString(buf, putString(buf, putU32(buf, 9, code), message), language)
  return buf
}

/**
 * SSH_FXP_HANDLE. Handles must be at most 256 bytes (not checked here; the handle table makes them).
 * @category constructors
 */
export const encodeHandle = (id: number, handle: Uint8Array): Buffer => {
  const buf = startPacket(9 + handle.length, SftpPacket.Handle, id)
  putBytes(buf, 9, handle)
  return buf
}

/**
 * SSH_FXP_DATA, copying `data` into the packet. For large reads prefer `encodeDataHeader`
 * and write the header and the data separately.
 * @category constructors
 */
export const encodeData = (id: number, data: Uint8Array): Buffer => {
  const buf = startPacket(9 + data.length, SftpPacket.Data, id)
  putBytes(buf, 9, data)
  return buf
}

/**
 * The first 13 bytes of an SSH_FXP_DATA packet carrying `length` bytes (packet length, type,
 * id, data length). Writing this header and then the data buffer itself produces the same
 * bytes as `encodeData` without copying the data.
 * @category constructors
 */
export const encodeDataHeader = (id: number, length: number): Buffer => {
  const buf = Buffer.allocUnsafe(dataHeaderLength)
  writeDataHeader(buf, id, length)
  return buf
}

/**
 * Length of the header `encodeDataHeader` makes.
 * @category models
 */
export const dataHeaderLength = 13

/**
 * Writes the DATA header for `length` bytes into the first `dataHeaderLength` bytes of
 * `buf`, for a reply whose data was read into `buf` right behind it.
 * @category constructors
 */
export const writeDataHeader = (buf: Buffer, id: number, length: number): void => {
  putHeader(buf, 9 + length, SftpPacket.Data, id)
  buf.writeUInt32BE(length, 9)
}

/**
 * One entry of an SSH_FXP_NAME reply. `filename` is the raw name; `longname` is for display
 * (see `formatLongname`).
 * @category models
 */
export interface NameEntry {
  readonly filename: string
  readonly longname: string
  readonly attrs: Attrs
}

/**
 * SSH_FXP_NAME, the reply to READDIR (and, with one entry, to REALPATH and READLINK).
 * @category constructors
 */
export const encodeName = (id: number, entries: ReadonlyArray<NameEntry>): Buffer => {
  let bodyLength = 9
  for (const entry of entries) {
    bodyLength += 8 + Buffer.byteLength(entry.filename) + Buffer.byteLength(entry.longname) + attrsLength(entry.attrs)
  }
  const buf = startPacket(bodyLength, SftpPacket.Name, id)
  let at = putU32(buf, 9, entries.length)
  for (const entry of entries) {
    at = putAttrs(buf, putString(buf, putString(buf, at, entry.filename), entry.longname), entry.attrs)
  }
  return buf
}

/**
 * SSH_FXP_NAME with one entry whose filename and longname are both `path` and whose
 * attributes are empty: the reply OpenSSH gives to REALPATH, READLINK, expand-path@openssh.com
 * and home-directory.
 * @category constructors
 */
export const encodePathReply = (id: number, path: string): Buffer =>
  encodeName(id, [{ filename: path, longname: path, attrs: {} }])

/**
 * SSH_FXP_ATTRS. uid/gid and atime/mtime travel in pairs: each pair is sent only when both
 * of its fields are present. `extended` is sent only when non-empty.
 * @category constructors
 */
export const encodeAttrs = (id: number, attrs: Attrs): Buffer => {
  const buf = startPacket(5 + attrsLength(attrs), SftpPacket.Attrs, id)
  putAttrs(buf, 9, attrs)
  return buf
}

/**
 * SSH_FXP_EXTENDED_REPLY with an arbitrary payload.
 * @category constructors
 */
export const encodeExtendedReply = (id: number, payload: Uint8Array): Buffer => {
  const buf = startPacket(5 + payload.length, SftpPacket.ExtendedReply, id)
  buf.set(payload, 9)
  return buf
}

/**
 * File system figures for a statvfs@openssh.com or fstatvfs@openssh.com reply, named after
 * struct statvfs. `flag` is a mask of `SftpStatvfsFlag`.
 * @category models
 */
export interface FileSystemStats {
  readonly bsize: number
  readonly frsize: number
  readonly blocks: number
  readonly bfree: number
  readonly bavail: number
  readonly files: number
  readonly ffree: number
  readonly favail: number
  readonly fsid: number
  readonly flag: number
  readonly namemax: number
}

/**
 * SSH_FXP_EXTENDED_REPLY for statvfs@openssh.com / fstatvfs@openssh.com: eleven uint64 in
 * OpenSSH's order (PROTOCOL 4.4).
 * @category constructors
 */
export const encodeStatvfsReply = (id: number, stats: FileSystemStats): Buffer => {
  const buf = startPacket(5 + 11 * 8, SftpPacket.ExtendedReply, id)
  const fields = [
    stats.bsize,
    stats.frsize,
    stats.blocks,
    stats.bfree,
    stats.bavail,
    stats.files,
    stats.ffree,
    stats.favail,
    stats.fsid,
    stats.flag,
    stats.namemax
  ]
  let at = 9
  for (const field of fields) at = putU64(buf, at, field)
  return buf
}

/**
 * Limits announced by a limits@openssh.com reply; 0 means "no fixed limit" (PROTOCOL 4.8).
 * @category models
 */
export interface ServerLimits {
  readonly maxPacketLength: number
  readonly maxReadLength: number
  readonly maxWriteLength: number
  readonly maxOpenHandles: number
}

/**
 * SSH_FXP_EXTENDED_REPLY for limits@openssh.com: four uint64.
 * @category constructors
 */
export const encodeLimitsReply = (id: number, limits: ServerLimits): Buffer => {
  const buf = startPacket(5 + 4 * 8, SftpPacket.ExtendedReply, id)
  putU64(
    buf,
    putU64(buf, putU64(buf, putU64(buf, 9, limits.maxPacketLength), limits.maxReadLength), limits.maxWriteLength),
    limits.maxOpenHandles
  )
  return buf
}

// ---------------------------------------------------------------------------------------------
// Long names
// ---------------------------------------------------------------------------------------------

/**
 * What `formatLongname` needs: the attributes of a READDIR entry plus its link count (1 when absent).
 * @category models
 */
export type LongnameAttrs = Attrs & {
  readonly permissions: number
  readonly size: number
  readonly uid: number
  readonly gid: number
  readonly mtime: number
  readonly nlink?: number
}

const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"] as const

// ls and OpenSSH show the time of day for files modified in the last half year, else the year.
const halfYearSeconds = (365 * 24 * 60 * 60) / 2

// C0 controls, DEL and C1 controls (U+009B is a one-character CSI on some terminals).
const controlCharacters = /[\u0000-\u001f\u007f-\u009f]/g

const fileTypeLetter = (mode: number): string => {
  switch (mode & SftpFileType.Mask) {
    case SftpFileType.Directory:
      return "d"
    case SftpFileType.Regular:
      return "-"
    case SftpFileType.Symlink:
      return "l"
    case SftpFileType.Fifo:
      return "p"
    case SftpFileType.Character:
      return "c"
    case SftpFileType.Block:
      return "b"
    case SftpFileType.Socket:
      return "s"
    default:
      return "?"
  }
}

const permissionBit = (mode: number, mask: number, letter: string): string => ((mode & mask) !== 0 ? letter : "-")

// The execute column also shows setuid/setgid ("s"/"S") or sticky ("t"/"T"); upper case means "without x".
const executeBit = (mode: number, execute: number, special: number, letter: "s" | "t"): string => {
  const canExecute = (mode & execute) !== 0
  if ((mode & special) === 0) return canExecute ? "x" : "-"
  return canExecute ? letter : letter.toUpperCase()
}

const modeString = (mode: number): string =>
  fileTypeLetter(mode) +
  permissionBit(mode, 0o400, "r") + permissionBit(mode, 0o200, "w") + executeBit(mode, 0o100, 0o4000, "s") +
  permissionBit(mode, 0o040, "r") + permissionBit(mode, 0o020, "w") + executeBit(mode, 0o010, 0o2000, "s") +
  permissionBit(mode, 0o004, "r") + permissionBit(mode, 0o002, "w") + executeBit(mode, 0o001, 0o1000, "t")

const dateString = (mtime: number, now: number): string => {
  const date = new Date(mtime * 1000)
  const month = months[date.getUTCMonth()] ?? "???"
  const day = String(date.getUTCDate()).padStart(2, " ")
  if (now - halfYearSeconds < mtime && now >= mtime) {
    const hours = String(date.getUTCHours()).padStart(2, "0")
    const minutes = String(date.getUTCMinutes()).padStart(2, "0")
    return `${month} ${day} ${hours}:${minutes}`
  }
  return `${month} ${day}  ${date.getUTCFullYear()}`
}

/**
 * The `ls -l` style longname of a READDIR entry, laid out as OpenSSH's ls_file() does:
 * `-rw-r--r--    1 1000     1000         1234 Jan  1 12:34 name`. Owner and group are numeric,
 * times are UTC, and `now` (seconds since the epoch) decides between "HH:MM" (modified within
 * the last half year) and the year.
 *
 * Control characters in `name` (C0, DEL, C1) become "?", as `ls -q` shows them: clients print
 * longnames verbatim, so a raw escape sequence in a file name would reach the user's
 * terminal. The NAME entry's `filename` stays raw, since clients need the real name.
 * @category constructors
 */
export const formatLongname = (name: string, attrs: LongnameAttrs, now: number): string =>
  `${modeString(attrs.permissions)}  ${String(attrs.nlink ?? 1).padStart(3)} ` +
  `${String(attrs.uid).padEnd(8)} ${String(attrs.gid).padEnd(8)} ${String(attrs.size).padStart(8)} ` +
  `${dateString(attrs.mtime, now)} ${name.replace(controlCharacters, "?")}`
