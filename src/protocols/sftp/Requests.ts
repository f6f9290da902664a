/**
 * What each SFTP request does: one handler per request type, each going
 * through the access check and then the session's jail handle. A handler
 * answers with the reply packets; every failure becomes a status through
 * Status.ts. READLINK and SYMLINK are refused: the server never reveals or
 * creates links.
 */
import { Effect, Result } from "effect"
import type { DirEntry, FileStat, FsStats, JailHandle, OpenMode, SetAttributes } from "../../services/Jail.js"
import { Events, UploadCompleted } from "../../services/Events.js"
import type { Principal } from "../../services/Principal.js"
import * as VirtualPath from "../../services/VirtualPath.js"
import type { Access } from "../common/Access.js"
import * as Codec from "./Codec.js"
import * as Handles from "./Handles.js"
import type { Reply } from "./ReplyWindow.js"
import { refused, type RequestError, statusOf } from "./Status.js"
import { SftpOpenFlag, SftpStatus } from "./Wire.js"

/**
 * Bounds of one SFTP session, reported to clients by limits@openssh.com.
 * @category models
 */
export interface SftpLimits {
  /** Largest packet accepted, in bytes. Default 262144 (as OpenSSH). */
  readonly maxPacketLength: number
  /** Largest READ answered, in bytes (longer requests get shorter replies). Default 261120. */
  readonly maxReadLength: number
  /** Largest WRITE accepted, in bytes. Default 261120. */
  readonly maxWriteLength: number
  /** Open file and directory handles per session. Default 256. */
  readonly maxOpenHandles: number
  /** Requests served concurrently per session; further packets wait unread. Default 64. */
  readonly maxRequestsInFlight: number
}

/**
 * The defaults of `SftpLimits`.
 * @category models
 */
export const defaultLimits: SftpLimits = {
  maxPacketLength: 262144,
  maxReadLength: 261120,
  maxWriteLength: 261120,
  maxOpenHandles: 256,
  maxRequestsInFlight: 64
}

/**
 * Extensions announced in VERSION: exactly those implemented below.
 * @category models
 */
export const extensions: ReadonlyArray<readonly [string, string]> = [
  ["posix-rename@openssh.com", "1"],
  ["statvfs@openssh.com", "2"],
  ["fstatvfs@openssh.com", "2"],
  ["hardlink@openssh.com", "1"],
  ["fsync@openssh.com", "1"],
  ["lsetstat@openssh.com", "1"],
  ["limits@openssh.com", "1"],
  ["expand-path@openssh.com", "1"],
  ["copy-data", "1"],
  ["home-directory", "1"]
]

/**
 * What a handler knows about its session.
 * @category models
 */
export interface RequestContext {
  readonly principal: Principal
  readonly jail: JailHandle
  readonly access: Access
  readonly handles: Handles.HandleTable
  readonly clientIp: string
  readonly tempExtensions: ReadonlyArray<string>
  readonly limits: SftpLimits
}

type Handled = Exclude<Codec.Request, Codec.Init | Codec.Unknown>

const ok = (id: number): Reply => [Codec.encodeStatus(id, SftpStatus.Ok, "Success")]

/** `f` of the resolved path, or the path's failure, without a step of its own. */
const withPath = <A, E, R>(
  path: string,
  f: (path: VirtualPath.VirtualPath) => Effect.Effect<A, E, R>
): Effect.Effect<A, E | VirtualPath.InvalidPath, R> => {
  const resolved = VirtualPath.resolve(VirtualPath.root, path)
  return Result.isSuccess(resolved) ? f(resolved.success) : Effect.fail(resolved.failure)
}

const resolve = (path: string): Effect.Effect<VirtualPath.VirtualPath, VirtualPath.InvalidPath> => withPath(path, Effect.succeed)

const toAttrs = (stat: FileStat): Codec.Attrs => ({
  size: stat.size,
  uid: stat.uid,
  gid: stat.gid,
  permissions: stat.mode,
  atime: Math.floor(stat.atimeMs / 1000),
  mtime: Math.floor(stat.mtimeMs / 1000)
})

