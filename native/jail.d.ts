/**
 * The typed surface of the `jail` addon (native/src/jail.cc), written by hand.
 *
 * The addon is a thin syscall layer with no policy. Every path argument is
 * relative to a root directory fd obtained from `openRoot` ("" names the root
 * itself, components are separated by "/", no leading "/"). Every lookup goes
 * through `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)`, so neither "..",
 * nor an absolute path, nor a symlink anywhere in the path can leave the root:
 * the kernel enforces it. Calls that change a directory (mkdir, rmdir, unlink,
 * rename, link) open the parent that way and act on one final name, which must
 * not be "", ".", ".." or contain "/" (EINVAL otherwise).
 *
 * Every function except `constants` and `receive` (a thread of its own, with a
 * callback) runs its syscalls on the libuv thread pool and returns a Promise. A
 * failure rejects with an Error whose `code` is the errno name ("ENOENT",
 * "ELOOP", …) or "ENOTREG" (an open/truncate target that is not a regular
 * file), and whose `syscall` names the failing call.
 * Messages never contain a path.
 */

/** Attributes of one inode, as fstat reports them. Times are milliseconds since the epoch. */
export interface NativeStat {
  readonly mode: number
  readonly size: number
  readonly uid: number
  readonly gid: number
  readonly nlink: number
  readonly ino: number
  readonly dev: number
  readonly atimeMs: number
  readonly mtimeMs: number
  readonly ctimeMs: number
}

/** One directory entry with the lstat of that entry (links are described, never followed). */
export interface NativeDirEntry {
  readonly name: string
  readonly stat: NativeStat
}

/** File system statistics, as fstatvfs reports them. */
export interface NativeStatVfs {
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

export interface NativeConstants {
  readonly O_RDONLY: number
  readonly O_WRONLY: number
  readonly O_RDWR: number
  readonly O_CREAT: number
  readonly O_EXCL: number
  readonly O_TRUNC: number
  readonly O_APPEND: number
  readonly S_IFMT: number
  readonly S_IFREG: number
  readonly S_IFDIR: number
  readonly S_IFLNK: number
}

export interface JailBinding {
  readonly constants: NativeConstants

  /** Fails (ENOSYS, EPERM under seccomp, …) when openat2 with RESOLVE_IN_ROOT is unusable. */
  probe(): Promise<void>

  /**
   * Opens a host directory as a jail root: O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC.
   * The host path is absolute; its last component must not be a symlink (ELOOP).
   */
  openRoot(hostPath: string): Promise<number>

  /** Closes any fd this addon returned (root, file or directory). */
  close(fd: number): Promise<void>
  /**
   * Reads a file's attributes, then closes the fd whatever fstat said, in one
   * call: null when fstat failed. Rejects only when close fails (the fd is
   * released anyway, as close(2) does on Linux).
   */
  fstatClose(fd: number): Promise<NativeStat | null>

  /**
   * Writes what the stream socket `socketFd` sends into `fileFd`, from `offset`
   * on, until the peer ends the stream. A thread of its own reads each chunk and
   * writes it at once (pwrite; in append mode the kernel writes at the end); it
   * works on duplicates of both fds, which it closes before the final callback.
   * `callback(bytes, false)` reports progress (every few MiB, and whenever the
   * socket runs dry); the final call is `callback(bytes, true)` once the peer
   * ended the stream and every byte is written, or `callback(bytes, true, code,
   * syscall)` when it stopped: `syscall` "pwrite" is a file error, "recv" or
   * "poll" a socket error (ECANCELED after `cancel`), and anything else a failure
   * to start. Returns `cancel`, which stops the transfer at its next chunk.
   * Nothing runs on the libuv thread pool. Throws a TypeError on invalid arguments.
   */
  receive(
    socketFd: number,
    fileFd: number,
    offset: number,
    callback: (bytes: number, done: boolean, code?: string, syscall?: string) => void
  ): () => void

  /**
   * Opens a regular file for byte I/O. `flags` combines the O_* constants above;
   * O_CLOEXEC | O_NOCTTY | O_NONBLOCK are always added (O_NONBLOCK so a planted FIFO
   * or device never blocks the open; it is cleared again on a regular file). Anything
   * that is not a regular file is closed and refused with ENOTREG (EISDIR for a directory).
   * `mode` applies when the file is created. Opened for writing, a file loses its
   * setuid and setgid bits (the kernel's rule for unprivileged writers, applied to root too).
   */
  open(root: number, path: string, flags: number, mode: number): Promise<number>

  /** stat of the path; a symlink anywhere, the final component included, fails with ELOOP. */
  stat(root: number, path: string): Promise<NativeStat>
  /** Like stat, except that a final symlink is described instead of refused. */
  lstat(root: number, path: string): Promise<NativeStat>
  fstat(fd: number): Promise<NativeStat>

  /** Opens a directory for listing (O_RDONLY | O_DIRECTORY). */
  openDir(root: number, path: string): Promise<number>
  /**
   * Reads up to `max` further entries ("." and ".." skipped; entries that vanish between
   * getdents and fstatat skipped). An empty array means the end of the directory.
   */
  readDir(dirFd: number, max: number): Promise<ReadonlyArray<NativeDirEntry>>

  mkdir(root: number, path: string, mode: number): Promise<void>
  rmdir(root: number, path: string): Promise<void>
  /** Removes a non-directory entry (EISDIR for a directory). */
  unlink(root: number, path: string): Promise<void>
  /** renameat2; `noReplace` sets RENAME_NOREPLACE (EEXIST when `to` exists). */
  rename(root: number, from: string, to: string, noReplace: boolean): Promise<void>
  /** Hard link `to` -> existing regular file `from`; refuses non-regular files (ENOTREG) and files of another owner (EPERM). */
  link(root: number, from: string, to: string): Promise<void>

  /** Sets the permission bits; setuid, setgid and sticky are always stripped. Never follows a final symlink (ELOOP). */
  chmod(root: number, path: string, mode: number): Promise<void>
  fchmod(fd: number, mode: number): Promise<void>
  /** Truncates a regular file to `size`. */
  truncate(root: number, path: string, size: number): Promise<void>
  ftruncate(fd: number, size: number): Promise<void>
  /** Sets access and modification times (milliseconds); never follows a final symlink. */
  utimes(root: number, path: string, atimeMs: number, mtimeMs: number): Promise<void>
  futimes(fd: number, atimeMs: number, mtimeMs: number): Promise<void>
  /** Changes ownership; never follows a final symlink. */
  chown(root: number, path: string, uid: number, gid: number): Promise<void>
  fchown(fd: number, uid: number, gid: number): Promise<void>

  statvfs(root: number, path: string): Promise<NativeStatVfs>
  fstatvfs(fd: number): Promise<NativeStatVfs>
  fsync(fd: number): Promise<void>
}
