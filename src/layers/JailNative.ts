/**
 * The Jail service on the native openat2 addon.
 *
 * This is the only module that imports native/; byte I/O on the fds the addon
 * opened inside the jail goes through `node:fs` in GatheredIo. It owns the
 * single errno → reason table.
 *
 * Every syscall runs to completion: once a read, write or close is on the libuv
 * thread pool, an interrupted session waits for it to finish before its
 * finalizers close the fd. Otherwise a late read could land on an fd number the
 * process had already reused for another user's file.
 */
import { Context, Effect, Layer, Option, Stream } from "effect"
import * as nodePath from "node:path"
import type { JailBinding, NativeStat, NativeStatVfs } from "../../native/jail.js"
import { loadJailBinding } from "../../native/load.js"
import {
  type DirectoryHandle,
  type FileHandle,
  type FileStat,
  type FileType,
  type FsStats,
  Jail,
  JailError,
  type JailErrorReason,
  type JailHandle,
  JailUnavailable,
  type JailOp,
  type OpenMode,
  type Received,
  type SetAttributes
} from "../services/Jail.js"
import { toRelative, type VirtualPath } from "../services/VirtualPath.js"
import * as GatheredIo from "./GatheredIo.js"

/**
 * Modes for what clients create. The process umask still applies on top.
 * @category models
 */
export interface JailNativeOptions {
  /** Permission bits of new files. Default 0o600. */
  readonly fileMode?: number
  /** Permission bits of new directories. Default 0o700. */
  readonly directoryMode?: number
}

// The one errno table. Anything not listed is Io and keeps its code for logs.
const reasonByCode: Readonly<Record<string, JailErrorReason>> = {
  ENOENT: { _tag: "NotFound" },
  EACCES: { _tag: "PermissionDenied" },
  EPERM: { _tag: "PermissionDenied" },
  EROFS: { _tag: "PermissionDenied" },
  EBUSY: { _tag: "PermissionDenied" },
  EEXIST: { _tag: "AlreadyExists" },
  ENOTEMPTY: { _tag: "NotEmpty" },
  ENOTDIR: { _tag: "NotADirectory" },
  EISDIR: { _tag: "IsADirectory" },
  ELOOP: { _tag: "SymlinkRefused" },
  ENAMETOOLONG: { _tag: "InvalidPath" },
  EINVAL: { _tag: "InvalidPath" },
  ENOTREG: { _tag: "Unsupported" },
  ENXIO: { _tag: "Unsupported" },
  ENODEV: { _tag: "Unsupported" },
  EXDEV: { _tag: "Unsupported" },
  EOPNOTSUPP: { _tag: "Unsupported" },
  ENOSPC: { _tag: "NoSpace" },
  EDQUOT: { _tag: "QuotaExceeded" },
  EFBIG: { _tag: "QuotaExceeded" }
}

const codeOf = (cause: unknown): string => {
  if (typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string") {
    return cause.code
  }
  return "EUNKNOWN"
}

/** Maps a failure of the addon or of node:fs to a JailError on the virtual path. */
const toJailError = (op: JailOp, path: string) => (cause: unknown): JailError => {
  const code = codeOf(cause)
  return new JailError({ op, path, reason: reasonByCode[code] ?? { _tag: "Io", code } })
}

/**
 * The JailError this layer raises when `op` on `path` fails with errno `code`
 * ("ENOSPC", "EIO"), through the one errno table. Fault-injection tests fail
 * with it exactly as the OS failure would.
 * @category testing
 */
export const errorFromErrno = (op: JailOp, path: string, code: string): JailError => toJailError(op, path)({ code })

/** What `syscall` tells its caller around the call: the handle's count of calls running. */
interface CallHooks {
  /** Refuses `op` before it starts (the fd is closed), or counts it as running and gives undefined. */
  readonly start: (op: JailOp) => JailError | undefined
  /** Runs once the call has settled, before the caller resumes. */
  readonly settled: () => void
}

/**
 * Runs one syscall promise to completion, even if the caller is interrupted
 * meanwhile: the interruption waits for the promise to settle. One callback
 * instead of an uninterruptible region around a promise adapter: this runs for
 * every SFTP request, three times per file of a small-files upload.
 */
