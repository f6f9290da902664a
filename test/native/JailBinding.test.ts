/**
 * The jail addon called directly, on real temporary directories: every function's
 * success path, its errno codes, argument validation, non-regular files, directory
 * listing in batches, and fd hygiene. Escapes and races are in EscapeMatrix.test.ts.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadJailBinding } from "../../native/load.js"

const jail = loadJailBinding()
const { O_APPEND, O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } =
  jail.constants

const openFds = (): number => fs.readdirSync("/proc/self/fd").length

/** Registers a check that the group leaves no fd open (closes are awaited, so they have settled). */
const expectNoFdLeak = (): void => {
  let before = 0
  beforeAll(() => {
    before = openFds()
  })
  afterAll(() => {
    expect(openFds()).toBeLessThanOrEqual(before)
  })
}

/** A fresh host directory and the jail root opened on it, both gone after the group. */
const useRoot = (): { readonly dir: string; readonly fd: number } => {
  const state = { dir: "", fd: -1 }
  beforeAll(async () => {
    state.dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-jail-")))
    state.fd = await jail.openRoot(state.dir)
  })
  afterAll(async () => {
    await jail.close(state.fd)
    fs.rmSync(state.dir, { recursive: true, force: true })
  })
  return state
}

/** The rejection of `promise`, checked to be an Error whose message names no path. */
const rejection = async (promise: Promise<unknown>): Promise<NodeJS.ErrnoException> => {
  const error: unknown = await promise.then(() => undefined, (e: unknown) => e)
  expect(error).toBeInstanceOf(Error)
  const errno = error as NodeJS.ErrnoException
  expect(errno.message).toMatch(/^[A-Za-z0-9]+: [^/]+$/)
  expect(errno.message).not.toContain(os.tmpdir())
  return errno
}

const codeOf = async (promise: Promise<unknown>): Promise<string | undefined> => (await rejection(promise)).code

/** The code of each named call; all handlers are attached at once so that no rejection goes unhandled. */
const codesOf = (calls: ReadonlyArray<readonly [string, Promise<unknown>]>) =>
  Promise.all(calls.map(async ([name, call]) => [name, await codeOf(call)]))

const expectCodes = async (calls: ReadonlyArray<readonly [string, Promise<unknown>]>, code: string) =>
  expect(await codesOf(calls)).toEqual(calls.map(([name]) => [name, code]))

const typeOf = (mode: number): number => mode & S_IFMT

/** Uses an fd, then closes it; `use` is awaited first, or the close could overtake it on the thread pool. */
const withFd = async <A>(fd: number, use: (fd: number) => A | Promise<A>): Promise<A> => {
  try {
    return await use(fd)
  } finally {
    await jail.close(fd)
  }
}

const readAll = (fd: number): string => {
  const buffer = Buffer.alloc(4096)
  const length = fs.readSync(fd, buffer, 0, buffer.length, 0)
  return buffer.subarray(0, length).toString()
}

/** The open file status flags of one of our fds, as the kernel reports them. */
const statusFlags = (fd: number): number => {
  const line = fs.readFileSync(`/proc/self/fdinfo/${fd}`, "utf8").split("\n").find((l) => l.startsWith("flags:"))
  return Number.parseInt(line?.split(/\s+/)[1] ?? "", 8)
}

describe("loading", () => {
  it("returns one memoized binding", () => {
    expect(loadJailBinding()).toBe(jail)
  })

  it("exposes the kernel's constants in a frozen object", () => {
    const c = fs.constants
    expect(jail.constants).toEqual({
      O_RDONLY: c.O_RDONLY,
      O_WRONLY: c.O_WRONLY,
      O_RDWR: c.O_RDWR,
      O_CREAT: c.O_CREAT,
      O_EXCL: c.O_EXCL,
      O_TRUNC: c.O_TRUNC,
      O_APPEND: c.O_APPEND,
      S_IFMT: c.S_IFMT,
      S_IFREG: c.S_IFREG,
      S_IFDIR: c.S_IFDIR,
      S_IFLNK: c.S_IFLNK
    })
    expect(Object.isFrozen(jail.constants)).toBe(true)
  })

  it("probes openat2 successfully on this kernel", async () => {
    await expect(jail.probe()).resolves.toBeUndefined()
  })
})