const toSetAttributes = (attrs: Codec.Attrs): SetAttributes => ({
  ...(attrs.size !== undefined ? { size: attrs.size } : {}),
  ...(attrs.permissions !== undefined ? { mode: attrs.permissions & 0o7777 } : {}),
  ...(attrs.uid !== undefined ? { uid: attrs.uid, gid: attrs.gid ?? -1 } : {}),
  ...(attrs.atime !== undefined ? { atimeMs: attrs.atime * 1000, mtimeMs: (attrs.mtime ?? attrs.atime) * 1000 } : {})
})

const toFsStats = (s: FsStats): Codec.FileSystemStats => ({
  bsize: s.blockSize,
  frsize: s.fragmentSize,
  blocks: s.blocks,
  bfree: s.blocksFree,
  bavail: s.blocksAvailable,
  files: s.files,
  ffree: s.filesFree,
  favail: s.filesAvailable,
  fsid: s.fsid,
  flag: s.flags,
  namemax: s.nameMax
})

const openMode = (pflags: number): OpenMode => ({
  read: (pflags & SftpOpenFlag.Read) !== 0,
  write: (pflags & (SftpOpenFlag.Write | SftpOpenFlag.Append)) !== 0,
  create: (pflags & SftpOpenFlag.Create) !== 0,
  exclusive: (pflags & SftpOpenFlag.Exclusive) !== 0 && (pflags & SftpOpenFlag.Create) !== 0,
  truncate: (pflags & SftpOpenFlag.Truncate) !== 0,
  append: (pflags & SftpOpenFlag.Append) !== 0
})

const isTemporary = (ctx: RequestContext, path: string) => ctx.tempExtensions.some((ext) => ext.length > 0 && path.endsWith(ext))

const file = (ctx: RequestContext, handle: Uint8Array): Effect.Effect<Handles.FileEntry, RequestError> => {
  const entry = ctx.handles.find(handle)
  return entry?._tag === "File" ? Effect.succeed(entry) : Effect.fail(refused("InvalidHandle"))
}

const announce = (ctx: RequestContext, path: VirtualPath.VirtualPath, size: number) =>
  Events.use((events) =>
    events.publishUpload(new UploadCompleted({
      protocol: "sftp",
      username: ctx.principal.username,
      path,
      fullPath: ctx.jail.hostPath(path),
      clientIp: ctx.clientIp,
      size
    }))
  )

const nameEntry = (entry: DirEntry, now: number): Codec.NameEntry => {
  const attrs = toAttrs(entry.stat)
  return {
    filename: entry.name,
    longname: Codec.formatLongname(entry.name, { ...attrs, permissions: entry.stat.mode, size: entry.stat.size, uid: entry.stat.uid, gid: entry.stat.gid, mtime: attrs.mtime ?? 0, nlink: entry.stat.nlink }, now),
    attrs
  }
}

/** Entries per READDIR reply: small enough for any client's packet limit. */
const readdirBatch = 128

/** Chunk of a server-side copy. */
const copyChunk = 64 * 1024

const close = (ctx: RequestContext, request: Codec.Close): Effect.Effect<Reply, RequestError, Events> =>
  // Taken out of the table and closed in one uninterruptible step: a session
  // ending in between would leave the fd in no table, never closed.
  Effect.uninterruptible(Effect.flatMap(ctx.handles.take(request.handle), (entry) => {
    if (entry._tag === "Directory") return Effect.as(entry.directory.close, undefined)
    const announced = entry.writable && !entry.failed && !isTemporary(ctx, entry.path)
    // The close reads the final size in the same call (undefined if it could not).
    return Effect.map(entry.file.close, (final) => (announced && final !== undefined ? { path: entry.path, size: final.size } : undefined))
  })).pipe(
    // Announce only a clean close of a handle whose every write succeeded.
    Effect.flatMap((closed) => (closed ? Effect.as(announce(ctx, closed.path, closed.size), ok(request.id)) : Effect.succeed(ok(request.id))))
  )

