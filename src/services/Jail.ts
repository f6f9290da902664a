/**
 * The Jail service: every byte a client reads or writes on disk goes through it.
 *
 * `Jail.open(root)` turns a user's root directory into a scoped `JailHandle`
 * that can only name things below that root. Protocol handlers receive a handle
 * after login and never see a host path or touch `node:fs`. The implementation
 * (layers/JailNative) resolves every path in the kernel with
 * `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)`: "..", absolute paths and
 * symlinks planted by anyone cannot lead outside the root, and symlinks are
 * never followed at all (they can be listed and removed, nothing else).
 *
 * The Jail applies no permission policy: the protocol-neutral access check
 * decides what a user may do, then calls the handle.
 */
import { Context, Data, type Effect, type Scope, type Stream } from "effect"
import type { VirtualPath } from "./VirtualPath.js"

/**
 * What went wrong, as a client may learn it. Each protocol maps every reason to
 * one status code in one table (sftp/Status.ts, ftp/Replies.ts).
 * @category errors
 */
export type JailErrorReason =
  | { readonly _tag: "NotFound" }
  | { readonly _tag: "PermissionDenied" }
  | { readonly _tag: "AlreadyExists" }
  | { readonly _tag: "NotEmpty" }
  | { readonly _tag: "NotADirectory" }
  | { readonly _tag: "IsADirectory" }
  /** A symlink sits somewhere on the path: the jail never follows one. */
  | { readonly _tag: "SymlinkRefused" }
  /** The path or a name in it cannot be used (too long, "..", control characters). */
  | { readonly _tag: "InvalidPath" }
  /** Not supported here: a special file (FIFO, device), a cross-device rename. */
  | { readonly _tag: "Unsupported" }
  /** The file system is full (ENOSPC). */
  | { readonly _tag: "NoSpace" }
  /** A disk quota or the largest file size allowed is exceeded (EDQUOT, EFBIG). */
  | { readonly _tag: "QuotaExceeded" }
  /** Anything else; `code` is the errno name, for logs only. */
  | { readonly _tag: "Io"; readonly code: string }

/**
 * Every reason tag, for exhaustive tables and tests.
 * @category models
 */
export const jailErrorReasonTags = [
  "NotFound",
  "PermissionDenied",
  "AlreadyExists",
  "NotEmpty",
  "NotADirectory",
  "IsADirectory",
  "SymlinkRefused",
  "InvalidPath",
  "Unsupported",
  "NoSpace",
  "QuotaExceeded",
  "Io"
] as const satisfies ReadonlyArray<JailErrorReason["_tag"]>

/**
 * The operation that failed.
 * @category models
 */
export type JailOp =
  | "openRoot"
  | "stat"
  | "lstat"
  | "open"
  | "read"
  | "write"
  | "close"
  | "list"
  | "mkdir"
  | "rmdir"
  | "remove"
  | "rename"
  | "link"
  | "setAttributes"
  | "statvfs"
  | "sync"

/**
 * A failed jail operation. `path` is always the client's virtual path: host paths
 * never appear in a JailError, so one can be logged or reported without leaking
 * the server's layout.
 * @category errors
 */
export class JailError extends Data.TaggedError("JailError")<{
  readonly op: JailOp
  readonly path: string
  readonly reason: JailErrorReason
}> {
  override get message(): string {
    return `${this.op} ${JSON.stringify(this.path)}: ${this.reason._tag}`
  }
}

/**
 * The jail cannot work on this host (openat2 missing or denied, addon not built).
 * Raised when the layer is built, so the problem shows at startup.
 * @category errors
 */
export class JailUnavailable extends Data.TaggedError("JailUnavailable")<{
  readonly detail: string
}> {
  override get message(): string {
    return `the kernel-enforced jail is unavailable: ${this.detail}`
  }
}

/**
 * The kind of an inode.
 * @category models
 */
export type FileType = "file" | "directory" | "symlink" | "other"

/**
 * Attributes of a file, directory or link. `mode` is the full st_mode (type and permission bits).
 * @category models
 */
export interface FileStat {
  readonly type: FileType
  readonly mode: number
  readonly size: number
  readonly uid: number
  readonly gid: number
  readonly nlink: number
  readonly ino: number
  readonly dev: number
  readonly atimeMs: number
  readonly mtimeMs: number
}

/**
 * One entry of a directory, described without following links.
 * @category models
 */
export interface DirEntry {
  readonly name: string
  readonly stat: FileStat
}

/**
 * File system capacity, as statvfs reports it.
 * @category models
 */
export interface FsStats {
  readonly blockSize: number
  readonly fragmentSize: number
  readonly blocks: number
  readonly blocksFree: number
  readonly blocksAvailable: number
  readonly files: number
  readonly filesFree: number
  readonly filesAvailable: number
  readonly fsid: number
  readonly flags: number
  readonly nameMax: number
}

/**
 * Attributes to change. Only the given fields change. The jail strips setuid,
 * setgid and sticky bits from `mode`; whether ownership and times may change at
 * all is decided by the access check before the call.
 * @category models
 */
export interface SetAttributes {
  readonly mode?: number
  readonly size?: number
  readonly uid?: number
  readonly gid?: number
  readonly atimeMs?: number
  readonly mtimeMs?: number
}

/**
 * How to open a file. `create` makes it if missing, `exclusive` fails when it
 * exists, `truncate` empties it, `append` makes every write go to the end.
 * @category models
 */