describe("openRoot and close", () => {
  expectNoFdLeak()
  const root = useRoot()

  it("opens an absolute directory, with or without a trailing slash", async () => {
    for (const hostPath of [root.dir, `${root.dir}/`, `${root.dir}//`]) {
      const fd = await jail.openRoot(hostPath)
      expect(fs.readlinkSync(`/proc/self/fd/${fd}`)).toBe(root.dir)
      await jail.close(fd)
    }
  })

  it("refuses relative, empty and dot-ended host paths with EINVAL", async () => {
    for (const hostPath of ["", "tmp", "./tmp", `${root.dir}/.`, `${root.dir}/..`]) {
      expect(await codeOf(jail.openRoot(hostPath))).toBe("EINVAL")
    }
  })

  it("refuses a root that is a symlink with ELOOP, trailing slash or not", async () => {
    fs.mkdirSync(path.join(root.dir, "real"))
    fs.symlinkSync(path.join(root.dir, "real"), path.join(root.dir, "alias"))
    expect(await codeOf(jail.openRoot(path.join(root.dir, "alias")))).toBe("ELOOP")
    expect(await codeOf(jail.openRoot(`${path.join(root.dir, "alias")}/`))).toBe("ELOOP")
  })

  it("refuses a regular file (ENOTDIR) and a missing path (ENOENT)", async () => {
    fs.writeFileSync(path.join(root.dir, "file"), "")
    expect(await codeOf(jail.openRoot(path.join(root.dir, "file")))).toBe("ENOTDIR")
    expect(await codeOf(jail.openRoot(path.join(root.dir, "missing")))).toBe("ENOENT")
  })

  it("opens roots with O_PATH and O_CLOEXEC", async () => {
    const fd = await jail.openRoot(root.dir)
    const flags = statusFlags(fd)
    await jail.close(fd)
    expect(flags & 0o2000000).toBe(0o2000000) // O_CLOEXEC
    expect(flags & 0o10000000).toBe(0o10000000) // O_PATH
  })

  it("reports a second close of the same fd as EBADF", async () => {
    const fd = await jail.openRoot(root.dir)
    await jail.close(fd)
    const error = await rejection(jail.close(fd))
    expect(error).toMatchObject({ code: "EBADF", errno: os.constants.errno.EBADF, syscall: "close" })
  })
})