const syscall = <A>(op: JailOp, path: string, run: () => Promise<A>, hooks?: CallHooks): Effect.Effect<A, JailError> =>
  Effect.callback<A, JailError>((resume) => {
    const refused = hooks?.start(op)
    if (refused) return resume(Effect.fail(refused))
    let settled = false
    let afterSettled: (() => void) | undefined
    const settle = (outcome: Effect.Effect<A, JailError>) => {
      settled = true
      hooks?.settled()
      resume(outcome)
      afterSettled?.()
    }
    let promise: Promise<A>
    try {
      promise = run()
    } catch (cause) {
      promise = Promise.reject(cause)
    }
    promise.then((value) => settle(Effect.succeed(value)), (cause) => settle(Effect.fail(toJailError(op, path)(cause))))
    return Effect.callback<void>((cancelled) => {
      if (settled) cancelled(Effect.void)
      else afterSettled = () => cancelled(Effect.void)
    })
  })

const typeOf = (binding: JailBinding, mode: number): FileType => {
  const { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } = binding.constants
  switch (mode & S_IFMT) {
    case S_IFREG:
      return "file"
    case S_IFDIR:
      return "directory"
    case S_IFLNK:
      return "symlink"
    default:
      return "other"
  }
}

const toFileStat = (binding: JailBinding, s: NativeStat): FileStat => ({
  type: typeOf(binding, s.mode),
  mode: s.mode,
  size: s.size,
  uid: s.uid,
  gid: s.gid,
  nlink: s.nlink,
  ino: s.ino,
  dev: s.dev,
  atimeMs: s.atimeMs,
  mtimeMs: s.mtimeMs
})

const toFsStats = (s: NativeStatVfs): FsStats => ({
  blockSize: s.bsize,
  fragmentSize: s.frsize,
  blocks: s.blocks,
  blocksFree: s.bfree,
  blocksAvailable: s.bavail,
  files: s.files,
  filesFree: s.ffree,
  filesAvailable: s.favail,
  fsid: s.fsid,
  flags: s.flag,
  nameMax: s.namemax
})

const openFlags = (binding: JailBinding, mode: OpenMode): number => {
  const c = binding.constants
  let flags = mode.read && mode.write ? c.O_RDWR : mode.write ? c.O_WRONLY : c.O_RDONLY
  if (mode.create) flags |= c.O_CREAT
  if (mode.exclusive) flags |= c.O_CREAT | c.O_EXCL
  if (mode.truncate) flags |= c.O_TRUNC
  if (mode.append) flags |= c.O_APPEND
  return flags
}

/** Applies the given attributes in a fixed order: size, mode, ownership, times. */
const applyAttributes = (
  attributes: SetAttributes,
  current: Effect.Effect<FileStat, JailError>,
  ops: {
    readonly truncate: (size: number) => Promise<void>
    readonly chmod: (mode: number) => Promise<void>
    readonly chown: (uid: number, gid: number) => Promise<void>
    readonly utimes: (atimeMs: number, mtimeMs: number) => Promise<void>
  },
  path: string
): Effect.Effect<void, JailError> =>
  Effect.gen(function*() {
    const { atimeMs, gid, mode, mtimeMs, size, uid } = attributes
    if (size !== undefined) yield* syscall("setAttributes", path, () => ops.truncate(size))
    if (mode !== undefined) yield* syscall("setAttributes", path, () => ops.chmod(mode))
    if (uid !== undefined || gid !== undefined) {
      yield* syscall("setAttributes", path, () => ops.chown(uid ?? -1, gid ?? -1))
    }
    if (atimeMs !== undefined || mtimeMs !== undefined) {
      // utimes needs both times; keep the one the client did not send.
      const before = atimeMs === undefined || mtimeMs === undefined ? yield* current : undefined
      const atime = atimeMs ?? before?.atimeMs ?? 0
      const mtime = mtimeMs ?? before?.mtimeMs ?? 0
      yield* syscall("setAttributes", path, () => ops.utimes(atime, mtime))
    }
  })

/**
 * FileHandle.receiveFrom: the addon's `receive` thread does the reads and
 * writes; this only waits for its final callback. Interrupted, it cancels and
 * still waits for that callback, so the caller's close comes after the last write.
 */
const receive = (
  binding: JailBinding,
  socketFd: number,
  fileFd: number,
  offset: number,
  onProgress: Effect.Effect<void>,
  path: VirtualPath
): Effect.Effect<Received, JailError> =>
  Effect.contextWith((context: Context.Context<never>) =>
    Effect.callback<Received, JailError>((resume) => {
      const progress = Effect.runForkWith(context)
      let finished = false
      let afterCancel: (() => void) | undefined
      const cancel = binding.receive(socketFd, fileFd, offset, (bytes, done, code, failed) => {
        if (!done) return void progress(onProgress)
        finished = true
        if (afterCancel) return afterCancel()
        if (code === undefined) resume(Effect.succeed({ bytes }))
        else if (failed === "recv" || failed === "poll") resume(Effect.succeed({ bytes, socketError: code }))
        // pwrite, or a failure to start (no fd left to duplicate, no thread): the server's side failed.
        else resume(Effect.fail(errorFromErrno("write", path, code)))
      })
      return Effect.callback<void>((cancelled) => {
        if (finished) return cancelled(Effect.void)
        afterCancel = () => cancelled(Effect.void)
        cancel()
      })
    })
  )