export interface OpenMode {
  readonly read: boolean
  readonly write: boolean
  readonly create?: boolean
  readonly exclusive?: boolean
  readonly truncate?: boolean
  readonly append?: boolean
}

/**
 * What `FileHandle.receiveFrom` wrote: `bytes`, and `socketError` (an errno name
 * such as "ECONNRESET") when the socket failed before the peer ended the stream.
 * @category models
 */
export interface Received {
  readonly bytes: number
  readonly socketError?: string | undefined
}

/**
 * An open regular file. Reads and writes are positional, so concurrent requests
 * on one handle (SFTP pipelining) need no shared cursor.
 * @category models
 */
export interface FileHandle {
  readonly path: VirtualPath
  /**
   * Reads up to `length` bytes at `offset`; an empty result means end of file.
   * With `into` (at least `length` bytes) the bytes land there and the result is
   * a view of it, so a transfer can cycle through two buffers instead of
   * allocating one per chunk.
   */
  read(offset: number, length: number, into?: Uint8Array): Effect.Effect<Uint8Array, JailError>
  /** Writes all of `data` at `offset` (at the end when opened with `append`). */
  write(offset: number, data: Uint8Array): Effect.Effect<void, JailError>
  /**
   * Writes what the connected stream socket `socketFd` sends, from `offset` on
   * (at the end when opened with `append`), until the peer ends the stream or
   * the socket fails; `onProgress` runs as bytes reach the file. A socket
   * failure is a result (`socketError`, the errno name): the bytes written so far
   * stay written. Interruption stops the transfer and waits until nothing more
   * is written. The socket must not be read by anyone else meanwhile. Optional:
   * a jail without it leaves callers to `write` chunk by chunk.
   */
  readonly receiveFrom?: ((
    socketFd: number,
    offset: number,
    onProgress: Effect.Effect<void>
  ) => Effect.Effect<Received, JailError>) | undefined
  readonly stat: Effect.Effect<FileStat, JailError>
  setAttributes(attributes: SetAttributes): Effect.Effect<void, JailError>
  readonly sync: Effect.Effect<void, JailError>
  readonly statvfs: Effect.Effect<FsStats, JailError>
  /**
   * Closes the file and gives its attributes as they were just before the close
   * (an upload's final size), read in the same call; undefined when they could
   * not be read, and on a second close, which is a no-op. A failed close (EIO,
   * ENOSPC on NFS) is reported.
   */
  readonly close: Effect.Effect<FileStat | undefined, JailError>
}

/**
 * An open directory, read in bounded batches so a huge directory never sits in memory.
 * @category models
 */
export interface DirectoryHandle {
  readonly path: VirtualPath
  /** Up to `max` more entries ("." and ".." excluded); an empty batch means the end. */
  read(max: number): Effect.Effect<ReadonlyArray<DirEntry>, JailError>
  /** Closes the directory; closing twice is a no-op. */
  readonly close: Effect.Effect<void>
}

/**
 * A capability over one user's root. It is valid until the scope it was opened in closes.
 * @category models
 */
export interface JailHandle {
  /**
   * The host path of `path`, for the application only (the `fullPath` of upload
   * events). Never put it in a reply or an error a client can see.
   */
  hostPath(path: VirtualPath): string
  /** stat; a symlink anywhere on the path gives SymlinkRefused. SFTP STAT, FTP SIZE/MDTM/MLST. */
  stat(path: VirtualPath): Effect.Effect<FileStat, JailError>
  /** Like stat, but a final symlink is described rather than refused. SFTP LSTAT. */
  lstat(path: VirtualPath): Effect.Effect<FileStat, JailError>
  /** Opens a regular file; directories give IsADirectory, FIFOs and devices Unsupported. */
  openFile(path: VirtualPath, mode: OpenMode): Effect.Effect<FileHandle, JailError>
  openDirectory(path: VirtualPath): Effect.Effect<DirectoryHandle, JailError>
  /** Every entry of a directory, read in batches of `batch`; the directory closes when the stream ends. */
  list(path: VirtualPath, batch?: number): Stream.Stream<DirEntry, JailError>
  mkdir(path: VirtualPath): Effect.Effect<void, JailError>
  rmdir(path: VirtualPath): Effect.Effect<void, JailError>
  /** Removes a file or a link (never a directory). */
  remove(path: VirtualPath): Effect.Effect<void, JailError>
  /** Renames; without `overwrite`, an existing target gives AlreadyExists (SFTP RENAME). */
  rename(from: VirtualPath, to: VirtualPath, options: { readonly overwrite: boolean }): Effect.Effect<void, JailError>
  /** Hard link `to` to the existing regular file `from`, both inside this root. */
  link(from: VirtualPath, to: VirtualPath): Effect.Effect<void, JailError>
  setAttributes(path: VirtualPath, attributes: SetAttributes): Effect.Effect<void, JailError>
  statvfs(path: VirtualPath): Effect.Effect<FsStats, JailError>
}

/**
 * Opens user roots as jails.
 * @category services
 */
export class Jail extends Context.Service<Jail, {
  /**
   * Opens `root` (an absolute host directory, not itself a symlink). The handle
   * holds the root's directory fd until the scope closes, so a later rename of
   * the root on the host does not redirect the session.
   */
  open(root: string): Effect.Effect<JailHandle, JailError, Scope.Scope>
}>()("portcullis/services/Jail") {}