describe("files", () => {
  expectNoFdLeak()
  const root = useRoot()
  const host = (name: string) => path.join(root.dir, name)

  it("creates a file with the given permission bits and O_CLOEXEC, without O_NONBLOCK", async () => {
    const fd = await jail.open(root.fd, "created", O_CREAT | O_EXCL | O_RDWR, 0o640)
    const flags = statusFlags(fd)
    await withFd(fd, (fd) => fs.writeSync(fd, "hello"))
    expect(flags & fs.constants.O_NONBLOCK).toBe(0)
    expect(flags & 0o2000000).toBe(0o2000000)
    expect(fs.readFileSync(host("created"), "utf8")).toBe("hello")
    expect(fs.statSync(host("created")).mode & 0o7777).toBe(0o640)
  })

  it("never creates a file with setuid, setgid or sticky bits", async () => {
    await jail.close(await jail.open(root.fd, "nosuid", O_CREAT | O_WRONLY, 0o7777))
    expect(fs.statSync(host("nosuid")).mode & 0o7000).toBe(0)
  })

  it("drops setuid and setgid of an existing file opened for writing, not for reading", async () => {
    for (const name of ["suid-w", "suid-rw", "suid-r"]) {
      fs.writeFileSync(host(name), "x")
      fs.chmodSync(host(name), 0o6755)
    }
    await jail.close(await jail.open(root.fd, "suid-w", O_WRONLY, 0))
    await jail.close(await jail.open(root.fd, "suid-rw", O_RDWR, 0))
    await jail.close(await jail.open(root.fd, "suid-r", O_RDONLY, 0))
    expect(fs.statSync(host("suid-w")).mode & 0o7777).toBe(0o755)
    expect(fs.statSync(host("suid-rw")).mode & 0o7777).toBe(0o755)
    expect(fs.statSync(host("suid-r")).mode & 0o7777).toBe(0o6755)
  })

  it("fstatClose gives the attributes just before the close and releases the fd", async () => {
    const fd = await jail.open(root.fd, "final", O_CREAT | O_WRONLY, 0o600)
    fs.writeSync(fd, "twelve bytes")
    const final = await jail.fstatClose(fd)
    expect(final?.size).toBe(12)
    expect((final?.mode ?? 0) & S_IFMT).toBe(S_IFREG)
    // Closed: a second close of the number is EBADF (expectNoFdLeak checks the count too).
    expect(await codeOf(jail.fstatClose(fd))).toBe("EBADF")
  })

  it("honours O_EXCL, O_TRUNC and O_APPEND", async () => {
    fs.writeFileSync(host("flags"), "0123456789")
    expect(await codeOf(jail.open(root.fd, "flags", O_CREAT | O_EXCL | O_WRONLY, 0o600))).toBe("EEXIST")
    await withFd(await jail.open(root.fd, "flags", O_WRONLY | O_APPEND, 0), (fd) => fs.writeSync(fd, "ab"))
    expect(fs.readFileSync(host("flags"), "utf8")).toBe("0123456789ab")
    await jail.close(await jail.open(root.fd, "flags", O_WRONLY | O_TRUNC, 0))
    expect(fs.statSync(host("flags")).size).toBe(0)
  })

  it("opens an existing file for reading", async () => {
    fs.writeFileSync(host("read"), "content")
    expect(await withFd(await jail.open(root.fd, "read", O_RDONLY, 0), readAll)).toBe("content")
  })

  it("refuses a directory with EISDIR for reading and writing", async () => {
    fs.mkdirSync(host("dir"))
    expect(await codeOf(jail.open(root.fd, "dir", O_RDONLY, 0))).toBe("EISDIR")
    expect(await codeOf(jail.open(root.fd, "dir", O_WRONLY, 0))).toBe("EISDIR")
    expect(await codeOf(jail.open(root.fd, "", O_RDONLY, 0))).toBe("EISDIR")
  })

  it("reports a missing file as ENOENT from openat2", async () => {
    const error = await rejection(jail.open(root.fd, "missing", O_RDONLY, 0))
    expect(error).toMatchObject({ code: "ENOENT", errno: os.constants.errno.ENOENT, syscall: "openat2" })
    expect(error.message).toBe("openat2: No such file or directory")
  })

  it("describes files with stat, lstat and fstat as fs does", async () => {
    fs.writeFileSync(host("described"), "x".repeat(1234))
    fs.utimesSync(host("described"), new Date(1_000_000_000_500), new Date(1_500_000_000_250))
    const expected = fs.lstatSync(host("described"))
    const fd = await jail.open(root.fd, "described", O_RDONLY, 0)
    const results = [
      await jail.stat(root.fd, "described"),
      await jail.lstat(root.fd, "described"),
      await withFd(fd, (fd) => jail.fstat(fd))
    ]
    for (const s of results) {
      expect(s).toEqual({
        mode: expected.mode,
        size: 1234,
        uid: expected.uid,
        gid: expected.gid,
        nlink: expected.nlink,
        ino: expected.ino,
        dev: expected.dev,
        atimeMs: 1_000_000_000_500,
        mtimeMs: 1_500_000_000_250,
        ctimeMs: expect.closeTo(expected.ctimeMs, 0)
      })
    }
    expect(typeOf((await jail.stat(root.fd, "")).mode)).toBe(S_IFDIR)
  })

  it("lstat describes a final symlink that stat refuses", async () => {
    fs.symlinkSync("described", host("link"))
    expect(typeOf((await jail.lstat(root.fd, "link")).mode)).toBe(S_IFLNK)
    expect(await codeOf(jail.stat(root.fd, "link"))).toBe("ELOOP")
  })

  it("truncates by path and by fd", async () => {
    fs.writeFileSync(host("trunc"), "0123456789")
    await jail.truncate(root.fd, "trunc", 4)
    expect(fs.readFileSync(host("trunc"), "utf8")).toBe("0123")
    await jail.truncate(root.fd, "trunc", 8192)
    expect(fs.statSync(host("trunc")).size).toBe(8192)
    await withFd(await jail.open(root.fd, "trunc", O_RDWR, 0), (fd) => jail.ftruncate(fd, 2))
    expect(fs.readFileSync(host("trunc"), "utf8")).toBe("01")
    expect(await codeOf(jail.truncate(root.fd, "dir", 0))).toBe("EISDIR")
  })

  it("sets times by path and by fd, in milliseconds, before 1970 too", async () => {
    fs.writeFileSync(host("times"), "")
    await jail.utimes(root.fd, "times", 1_600_000_000_123, 1_700_000_000_456)
    let s = fs.statSync(host("times"))
    expect([s.atimeMs, s.mtimeMs]).toEqual([1_600_000_000_123, 1_700_000_000_456])
    await withFd(await jail.open(root.fd, "times", O_RDONLY, 0), (fd) => jail.futimes(fd, -1500, 2500.5))
    s = fs.statSync(host("times"))
    expect([s.atimeMs, s.mtimeMs]).toEqual([-1500, 2500.5])
    await jail.utimes(root.fd, "", 1_000, 2_000)
    expect(fs.statSync(root.dir).mtimeMs).toBe(2_000)
  })

  it("strips setuid, setgid and sticky in chmod and fchmod", async () => {
    fs.writeFileSync(host("modes"), "")
    await jail.chmod(root.fd, "modes", 0o4777)
    expect(fs.statSync(host("modes")).mode & 0o7777).toBe(0o777)
    await jail.chmod(root.fd, "modes", 0o102755)
    expect(fs.statSync(host("modes")).mode & 0o7777).toBe(0o755)
    await withFd(await jail.open(root.fd, "modes", O_RDONLY, 0), (fd) => jail.fchmod(fd, 0o1640))
    expect(fs.statSync(host("modes")).mode & 0o7777).toBe(0o640)
    fs.mkdirSync(host("modes-dir"))
    await jail.chmod(root.fd, "modes-dir", 0o3770)
    expect(fs.statSync(host("modes-dir")).mode & 0o7777).toBe(0o770)
  })

  it("changes ownership by path and by fd; -1 keeps an id", async () => {
    fs.writeFileSync(host("owned"), "")
    await jail.chown(root.fd, "owned", 1234, 5678)
    expect(fs.statSync(host("owned"))).toMatchObject({ uid: 1234, gid: 5678 })
    await jail.chown(root.fd, "owned", -1, 42)
    expect(fs.statSync(host("owned"))).toMatchObject({ uid: 1234, gid: 42 })
    await withFd(await jail.open(root.fd, "owned", O_RDONLY, 0), (fd) => jail.fchown(fd, 0, -1))
    expect(fs.statSync(host("owned"))).toMatchObject({ uid: 0, gid: 42 })
    const before = fs.statSync(root.dir)
    await jail.chown(root.fd, "", 4321, -1)
    expect(fs.statSync(root.dir).uid).toBe(4321)
    fs.chownSync(root.dir, before.uid, before.gid)
  })

  it("reports file system statistics by path and by fd", async () => {
    const expected = fs.statfsSync(root.dir)
    const byPath = await jail.statvfs(root.fd, "")
    expect(byPath).toMatchObject({ bsize: expected.bsize, blocks: expected.blocks, files: expected.files })
    expect(byPath.namemax).toBeGreaterThan(0)
    fs.writeFileSync(host("vfs"), "")
    const byFd = await withFd(await jail.open(root.fd, "vfs", O_RDONLY, 0), (fd) => jail.fstatvfs(fd))
    expect(byFd).toMatchObject({ bsize: byPath.bsize, blocks: byPath.blocks, fsid: byPath.fsid })
  })

  it("syncs a file", async () => {
    await withFd(await jail.open(root.fd, "synced", O_CREAT | O_WRONLY, 0o600), async (fd) => {
      fs.writeSync(fd, "data")
      await jail.fsync(fd)
    })
    expect(fs.readFileSync(host("synced"), "utf8")).toBe("data")
  })

  it("fails fd calls on a closed fd with EBADF", async () => {
    const fd = await jail.open(root.fd, "synced", O_RDONLY, 0)
    await jail.close(fd)
    await expectCodes([
      ["fstat", jail.fstat(fd)],
      ["fsync", jail.fsync(fd)],
      ["fstatvfs", jail.fstatvfs(fd)],
      ["fchmod", jail.fchmod(fd, 0o600)],
      ["fchown", jail.fchown(fd, 0, 0)],
      ["futimes", jail.futimes(fd, 0, 0)],
      ["ftruncate", jail.ftruncate(fd, 0)],
      ["readDir", jail.readDir(fd, 1)]
    ], "EBADF")
  })
})