const rename = (ctx: RequestContext, request: Codec.Rename | Codec.PosixRename, overwrite: boolean) =>
  Effect.gen(function*() {
    const from = yield* resolve(request.oldPath)
    const to = yield* resolve(request.newPath)
    yield* ctx.access.write(from)
    yield* ctx.access.write(to)
    yield* ctx.jail.rename(from, to, { overwrite })
    // An upload written under a temporary name is complete once it gets its final name.
    if (isTemporary(ctx, from) && !isTemporary(ctx, to)) {
      const stat = yield* Effect.result(ctx.jail.lstat(to))
      if (Result.isSuccess(stat) && stat.success.type === "file") yield* announce(ctx, to, stat.success.size)
    }
    return ok(request.id)
  })

const copyData = (ctx: RequestContext, request: Codec.CopyData) =>
  Effect.gen(function*() {
    const source = yield* file(ctx, request.readHandle)
    const target = yield* file(ctx, request.writeHandle)
    if (!target.writable) return yield* ctx.access.write(target.path).pipe(Effect.andThen(Effect.fail(refused("InvalidHandle"))))
    let copied = 0
    while (request.readLength === 0 || copied < request.readLength) {
      const want = request.readLength === 0 ? copyChunk : Math.min(copyChunk, request.readLength - copied)
      const bytes = yield* source.file.read(request.readOffset + copied, want)
      if (bytes.length === 0) break
      yield* target.file.write(request.writeOffset + copied, bytes).pipe(Effect.tapError(() => Effect.sync(() => void (target.failed = true))))
      copied += bytes.length
    }
    return ok(request.id)
  })

const expandPath = (path: string) => (path === "~" ? "/" : path.startsWith("~/") ? path.slice(1) : path)

type Handler<R extends Handled> = (ctx: RequestContext, request: R, now: number) => Effect.Effect<Reply, RequestError, Events>