const makeFileHandle = (binding: JailBinding, fd: number, path: VirtualPath, append: boolean): FileHandle => {
  let closed = false
  const io = GatheredIo.make(fd, { append })
  // Calls on the fd still running on the thread pool, and the close waiting for them.
  let running = 0
  let whenIdle: (() => void) | undefined
  // After close the fd number may belong to another file: refuse instead of touching it.
  const hooks: CallHooks = {
    start: (op) => {
      if (closed) return new JailError({ op, path, reason: { _tag: "Io", code: "EBADF" } })
      running++
      return undefined
    },
    settled: () => void (--running === 0 && whenIdle?.())
  }
  const guarded = <A>(op: JailOp, effect: Effect.Effect<A, JailError>): Effect.Effect<A, JailError> =>
    Effect.suspend(() => {
      const refused = hooks.start(op)
      return refused ? Effect.fail(refused) : Effect.ensuring(effect, Effect.sync(hooks.settled))
    })
  const live = <A>(op: JailOp, run: () => Promise<A>): Effect.Effect<A, JailError> => syscall(op, path, run, hooks)
  const stat = live("stat", () => binding.fstat(fd)).pipe(Effect.map((s) => toFileStat(binding, s)))
  return {
    path,
    read: (offset, length, into) =>
      live("read", () => {
        const buffer = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length)
        return io.read(offset, buffer).then((bytes) => (bytes === length ? buffer : buffer.subarray(0, bytes)))
      }),
    write: (offset, data) => live("write", () => io.write(offset, data)),
    receiveFrom: (socketFd, offset, onProgress) => guarded("write", receive(binding, socketFd, fd, offset, onProgress, path)),
    stat,
    setAttributes: (attributes) =>
      guarded("setAttributes", applyAttributes(attributes, stat, {
        truncate: (size) => binding.ftruncate(fd, size),
        chmod: (mode) => binding.fchmod(fd, mode),
        chown: (uid, gid) => binding.fchown(fd, uid, gid),
        utimes: (atimeMs, mtimeMs) => binding.futimes(fd, atimeMs, mtimeMs)
      }, path)),
    sync: live("sync", () => binding.fsync(fd)),
    statvfs: live("statvfs", () => binding.fstatvfs(fd)).pipe(Effect.map(toFsStats)),
    // A close can arrive while another request's call on this fd still runs (SFTP
    // copy-data reads a handle it does not lock): the fd is closed only once those
    // calls are done, or a later open could reuse its number before they run.
    close: Effect.suspend(() => {
      if (closed) return Effect.succeed(undefined)
      closed = true
      const closing = syscall("close", path, () => binding.fstatClose(fd))
      const idle = () => Effect.callback<void>((resume) => void (whenIdle = () => resume(Effect.void)))
      return (running === 0 ? closing : Effect.uninterruptible(Effect.andThen(idle(), closing))).pipe(
        Effect.map((final) => (final === null ? undefined : toFileStat(binding, final)))
      )
    })
  }
}

const makeDirectoryHandle = (binding: JailBinding, fd: number, path: VirtualPath): DirectoryHandle => {
  let closed = false
  return {
    path,
    read: (max) =>
      Effect.suspend(() =>
        closed
          ? Effect.fail(new JailError({ op: "list", path, reason: { _tag: "Io", code: "EBADF" } }))
          : syscall("list", path, () => binding.readDir(fd, max))
      ).pipe(Effect.map((entries) => entries.map((e) => ({ name: e.name, stat: toFileStat(binding, e.stat) })))),
    close: Effect.suspend(() => {
      if (closed) return Effect.void
      closed = true
      // Closing a directory fd cannot lose data; a failure here is only worth a log line.
      return syscall("close", path, () => binding.close(fd)).pipe(
        Effect.catch((error) => Effect.logWarning("closing a directory failed", error))
      )
    })
  }
}