describe("directories", () => {
  expectNoFdLeak()
  const root = useRoot()
  const host = (name: string) => path.join(root.dir, name)

  it("creates directories with the permission bits only", async () => {
    await jail.mkdir(root.fd, "made", 0o750)
    await jail.mkdir(root.fd, "made/inner", 0o7777)
    expect(fs.statSync(host("made")).mode & 0o7777).toBe(0o750)
    expect(fs.statSync(host("made/inner")).mode & 0o7000).toBe(0)
    expect(await codeOf(jail.mkdir(root.fd, "made", 0o700))).toBe("EEXIST")
    expect(await codeOf(jail.mkdir(root.fd, "absent/inner", 0o700))).toBe("ENOENT")
  })

  it("removes directories and files, each with its own call", async () => {
    fs.mkdirSync(host("full/sub"), { recursive: true })
    fs.writeFileSync(host("full/file"), "")
    expect(await codeOf(jail.rmdir(root.fd, "full"))).toBe("ENOTEMPTY")
    expect(await codeOf(jail.rmdir(root.fd, "full/file"))).toBe("ENOTDIR")
    expect(await codeOf(jail.unlink(root.fd, "full/sub"))).toBe("EISDIR")
    await jail.unlink(root.fd, "full/file")
    await jail.rmdir(root.fd, "full/sub")
    await jail.rmdir(root.fd, "full")
    expect(fs.existsSync(host("full"))).toBe(false)
    expect(await codeOf(jail.unlink(root.fd, "full"))).toBe("ENOENT")
  })

  it("renames with and without replacing", async () => {
    fs.writeFileSync(host("from"), "from")
    fs.writeFileSync(host("to"), "to")
    fs.mkdirSync(host("tree/sub"), { recursive: true })
    expect(await codeOf(jail.rename(root.fd, "from", "to", true))).toBe("EEXIST")
    expect(fs.readFileSync(host("to"), "utf8")).toBe("to")
    await jail.rename(root.fd, "from", "to", false)
    expect(fs.readFileSync(host("to"), "utf8")).toBe("from")
    await jail.rename(root.fd, "to", "tree/sub/moved", true)
    expect(fs.readFileSync(host("tree/sub/moved"), "utf8")).toBe("from")
    expect(await codeOf(jail.rename(root.fd, "tree", "tree/sub/tree", true))).toBe("EINVAL")
    expect(await codeOf(jail.rename(root.fd, "absent", "other", false))).toBe("ENOENT")
  })

  it("hard-links regular files of our own uid only", async () => {
    fs.writeFileSync(host("original"), "linked")
    await jail.link(root.fd, "original", "tree/copy")
    expect(fs.statSync(host("original")).nlink).toBe(2)
    expect(fs.statSync(host("tree/copy")).ino).toBe(fs.statSync(host("original")).ino)
    expect(await codeOf(jail.link(root.fd, "original", "tree/copy"))).toBe("EEXIST")
    expect(await codeOf(jail.link(root.fd, "tree", "tree-link"))).toBe("ENOTREG")
    fs.writeFileSync(host("foreign"), "")
    fs.chownSync(host("foreign"), 1234, 1234)
    const error = await rejection(jail.link(root.fd, "foreign", "foreign-link"))
    expect(error).toMatchObject({ code: "EPERM", syscall: "link" })
    expect(fs.existsSync(host("foreign-link"))).toBe(false)
  })

  it("lists names with the lstat of each entry, skipping . and ..", async () => {
    fs.mkdirSync(host("listed"))
    fs.writeFileSync(host("listed/file"), "abc")
    fs.mkdirSync(host("listed/dir"))
    fs.symlinkSync("/etc/passwd", host("listed/link"))
    const dirFd = await jail.openDir(root.fd, "listed")
    const first = await jail.readDir(dirFd, 100)
    const second = await jail.readDir(dirFd, 100)
    await jail.close(dirFd)
    const byName = new Map(first.map((e) => [e.name, e.stat] as const))
    expect([...byName.keys()].sort()).toEqual(["dir", "file", "link"])
    expect(typeOf(byName.get("file")?.mode ?? 0)).toBe(S_IFREG)
    expect(byName.get("file")?.size).toBe(3)
    expect(typeOf(byName.get("dir")?.mode ?? 0)).toBe(S_IFDIR)
    expect(typeOf(byName.get("link")?.mode ?? 0)).toBe(S_IFLNK)
    expect(second).toEqual([])
  })

  it("lists the root and an empty directory", async () => {
    fs.mkdirSync(host("empty"))
    const emptyFd = await jail.openDir(root.fd, "empty")
    expect(await jail.readDir(emptyFd, 10)).toEqual([])
    await jail.close(emptyFd)
    const rootFd = await jail.openDir(root.fd, "")
    const names = (await jail.readDir(rootFd, 1000)).map((e) => e.name)
    await jail.close(rootFd)
    expect(names).toContain("empty")
    expect(names).not.toContain(".")
    expect(names).not.toContain("..")
  })

  it("refuses to open a file as a directory (ENOTDIR)", async () => {
    expect(await codeOf(jail.openDir(root.fd, "original"))).toBe("ENOTDIR")
  })

  it("returns every one of 1000 names exactly once in batches of 7", async () => {
    fs.mkdirSync(host("many"))
    const expected = Array.from({ length: 1000 }, (_, i) => `entry-${i}-${"n".repeat(i % 200)}`)
    for (const name of expected) fs.writeFileSync(path.join(host("many"), name), "")
    const dirFd = await jail.openDir(root.fd, "many")
    const seen: Array<string> = []
    for (;;) {
      const batch = await jail.readDir(dirFd, 7)
      if (batch.length === 0) break
      expect(batch.length).toBeLessThanOrEqual(7)
      seen.push(...batch.map((e) => e.name))
    }
    await jail.close(dirFd)
    expect(seen.length).toBe(1000)
    expect(seen.sort()).toEqual(expected.sort())
  })

  it("skips entries that vanish while the directory is being read", async () => {
    fs.mkdirSync(host("vanishing"))
    const names = Array.from({ length: 2000 }, (_, i) => `v${i}`)
    for (const name of names) fs.writeFileSync(path.join(host("vanishing"), name), "")
    const dirFd = await jail.openDir(root.fd, "vanishing")
    const seen: Array<string> = []
    const reading = (async () => {
      for (;;) {
        const batch = await jail.readDir(dirFd, 50)
        if (batch.length === 0) return
        seen.push(...batch.map((e) => e.name))
      }
    })()
    // Remove every other entry while batches are being read on the thread pool.
    for (let i = 0; i < names.length; i += 2) {
      await fs.promises.unlink(path.join(host("vanishing"), names[i] ?? ""))
    }
    await reading
    await jail.close(dirFd)
    const unique = new Set(seen)
    expect(unique.size).toBe(seen.length)
    expect(names.filter((name, i) => i % 2 === 1 && !unique.has(name))).toEqual([])
  })
})

