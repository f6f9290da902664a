/**
 * The escape matrix, run against the Jail service on a real temp directory:
 * every operation, every traversal form, symlinks planted from outside as final
 * and middle components, special files, and a concurrent symlink-swap race.
 * A canary directory beside the root is hashed before and after.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Stream } from "effect"
import { spawn, execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { loadJailBinding } from "../../native/load.js"
import * as JailNative from "../../src/layers/JailNative.js"
import { Jail, type JailError, type JailHandle } from "../../src/services/Jail.js"
import type { VirtualPath } from "../../src/services/VirtualPath.js"
import { tempDir } from "../utils/TempDir.js"

const jailLayer = JailNative.layer()

/** Unchecked virtual path: lets the tests hand the kernel what cleaning would have removed. */
const raw = (p: string) => p as VirtualPath

const SECRET = "SECRET-OUTSIDE"

/** A digest of every name, type, mode and content under `dir`. */
const digest = (dir: string): string => {
  const hash = crypto.createHash("sha256")
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      const p = path.join(d, name)
      const s = fs.lstatSync(p)
      hash.update(`${path.relative(dir, p)}:${s.mode}:${s.size}:${s.mtimeMs}\n`)
      if (s.isDirectory()) walk(p)
      else if (s.isFile()) hash.update(fs.readFileSync(p))
      else if (s.isSymbolicLink()) hash.update(fs.readlinkSync(p))
    }
  }
  walk(dir)
  return hash.digest("hex")
}

interface World {
  readonly base: string
  readonly root: string
  readonly outside: string
  readonly sibling: string
  readonly jail: JailHandle
}

/** base/{root, outside (canary), sibling (another user's root)} with symlinks planted in root. */
const world = Effect.gen(function*() {
  const base = yield* tempDir()
  const root = path.join(base, "root")
  const outside = path.join(base, "outside")
  const sibling = path.join(base, "sibling")
  for (const d of [root, outside, sibling, path.join(root, "dir"), path.join(outside, "sub")]) fs.mkdirSync(d)
  fs.writeFileSync(path.join(outside, "secret.txt"), SECRET)
  fs.writeFileSync(path.join(sibling, "theirs.txt"), SECRET)
  fs.writeFileSync(path.join(root, "a.txt"), "inside")
  fs.writeFileSync(path.join(root, "dir", "b.txt"), "inside b")
  fs.symlinkSync(path.join(outside, "secret.txt"), path.join(root, "link-out"))
  fs.symlinkSync(outside, path.join(root, "link-out-dir"))
  fs.symlinkSync("a.txt", path.join(root, "link-in"))
  fs.symlinkSync("dir", path.join(root, "link-in-dir"))
  fs.symlinkSync(sibling, path.join(root, "link-sibling"))
  fs.symlinkSync("nowhere", path.join(root, "dangling"))
  fs.symlinkSync("../../outside", path.join(root, "dir", "up"))
  fs.symlinkSync("/", path.join(root, "slash"))
  const jail = yield* Jail.use((j) => j.open(root))
  return { base, root, outside, sibling, jail } satisfies World
})

const reasonOf = <A>(effect: Effect.Effect<A, JailError>) =>
  Effect.exit(effect).pipe(Effect.map((exit) => Exit.isSuccess(exit) ? "ok" : Exit.isFailure(exit) ? failureTag(exit) : "?"))

const failureTag = <A>(exit: Exit.Failure<A, JailError>): string => {
  const error = exit.cause.reasons.find((r) => r._tag === "Fail")
  return error && error._tag === "Fail" ? error.error.reason._tag : "defect"
}

const readAll = (jail: JailHandle, p: VirtualPath) =>
  Effect.acquireUseRelease(
    jail.openFile(p, { read: true, write: false }),
    (file) => file.read(0, 1 << 20).pipe(Effect.map((bytes) => Buffer.from(bytes).toString())),
    (file) => Effect.orDie(file.close)
  )

/**
 * The real binding, except that each fsync waits for `releaseSync()` before it
 * really runs; `calls` records the fsyncs and closes in the order they happen.
 */