/** The dispatch table: every request type the codec decodes has exactly one entry. */
const handlers: { readonly [T in Handled["_tag"]]: Handler<Extract<Handled, { readonly _tag: T }>> } = {
  // OPEN, WRITE, CLOSE and READ are written as pipelines rather than generators:
  // a small-files upload runs three of them per file.
  Open: (ctx, request) =>
    withPath(request.path, (path) => {
      const mode = openMode(request.pflags)
      return ctx.access.open(path, mode).pipe(
        // Opened and registered in one uninterruptible step: a session ended between the
        // two would leave the fd open in no table, one per request of a client that leaves.
        Effect.andThen(Effect.uninterruptible(Effect.flatMap(ctx.jail.openFile(path, mode), (opened) => {
          const entry: Handles.FileEntry = { _tag: "File", file: opened, path, writable: mode.write, append: mode.append === true, lock: Handles.makeLock(), failed: false }
          return ctx.handles.add(entry).pipe(Effect.tapError(() => Effect.ignore(opened.close)))
        }))),
        Effect.map((handle) => [Codec.encodeHandle(request.id, handle)])
      )
    }),
  Close: close,
  Read: (ctx, request) => {
    const entry = ctx.handles.find(request.handle)
    if (entry?._tag !== "File") return Effect.fail(refused("InvalidHandle"))
    const length = Math.min(request.length, ctx.limits.maxReadLength)
    // The bytes are read straight behind the DATA header, so the reply is one
    // buffer and ssh2 cuts it into full SSH packets, instead of sending the
    // 13-byte header as a packet of its own (one in nine packets, each with
    // its padding, MAC and system call).
    const packet = Buffer.allocUnsafe(Codec.dataHeaderLength + length)
    return Effect.map(entry.file.read(request.offset, length, packet.subarray(Codec.dataHeaderLength)), (data): Reply => {
      if (data.length === 0) return [Codec.encodeStatus(request.id, SftpStatus.Eof, "End of file")]
      if (data.buffer === packet.buffer && data.byteOffset === packet.byteOffset + Codec.dataHeaderLength) {
        Codec.writeDataHeader(packet, request.id, data.length)
        return [packet.subarray(0, Codec.dataHeaderLength + data.length)]
      }
      return [Codec.encodeDataHeader(request.id, data.length), data]
    })
  },
  Write: (ctx, request) => {
    const entry = ctx.handles.find(request.handle)
    if (entry?._tag !== "File") return Effect.fail(refused("InvalidHandle"))
    if (!entry.writable) return ctx.access.write(entry.path).pipe(Effect.andThen(Effect.fail(refused("InvalidHandle"))))
    if (request.data.length > ctx.limits.maxWriteLength) return Effect.fail(refused("BadRequest"))
    return entry.file.write(request.offset, request.data).pipe(
      Effect.tapError(() => Effect.sync(() => void (entry.failed = true))),
      Effect.map(() => ok(request.id))
    )
  },
  Lstat: (ctx, request) =>
    withPath(request.path, (path) => Effect.map(ctx.jail.lstat(path), (s) => [Codec.encodeAttrs(request.id, toAttrs(s))])),
  Stat: (ctx, request) =>
    withPath(request.path, (path) => Effect.map(ctx.jail.stat(path), (s) => [Codec.encodeAttrs(request.id, toAttrs(s))])),
  Fstat: (ctx, request) =>
    ctx.handles.get(request.handle).pipe(
      Effect.flatMap((entry) => (entry._tag === "File" ? entry.file.stat : ctx.jail.stat(entry.path))),
      Effect.map((s) => [Codec.encodeAttrs(request.id, toAttrs(s))])
    ),
  Setstat: (ctx, request) =>
    Effect.gen(function*() {
      const path = yield* resolve(request.path)
      const attributes = toSetAttributes(request.attrs)
      yield* ctx.access.setAttributes(path, attributes)
      yield* ctx.jail.setAttributes(path, attributes)
      return ok(request.id)
    }),
  Lsetstat: (ctx, request) => handlers.Setstat(ctx, { ...request, _tag: "Setstat" }, 0),
  Fsetstat: (ctx, request) =>
    Effect.gen(function*() {
      const entry = yield* ctx.handles.get(request.handle)
      const attributes = toSetAttributes(request.attrs)
      yield* ctx.access.setAttributes(entry.path, attributes)
      if (entry._tag === "File") yield* entry.file.setAttributes(attributes)
      else yield* ctx.jail.setAttributes(entry.path, attributes)
      return ok(request.id)
    }),
  Opendir: (ctx, request) =>
    Effect.gen(function*() {
      const path = yield* resolve(request.path)
      yield* ctx.access.list(path)
      // As for Open: never an open directory fd outside the handle table.
      const handle = yield* Effect.uninterruptible(Effect.flatMap(ctx.jail.openDirectory(path), (directory) =>
        ctx.handles.add({ _tag: "Directory", directory, path, lock: Handles.makeLock() }).pipe(
          Effect.tapError(() => directory.close)
        )))
      return [Codec.encodeHandle(request.id, handle)]
    }),
  Readdir: (ctx, request, now) =>
    Effect.gen(function*() {
      const entry = yield* ctx.handles.get(request.handle)
      if (entry._tag !== "Directory") return yield* Effect.fail(refused("InvalidHandle"))
      const batch = yield* entry.directory.read(readdirBatch)
      if (batch.length === 0) return [Codec.encodeStatus(request.id, SftpStatus.Eof, "End of directory")]
      return [Codec.encodeName(request.id, batch.map((e) => nameEntry(e, now)))]
    }),
  Remove: (ctx, request) =>
    resolve(request.path).pipe(
      Effect.tap(ctx.access.write),
      Effect.flatMap(ctx.jail.remove),
      Effect.as(ok(request.id))
    ),
  Mkdir: (ctx, request) =>
    resolve(request.path).pipe(Effect.tap(ctx.access.write), Effect.flatMap(ctx.jail.mkdir), Effect.as(ok(request.id))),
  Rmdir: (ctx, request) =>
    resolve(request.path).pipe(Effect.tap(ctx.access.write), Effect.flatMap(ctx.jail.rmdir), Effect.as(ok(request.id))),
  Realpath: (_ctx, request) =>
    resolve(request.path).pipe(Effect.map((path) => [Codec.encodePathReply(request.id, path)])),
  Rename: (ctx, request) => rename(ctx, request, false),
  PosixRename: (ctx, request) => rename(ctx, request, true),
  Readlink: () => Effect.fail(refused("Unsupported")),
  Symlink: () => Effect.fail(refused("Unsupported")),
  Statvfs: (ctx, request) =>
    resolve(request.path).pipe(Effect.flatMap(ctx.jail.statvfs), Effect.map((s) => [Codec.encodeStatvfsReply(request.id, toFsStats(s))])),
  Fstatvfs: (ctx, request) =>
    ctx.handles.get(request.handle).pipe(
      Effect.flatMap((entry) => (entry._tag === "File" ? entry.file.statvfs : ctx.jail.statvfs(entry.path))),
      Effect.map((s) => [Codec.encodeStatvfsReply(request.id, toFsStats(s))])
    ),
  Hardlink: (ctx, request) =>
    Effect.gen(function*() {
      const from = yield* resolve(request.oldPath)
      const to = yield* resolve(request.newPath)
      yield* ctx.access.write(to)
      yield* ctx.jail.link(from, to)
      return ok(request.id)
    }),
  Fsync: (ctx, request) => file(ctx, request.handle).pipe(Effect.flatMap((entry) => entry.file.sync), Effect.as(ok(request.id))),
  Limits: (ctx, request) =>
    Effect.succeed([Codec.encodeLimitsReply(request.id, {
      maxPacketLength: ctx.limits.maxPacketLength,
      maxReadLength: ctx.limits.maxReadLength,
      maxWriteLength: ctx.limits.maxWriteLength,
      maxOpenHandles: ctx.limits.maxOpenHandles
    })]),
  ExpandPath: (_ctx, request) =>
    resolve(expandPath(request.path)).pipe(Effect.map((path) => [Codec.encodePathReply(request.id, path)])),
  CopyData: copyData,
  HomeDirectory: (ctx, request) =>
    request.username === "" || request.username === ctx.principal.username
      ? Effect.succeed([Codec.encodePathReply(request.id, "/")])
      : Effect.fail(refused("NoSuchUser")),
  Extended: () => Effect.fail(refused("Unsupported"))
}