describe("non-regular files", () => {
  expectNoFdLeak()
  const root = useRoot()
  const host = (name: string) => path.join(root.dir, name)
  let server: net.Server | undefined

  beforeAll(async () => {
    execFileSync("mkfifo", [host("fifo")])
    execFileSync("mknod", [host("null"), "c", "1", "3"])
    server = net.createServer()
    await new Promise<void>((resolve) => server?.listen(host("socket"), resolve))
  })
  afterAll(() => {
    server?.close()
  })

  // An open that blocked a thread-pool thread would never settle: the test's own
  // timeout fails it then, so no timer of ours is needed.

  it("refuses a FIFO with ENOTREG for reading and for writing, without blocking", async () => {
    for (const flags of [O_RDONLY, O_WRONLY, O_RDWR, O_WRONLY | O_CREAT, O_WRONLY | O_TRUNC]) {
      const error = await rejection((jail.open(root.fd, "fifo", flags, 0o600)))
      expect(error.code).toBe("ENOTREG")
      expect(error.message).toBe("open: Not a regular file")
    }
    expect(await codeOf((jail.truncate(root.fd, "fifo", 0)))).toBe("ENOTREG")
  })

  it("refuses a FIFO for writing even while it has a reader", async () => {
    const reader = fs.openSync(host("fifo"), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
    try {
      expect(await codeOf((jail.open(root.fd, "fifo", O_WRONLY, 0)))).toBe("ENOTREG")
    } finally {
      fs.closeSync(reader)
    }
  })

  it("refuses a character device with ENOTREG", async () => {
    for (const flags of [O_RDONLY, O_WRONLY, O_RDWR]) {
      expect(await codeOf((jail.open(root.fd, "null", flags, 0)))).toBe("ENOTREG")
    }
    expect(await codeOf((jail.truncate(root.fd, "null", 0)))).toBe("ENOTREG")
  })

  it("refuses a unix socket with ENOTREG", async () => {
    expect(await codeOf((jail.open(root.fd, "socket", O_RDONLY, 0)))).toBe("ENOTREG")
    expect(await codeOf((jail.open(root.fd, "socket", O_WRONLY, 0)))).toBe("ENOTREG")
  })

  it("refuses to hard-link any of them", async () => {
    for (const name of ["fifo", "null", "socket"]) {
      expect(await codeOf(jail.link(root.fd, name, `${name}-link`))).toBe("ENOTREG")
    }
  })

  it("still describes them with stat and lists them", async () => {
    expect((await jail.stat(root.fd, "fifo")).mode & S_IFMT).toBe(fs.constants.S_IFIFO)
    expect((await jail.stat(root.fd, "null")).mode & S_IFMT).toBe(fs.constants.S_IFCHR)
    const dirFd = await jail.openDir(root.fd, "")
    const names = (await jail.readDir(dirFd, 100)).map((e) => e.name).sort()
    await jail.close(dirFd)
    expect(names).toEqual(["fifo", "null", "socket"])
  })
})

describe("argument validation", () => {
  expectNoFdLeak()
  const root = useRoot()
  const long = "a".repeat(65536)
  const deep = `${"d/".repeat(32768)}name`

  beforeAll(() => {
    fs.mkdirSync(path.join(root.dir, "d"))
    fs.writeFileSync(path.join(root.dir, "f"), "")
  })

  /** Every call that takes a path below the root, with that path in one argument. */
  const pathCalls = (p: string): ReadonlyArray<readonly [string, Promise<unknown>]> => [
    ["stat", jail.stat(root.fd, p)],
    ["lstat", jail.lstat(root.fd, p)],
    ["open", jail.open(root.fd, p, O_RDONLY, 0)],
    ["open O_CREAT", jail.open(root.fd, p, O_CREAT | O_WRONLY, 0o600)],
    ["openDir", jail.openDir(root.fd, p)],
    ["mkdir", jail.mkdir(root.fd, p, 0o700)],
    ["rmdir", jail.rmdir(root.fd, p)],
    ["unlink", jail.unlink(root.fd, p)],
    ["rename from", jail.rename(root.fd, p, "renamed", false)],
    ["rename to", jail.rename(root.fd, "f", p, true)],
    ["link from", jail.link(root.fd, p, "linked")],
    ["link to", jail.link(root.fd, "f", p)],
    ["chmod", jail.chmod(root.fd, p, 0o600)],
    ["truncate", jail.truncate(root.fd, p, 0)],
    ["utimes", jail.utimes(root.fd, p, 0, 0)],
    ["chown", jail.chown(root.fd, p, -1, -1)],
    ["statvfs", jail.statvfs(root.fd, p)]
  ]

  it("rejects a NUL anywhere in a path with EINVAL", async () => {
    for (const p of ["f\0", "\0f", "d/\0/f", "\0"]) await expectCodes(pathCalls(p), "EINVAL")
    expect(await codeOf(jail.openRoot(`${root.dir}\0/etc`))).toBe("EINVAL")
    expect(fs.readdirSync(root.dir).sort()).toEqual(["d", "f"])
  })

  it("rejects a 64 KiB path with ENAMETOOLONG", async () => {
    for (const p of [long, deep]) await expectCodes(pathCalls(p), "ENAMETOOLONG")
  })

  it("rejects an empty, dot or dot-dot final name, or a trailing slash, where a name is acted on", async () => {
    for (const p of ["", ".", "..", "d/", "d/.", "d/..", "d//", "/", "//"]) {
      await expectCodes([
        [`mkdir ${p}`, jail.mkdir(root.fd, p, 0o700)],
        [`rmdir ${p}`, jail.rmdir(root.fd, p)],
        [`unlink ${p}`, jail.unlink(root.fd, p)],
        [`rename from ${p}`, jail.rename(root.fd, p, "x", false)],
        [`rename to ${p}`, jail.rename(root.fd, "f", p, false)],
        [`link from ${p}`, jail.link(root.fd, p, "x")],
        [`link to ${p}`, jail.link(root.fd, "f", p)]
      ], "EINVAL")
    }
    expect(fs.readdirSync(root.dir).sort()).toEqual(["d", "f"])
  })

  it("rejects arguments of the wrong type or range with a rejected Promise, never a throw", async () => {
    const untyped = jail as unknown as Record<string, (...args: ReadonlyArray<unknown>) => Promise<unknown>>
    const calls: ReadonlyArray<readonly [string, ReadonlyArray<unknown>]> = [
      ["openRoot", [42]],
      ["close", [-1]],
      ["close", [1.5]],
      ["close", ["3"]],
      ["close", []],
      ["stat", [root.fd, 7]],
      ["stat", [2 ** 31, "f"]],
      ["open", [root.fd, "f", fs.constants.O_DIRECTORY, 0]],
      ["open", [root.fd, "f", 0o10000000, 0]], // O_PATH
      ["open", [root.fd, "f", O_WRONLY | O_RDWR, 0]],
      ["open", [root.fd, "f", O_RDONLY, -1]],
      ["readDir", [root.fd, 0]],
      ["readDir", [root.fd, Number.NaN]],
      ["rename", [root.fd, "f", "g", "yes"]],
      ["truncate", [root.fd, "f", -1]],
      ["ftruncate", [0, 2 ** 53]],
      ["utimes", [root.fd, "f", Number.NaN, 0]],
      ["utimes", [root.fd, "f", 0, Number.POSITIVE_INFINITY]],
      ["futimes", [0, 1e16, 0]],
      ["chown", [root.fd, "f", -2, 0]],
      ["fchown", [0, 0, 2 ** 32]],
      ["chmod", [root.fd, "f", "0777"]]
    ]
    for (const [name, args] of calls) {
      let promise: Promise<unknown> | undefined
      expect(() => {
        promise = untyped[name]?.(...args)
      }).not.toThrow()
      const error = await rejection(promise ?? Promise.resolve())
      expect([name, error.code, error.syscall]).toEqual([name, "EINVAL", name])
    }
  })
})