const fsyncHeld = () => {
  const real = loadJailBinding()
  const calls: Array<string> = []
  let release: () => void = () => {}
  const syncStarted = Deferred.makeUnsafe<void>()
  const binding = {
    ...real,
    fsync: (fd: number) =>
      new Promise<void>((resolve, reject) => {
        calls.push("fsync")
        Deferred.doneUnsafe(syncStarted, Effect.void)
        release = () => real.fsync(fd).then(() => {
          calls.push("fsync done")
          resolve()
        }, reject)
      }),
    fstatClose: (fd: number) => {
      calls.push("close")
      return real.fstatClose(fd)
    }
  }
  return { binding, calls, syncStarted, releaseSync: () => release() }
}

/** A file in a new jail (`prefix` names its temp dir) whose fsync has started and waits for `releaseSync()`. */
const fsyncRunning = (prefix: string) =>
  Effect.gen(function*() {
    const base = yield* tempDir(prefix)
    fs.writeFileSync(path.join(base, "f"), "data")
    const { binding, calls, releaseSync, syncStarted } = fsyncHeld()
    const jail = yield* (yield* JailNative.makeWithBinding(binding)).open(base)
    const file = yield* jail.openFile("/f" as VirtualPath, { read: true, write: true })
    const sync = yield* Effect.forkChild(file.sync)
    yield* Deferred.await(syncStarted)
    return { calls, file, releaseSync, sync }
  })