const makeHandle = (binding: JailBinding, options: Required<JailNativeOptions>, root: string, rootFd: number): JailHandle => {
  const rel = toRelative
  const stat = (path: VirtualPath) =>
    syscall("stat", path, () => binding.stat(rootFd, rel(path))).pipe(Effect.map((s) => toFileStat(binding, s)))
  const openDirectory = (path: VirtualPath) =>
    syscall("list", path, () => binding.openDir(rootFd, rel(path))).pipe(
      Effect.map((fd) => makeDirectoryHandle(binding, fd, path))
    )
  return {
    hostPath: (path) => nodePath.join(root, rel(path)),
    stat,
    lstat: (path) =>
      syscall("lstat", path, () => binding.lstat(rootFd, rel(path))).pipe(Effect.map((s) => toFileStat(binding, s))),
    // The addon drops setuid/setgid bits of a file opened for writing, in the same call.
    openFile: (path, mode) =>
      syscall("open", path, () => binding.open(rootFd, rel(path), openFlags(binding, mode), options.fileMode)).pipe(
        Effect.map((fd) => makeFileHandle(binding, fd, path, mode.append === true))
      ),
    openDirectory,
    list: (path, batch = 256) =>
      Stream.unwrap(
        Effect.acquireRelease(openDirectory(path), (dir) => dir.close).pipe(
          Effect.map((dir) =>
            Stream.paginate(undefined, () =>
              dir.read(batch).pipe(
                Effect.map((entries) => [entries, entries.length === 0 ? Option.none() : Option.some(undefined)] as const)
              ))
          )
        )
      ),
    mkdir: (path) => syscall("mkdir", path, () => binding.mkdir(rootFd, rel(path), options.directoryMode)),
    rmdir: (path) => syscall("rmdir", path, () => binding.rmdir(rootFd, rel(path))),
    remove: (path) => syscall("remove", path, () => binding.unlink(rootFd, rel(path))),
    rename: (from, to, { overwrite }) =>
      syscall("rename", from, () => binding.rename(rootFd, rel(from), rel(to), !overwrite)),
    link: (from, to) => syscall("link", to, () => binding.link(rootFd, rel(from), rel(to))),
    setAttributes: (path, attributes) =>
      applyAttributes(attributes, stat(path), {
        truncate: (size) => binding.truncate(rootFd, rel(path), size),
        chmod: (mode) => binding.chmod(rootFd, rel(path), mode),
        chown: (uid, gid) => binding.chown(rootFd, rel(path), uid, gid),
        utimes: (atimeMs, mtimeMs) => binding.utimes(rootFd, rel(path), atimeMs, mtimeMs)
      }, path),
    statvfs: (path) => syscall("statvfs", path, () => binding.statvfs(rootFd, rel(path))).pipe(Effect.map(toFsStats))
  }
}

const loadBinding = Effect.try({
  try: loadJailBinding,
  catch: (cause) => new JailUnavailable({ detail: cause instanceof Error ? cause.message : String(cause) })
})

/**
 * Builds the Jail service over a given binding, probing openat2 first. Tests use
 * it to wrap the real binding and inject faults.
 * @category testing
 */
export const makeWithBinding = (
  binding: JailBinding,
  options: JailNativeOptions = {}
): Effect.Effect<Jail["Service"], JailUnavailable> =>
  Effect.gen(function*() {
    yield* Effect.tryPromise({
      try: () => binding.probe(),
      catch: (cause) =>
        new JailUnavailable({
          detail: `openat2 with RESOLVE_IN_ROOT failed (${codeOf(cause)}); it needs Linux 5.6 or later and no seccomp filter denying it`
        })
    })
    const resolved = { fileMode: options.fileMode ?? 0o600, directoryMode: options.directoryMode ?? 0o700 }
    return Jail.of({
      open: (root) =>
        Effect.acquireRelease(
          nodePath.isAbsolute(root)
            ? syscall("openRoot", "/", () => binding.openRoot(root))
            : Effect.fail(new JailError({ op: "openRoot", path: "/", reason: { _tag: "InvalidPath" } })),
          (fd) =>
            syscall("close", "/", () => binding.close(fd)).pipe(
              Effect.catch((error) => Effect.logWarning("closing a jail root failed", error))
            )
        ).pipe(Effect.map((fd) => makeHandle(binding, resolved, root, fd)))
    })
  })

/**
 * Builds the Jail service: loads the addon and probes openat2, failing with
 * `JailUnavailable` (at startup, not at the first request) where either is missing.
 * @category constructors
 */
export const make = (options: JailNativeOptions = {}): Effect.Effect<Jail["Service"], JailUnavailable> =>
  Effect.flatMap(loadBinding, (binding) => makeWithBinding(binding, options))

/**
 * The Jail service backed by the native addon.
 * @category layers
 */
export const layer = (options: JailNativeOptions = {}): Layer.Layer<Jail, JailUnavailable> =>
  Layer.effect(Jail, make(options))