/**
 * Serves one request: the reply packets, a status for any failure.
 * @category constructors
 */
export const handle = (ctx: RequestContext, request: Handled, now: number): Effect.Effect<Reply, never, Events> =>
  (handlers[request._tag] as Handler<Handled>)(ctx, request, now).pipe(
    Effect.catch((error: RequestError) => {
      const status = statusOf(error)
      return Effect.succeed([Codec.encodeStatus(request.id, status.code, status.message)])
    })
  )

/**
 * The handle a request locks, and whether it needs the handle to itself: a
 * CLOSE, FSETSTAT, FSYNC or READDIR waits for every earlier request on its
 * handle, and appends are kept in order. READs and positional WRITEs share.
 * @category constructors
 */
export const lockOf = (request: Handled): { readonly handle: Uint8Array; readonly exclusive: boolean } | undefined => {
  switch (request._tag) {
    case "Read":
    case "Fstat":
    case "Fstatvfs":
      return { handle: request.handle, exclusive: false }
    case "Write":
      return { handle: request.handle, exclusive: false }
    case "Close":
    case "Fsetstat":
    case "Fsync":
    case "Readdir":
      return { handle: request.handle, exclusive: true }
    case "CopyData":
      return { handle: request.writeHandle, exclusive: true }
    default:
      return undefined
  }
}