describe("JailNative", () => {
  it.layer(jailLayer)((it) => {
    it.effect("reads, writes, lists and changes files inside the root", () =>
      Effect.gen(function*() {
        const { jail, root } = yield* world
        assert.strictEqual(yield* readAll(jail, raw("/a.txt")), "inside")
        const file = yield* jail.openFile(raw("/dir/new.txt"), { read: true, write: true, create: true, exclusive: true })
        yield* file.write(0, Buffer.from("hello "))
        yield* file.write(6, Buffer.from("world"))
        assert.strictEqual(Buffer.from(yield* file.read(0, 100)).toString(), "hello world")
        assert.strictEqual(Buffer.from(yield* file.read(6, 100)).toString(), "world")
        assert.strictEqual((yield* file.read(11, 100)).length, 0, "EOF is an empty read")
        assert.strictEqual((yield* file.stat).size, 11)
        yield* file.sync
        yield* file.close
        yield* file.close
        assert.strictEqual(yield* reasonOf(file.read(0, 1)), "Io", "a closed handle never touches a reused fd")
        assert.strictEqual(fs.statSync(path.join(root, "dir", "new.txt")).mode & 0o777, 0o600)
        assert.strictEqual(yield* reasonOf(jail.openFile(raw("/dir/new.txt"), { read: false, write: true, create: true, exclusive: true })), "AlreadyExists")

        const appender = yield* jail.openFile(raw("/dir/new.txt"), { read: false, write: true, append: true })
        yield* appender.write(0, Buffer.from("!"))
        yield* appender.close
        assert.strictEqual(fs.readFileSync(path.join(root, "dir", "new.txt"), "utf8"), "hello world!")
        const truncating = yield* jail.openFile(raw("/dir/new.txt"), { read: false, write: true, truncate: true })
        yield* truncating.close
        assert.strictEqual(fs.statSync(path.join(root, "dir", "new.txt")).size, 0)

        yield* jail.mkdir(raw("/made"))
        assert.strictEqual(fs.statSync(path.join(root, "made")).mode & 0o777, 0o700)
        assert.strictEqual(yield* reasonOf(jail.mkdir(raw("/made"))), "AlreadyExists")
        yield* jail.rename(raw("/dir/new.txt"), raw("/made/moved.txt"), { overwrite: false })
        assert.strictEqual(yield* reasonOf(jail.rename(raw("/a.txt"), raw("/dir/b.txt"), { overwrite: false })), "AlreadyExists")
        yield* jail.rename(raw("/a.txt"), raw("/dir/b.txt"), { overwrite: true })
        assert.strictEqual(fs.readFileSync(path.join(root, "dir", "b.txt"), "utf8"), "inside")
        yield* jail.link(raw("/dir/b.txt"), raw("/made/hard.txt"))
        assert.strictEqual(fs.statSync(path.join(root, "made", "hard.txt")).nlink, 2)
        assert.strictEqual(yield* reasonOf(jail.rmdir(raw("/made"))), "NotEmpty")
        yield* jail.remove(raw("/made/hard.txt"))
        yield* jail.remove(raw("/made/moved.txt"))
        assert.strictEqual(yield* reasonOf(jail.remove(raw("/dir"))), "IsADirectory")
        yield* jail.rmdir(raw("/made"))
        assert.strictEqual(yield* reasonOf(jail.stat(raw("/made"))), "NotFound")

        yield* jail.setAttributes(raw("/dir/b.txt"), { mode: 0o6755, mtimeMs: 1_000_000_000_000 })
        const changed = yield* jail.stat(raw("/dir/b.txt"))
        assert.strictEqual(changed.mode & 0o7777, 0o755, "setuid and setgid are stripped")
        assert.strictEqual(changed.mtimeMs, 1_000_000_000_000)
        yield* jail.setAttributes(raw("/dir/b.txt"), { size: 2 })
        assert.strictEqual(fs.readFileSync(path.join(root, "dir", "b.txt"), "utf8"), "in")

        const names = yield* jail.list(raw("/"), 2).pipe(Stream.map((e) => `${e.name}:${e.stat.type}`), Stream.runCollect)
        assert.deepStrictEqual([...names].sort(), [
          "dangling:symlink", "dir:directory", "link-in-dir:symlink", "link-in:symlink", "link-out-dir:symlink",
          "link-out:symlink", "link-sibling:symlink", "slash:symlink"
        ])
        const vfs = yield* jail.statvfs(raw("/"))
        assert.isAbove(vfs.blockSize, 0)
        assert.strictEqual(jail.hostPath(raw("/dir/b.txt")), path.join(root, "dir", "b.txt"))
      }))

    it.effect("lists a large directory in bounded batches, every entry once", () =>
      Effect.gen(function*() {
        const { jail, root } = yield* world
        fs.mkdirSync(path.join(root, "many"))
        for (let i = 0; i < 1500; i++) fs.writeFileSync(path.join(root, "many", `f${i}`), "")
        const dir = yield* jail.openDirectory(raw("/many"))
        const seen = new Set<string>()
        while (true) {
          const batch = yield* dir.read(100)
          if (batch.length === 0) break
          assert.isAtMost(batch.length, 100)
          for (const e of batch) {
            assert.isFalse(seen.has(e.name))
            seen.add(e.name)
          }
        }
        yield* dir.close
        assert.strictEqual(seen.size, 1500)
      }))

    it.effect("no traversal form, symlink or special file reaches outside the root", () =>
      Effect.gen(function*() {
        const w = yield* world
        const { jail } = w
        const before = digest(w.outside) + digest(w.sibling)
        const rootBefore = fs.readdirSync(w.base).sort()

        // Traversal handed straight to the kernel, bypassing the path cleaning.
        for (const p of ["/../outside/secret.txt", "/../../../../etc/passwd", "/dir/../../outside/secret.txt", "/./../sibling/theirs.txt"]) {
          const reason = yield* reasonOf(readAll(jail, raw(p)))
          assert.strictEqual(reason, "NotFound", p)
        }
        // An absolute host path is just a path inside the jail.
        assert.strictEqual(yield* reasonOf(readAll(jail, raw(`/${w.outside}/secret.txt`))), "NotFound")

        // Symlinks as the final component: never followed, whatever they point to.
        for (const link of ["/link-out", "/link-in", "/link-sibling", "/dangling", "/slash", "/dir/up"]) {
          assert.strictEqual(yield* reasonOf(readAll(jail, raw(link))), "SymlinkRefused", `read ${link}`)
          assert.strictEqual(yield* reasonOf(jail.stat(raw(link))), "SymlinkRefused", `stat ${link}`)
          assert.strictEqual((yield* jail.lstat(raw(link))).type, "symlink", `lstat ${link}`)
          assert.strictEqual(yield* reasonOf(jail.openFile(raw(link), { read: false, write: true, truncate: true })), "SymlinkRefused")
          assert.strictEqual(yield* reasonOf(jail.openFile(raw(link), { read: false, write: true, create: true })), "SymlinkRefused")
          assert.strictEqual(yield* reasonOf(jail.setAttributes(raw(link), { mode: 0o777 })), "SymlinkRefused", `chmod ${link}`)
          assert.strictEqual(yield* reasonOf(jail.setAttributes(raw(link), { size: 0 })), "SymlinkRefused", `truncate ${link}`)
          assert.strictEqual(yield* reasonOf(jail.link(raw(link), raw("/hard"))), "Unsupported", `hardlink to ${link}`)
          assert.strictEqual(yield* reasonOf(jail.openDirectory(raw(link))), "SymlinkRefused", `list ${link}`)
        }
        // Symlinks as a middle component: every operation refused.
        for (const dir of ["/link-out-dir", "/link-in-dir", "/link-sibling", "/slash", "/dir/up"]) {
          const p = raw(`${dir}/secret.txt`)
          for (const [name, op] of [
            ["read", readAll(jail, p)],
            ["stat", jail.stat(p)],
            ["lstat", jail.lstat(p)],
            ["create", jail.openFile(raw(`${dir}/new`), { read: false, write: true, create: true })],
            ["mkdir", jail.mkdir(raw(`${dir}/newdir`))],
            ["rmdir", jail.rmdir(raw(`${dir}/sub`))],
            ["remove", jail.remove(p)],
            ["rename from", jail.rename(p, raw("/stolen"), { overwrite: true })],
            ["rename to", jail.rename(raw("/dir/b.txt"), raw(`${dir}/planted`), { overwrite: true })],
            ["link from", jail.link(p, raw("/stolen"))],
            ["link to", jail.link(raw("/dir/b.txt"), raw(`${dir}/planted`))],
            ["chmod", jail.setAttributes(p, { mode: 0o777 })],
            ["utimes", jail.setAttributes(p, { atimeMs: 0, mtimeMs: 0 })],
            ["list", jail.openDirectory(raw(dir === "/slash" ? "/slash/etc" : `${dir}/sub`))],
            ["statvfs", jail.statvfs(p)]
          ] as const) {
            const reason: string = yield* reasonOf(op as Effect.Effect<unknown, JailError>)
            assert.include(["SymlinkRefused", "NotFound"], reason, `${name} through ${dir}`)
          }
        }
        // Removing or renaming a planted link acts on the link, never on its target.
        yield* jail.rename(raw("/link-out"), raw("/renamed-link"), { overwrite: false })
        yield* jail.remove(raw("/renamed-link"))
        yield* jail.remove(raw("/link-out-dir"))

        assert.strictEqual(digest(w.outside) + digest(w.sibling), before, "nothing outside the root changed")
        assert.deepStrictEqual(fs.readdirSync(w.base).sort(), rootBefore, "nothing was created beside the root")
      }))

    it.effect("names the kernel cannot take are refused, not truncated", () =>
      Effect.gen(function*() {
        const { jail } = yield* world
        assert.strictEqual(yield* reasonOf(jail.stat(raw(`/${"a".repeat(300)}`))), "InvalidPath")
        assert.strictEqual(yield* reasonOf(jail.stat(raw(`/${"a/".repeat(32 * 1024)}`))), "InvalidPath")
        assert.strictEqual(yield* reasonOf(jail.stat(raw("/a.txt\u0000/../link-out"))), "InvalidPath")
        assert.strictEqual(yield* reasonOf(jail.mkdir(raw("/"))), "InvalidPath")
        assert.strictEqual(yield* reasonOf(jail.rmdir(raw("/"))), "InvalidPath")
        assert.strictEqual(yield* reasonOf(jail.rename(raw("/"), raw("/x"), { overwrite: false })), "InvalidPath")
      }))

    it.effect("a setuid/setgid file planted in the root loses those bits when opened for writing, even by root", () =>
      Effect.gen(function*() {
        const { jail, root } = yield* world
        const planted = path.join(root, "planted-suid")
        fs.writeFileSync(planted, "#!/bin/sh\n")
        fs.chmodSync(planted, 0o6755)
        const reading = yield* jail.openFile(raw("/planted-suid"), { read: true, write: false })
        yield* reading.close
        assert.strictEqual(fs.statSync(planted).mode & 0o7777, 0o6755, "reading leaves the mode alone")
        const writing = yield* jail.openFile(raw("/planted-suid"), { read: false, write: true })
        yield* writing.write(0, Buffer.from("#!/bin/sh\nid\n"))
        yield* writing.close
        assert.strictEqual(fs.statSync(planted).mode & 0o7777, 0o755)
      }))

    it.effect("FIFOs and device nodes planted in the root are refused without blocking", () =>
      Effect.gen(function*() {
        const { jail, root } = yield* world
        execFileSync("mkfifo", [path.join(root, "fifo")])
        execFileSync("mknod", [path.join(root, "null"), "c", "1", "3"])
        for (const p of ["/fifo", "/null"]) {
          assert.strictEqual(yield* reasonOf(jail.openFile(raw(p), { read: true, write: false })), "Unsupported", p)
          assert.strictEqual(yield* reasonOf(jail.openFile(raw(p), { read: false, write: true })), "Unsupported", p)
          assert.strictEqual(yield* reasonOf(jail.setAttributes(raw(p), { size: 0 })), "Unsupported", p)
          assert.strictEqual((yield* jail.stat(raw(p))).type, "other")
        }
        assert.strictEqual(yield* reasonOf(jail.openFile(raw("/dir"), { read: true, write: false })), "IsADirectory")
      }))

    it.effect("a root that is itself a symlink, or relative, is refused; errors never carry host paths", () =>
      Effect.gen(function*() {
        const w = yield* world
        fs.symlinkSync(w.root, path.join(w.base, "root-link"))
        const viaLink = yield* Effect.flip(Effect.scoped(Jail.use((j) => j.open(path.join(w.base, "root-link")))))
        assert.strictEqual(viaLink.reason._tag, "SymlinkRefused")
        const relative = yield* Effect.flip(Effect.scoped(Jail.use((j) => j.open("srv/alice"))))
        assert.strictEqual(relative.reason._tag, "InvalidPath")
        const missing = yield* Effect.flip(Effect.scoped(Jail.use((j) => j.open(path.join(w.base, "missing")))))
        assert.strictEqual(missing.reason._tag, "NotFound")
        for (const error of [viaLink, relative, missing, yield* Effect.flip(w.jail.stat(raw("/link-out/x")))]) {
          assert.notInclude(error.message, w.base)
          assert.notInclude(JSON.stringify(error), w.base)
        }
      }))

    it.effect("the jail root is held by fd: renaming the root on the host does not redirect the session", () =>
      Effect.gen(function*() {
        const w = yield* world
        fs.renameSync(w.root, path.join(w.base, "moved"))
        fs.symlinkSync(w.outside, w.root)
        assert.strictEqual(yield* readAll(w.jail, raw("/dir/b.txt")), "inside b")
        assert.strictEqual(yield* reasonOf(readAll(w.jail, raw("/secret.txt"))), "NotFound")
      }))

  })

  it.live("symlink-swap race: a directory swapped with a link to / in a loop never yields an outside byte", () =>
    Effect.gen(function*() {
      const w = yield* world
      const d = path.join(w.root, "d")
      fs.mkdirSync(d)
      fs.writeFileSync(path.join(d, "f"), "inside")
      fs.mkdirSync(path.join(w.outside, "d"))
      fs.writeFileSync(path.join(w.outside, "d", "f"), SECRET)
      // Another process swaps d between a real directory and a symlink to the outside,
      // for a bounded time, while this process reads d/f through the jail.
      const swapper = spawn("python3", ["-c", `
import os, time
root, outside = ${JSON.stringify(w.root)}, ${JSON.stringify(w.outside)}
os.symlink(os.path.join(outside, "d"), os.path.join(root, "evil"))
end = time.time() + 2
while time.time() < end:
  os.rename(os.path.join(root, "d"), os.path.join(root, "real"))
  os.rename(os.path.join(root, "evil"), os.path.join(root, "d"))
  os.rename(os.path.join(root, "d"), os.path.join(root, "evil"))
  os.rename(os.path.join(root, "real"), os.path.join(root, "d"))
`], { stdio: "ignore" })
      const exited = new Promise<number | null>((resolve) => swapper.on("exit", resolve))
      let done = false
      void exited.then(() => { done = true })
      const outcomes = { inside: 0, refused: 0, secret: 0 }
      while (!done) {
        const result = yield* Effect.exit(readAll(w.jail, raw("/d/f")))
        if (Exit.isSuccess(result)) {
          if (result.value === SECRET) outcomes.secret++
          else outcomes.inside++
        } else outcomes.refused++
      }
      assert.strictEqual(yield* Effect.promise(() => exited), 0)
      assert.strictEqual(outcomes.secret, 0)
      assert.isAbove(outcomes.inside, 0)
      assert.isAbove(outcomes.refused, 0, "the race was real: some reads met the symlink")
    }).pipe(Effect.provide(jailLayer)))

  it.effect("a kernel without openat2 fails the layer at startup with JailUnavailable", () =>
    Effect.gen(function*() {
      const real = loadJailBinding()
      const noOpenat2 = { ...real, probe: () => Promise.reject(Object.assign(new Error("openat2: Function not implemented"), { code: "ENOSYS" })) }
      const error = yield* Effect.flip(JailNative.makeWithBinding(noOpenat2))
      assert.strictEqual(error._tag, "JailUnavailable")
      assert.include(error.message, "ENOSYS")
      assert.include(error.message, "Linux 5.6")
      const seccomp = { ...real, probe: () => Promise.reject(Object.assign(new Error("openat2: Operation not permitted"), { code: "EPERM" })) }
      assert.include((yield* Effect.flip(JailNative.makeWithBinding(seccomp))).message, "seccomp")
      // The real kernel passes the probe.
      assert.isTrue(Exit.isSuccess(yield* Effect.exit(Layer.build(jailLayer))))
    }))

  // Found by test/fuzz: SFTP copy-data reads a handle it does not lock, so a CLOSE
  // of that handle could close the fd while the read was still on the thread pool,
  // where the fd number may already name another user's file.
  it.effect("close waits for a syscall still running on the file's fd, then closes it", () =>
    Effect.gen(function*() {
      const { calls, file, releaseSync, sync } = yield* fsyncRunning("portcullis-jail-close-")
      const close = yield* Effect.forkChild(file.close)
      yield* Effect.yieldNow
      const whileRunning = calls.slice()
      // New calls are refused at once, without touching the fd.
      const readAfterClose = yield* reasonOf(file.read(0, 4))
      releaseSync()
      yield* Fiber.join(sync)
      yield* Fiber.join(close)
      assert.deepStrictEqual(whileRunning, ["fsync"], "the fd was closed under a running fsync")
      assert.strictEqual(readAfterClose, "Io")
      assert.deepStrictEqual(calls, ["fsync", "fsync done", "close"])
    }))

  // Every SFTP request's file call is one callback whose cancellation waits for
  // the call: an interrupted session must not close the fd, and let the process
  // reuse its number, while the call still runs on the thread pool.
  it.effect("an interrupted caller waits for its syscall: the interruption ends only once the call has settled", () =>
    Effect.gen(function*() {
      const { calls, file, releaseSync, sync } = yield* fsyncRunning("portcullis-jail-interrupt-")
      const interrupting = yield* Effect.forkChild(Fiber.interrupt(sync))
      for (let i = 0; i < 5; i++) yield* Effect.yieldNow
      assert.isUndefined(interrupting.pollUnsafe(), "the interruption ended while the fsync ran")
      releaseSync()
      yield* Fiber.join(interrupting)
      assert.deepStrictEqual(calls, ["fsync", "fsync done"])
      assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(sync)))
      yield* file.close
    }))
})
