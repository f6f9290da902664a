/**
 * Attempts to leave a jail root through the addon: "..", absolute paths, symlinks
 * (final and middle, pointing inside, outside, to a sibling root, dangling, to a
 * magic link), a root that is itself a symlink, and a rename race that swaps a
 * directory for a symlink while operations run. Outside the root sit a canary
 * directory and a sibling root whose names share the root's prefix; their hash
 * must not change and nothing in them may ever be read.
 */
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Worker } from "node:worker_threads"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { NativeStat } from "../../native/jail.js"
import { loadJailBinding } from "../../native/load.js"

const jail = loadJailBinding()
const { O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, S_IFLNK, S_IFMT } = jail.constants

const base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-escape-")))
const rootDir = path.join(base, "root")
const canaryDir = path.join(base, "canary")
const siblingDir = path.join(base, "rootx")
let rootFd = -1

/** Everything observable about a tree except access times: names, types, modes, owners, links, contents. */
const hashTree = (dir: string): string => {
  const hash = createHash("sha256")
  const visit = (p: string): void => {
    const s = fs.lstatSync(p, { bigint: true })
    hash.update(`${path.relative(base, p)}|${s.mode}|${s.uid}|${s.gid}|${s.nlink}|${s.size}|${s.mtimeNs}|${s.ctimeNs}\n`)
    if (s.isSymbolicLink()) hash.update(fs.readlinkSync(p))
    else if (s.isFile()) hash.update(fs.readFileSync(p))
    else if (s.isDirectory()) for (const name of fs.readdirSync(p).sort()) visit(path.join(p, name))
  }
  visit(dir)
  return hash.digest("hex")
}

const outsideHash = (): string => hashTree(canaryDir) + hashTree(siblingDir)

const openFds = (): number => fs.readdirSync("/proc/self/fd").length

/** The error code of a rejection, or "ok". */
const outcome = (promise: Promise<unknown>): Promise<string> =>
  promise.then(
    () => "ok",
    (e: unknown) => String((e as NodeJS.ErrnoException).code)
  )

/** The outcome of each named call; all handlers are attached at once so that no rejection goes unhandled. */
const outcomesOf = (calls: ReadonlyArray<readonly [string, Promise<unknown>]>) =>
  Promise.all(calls.map(async ([name, call]) => [name, await outcome(call)]))

const expectOutcomes = async (calls: ReadonlyArray<readonly [string, Promise<unknown>]>, expected: string) =>
  expect(await outcomesOf(calls)).toEqual(calls.map(([name]) => [name, expected]))

const readFile = async (p: string): Promise<string> => {
  const fd = await jail.open(rootFd, p, O_RDONLY, 0)
  try {
    const buffer = Buffer.alloc(64)
    return buffer.subarray(0, fs.readSync(fd, buffer, 0, buffer.length, 0)).toString()
  } finally {
    await jail.close(fd)
  }
}

/** Symlinks planted in the root: name → target. */
const links: Readonly<Record<string, string>> = {
  "to-inside": "inside",
  "to-inside-abs": path.join(rootDir, "inside"),
  "to-canary": canaryDir,
  "to-canary-rel": "../canary",
  "to-sibling": "../rootx",
  "dangling": "nowhere",
  "to-proc-root": "/proc/self/root",
  "file-inside": "file",
  "file-outside": path.join(canaryDir, "f")
}

let hashBefore = ""
let fdsBefore = 0

beforeAll(async () => {
  fs.mkdirSync(path.join(rootDir, "inside", "sub"), { recursive: true })
  fs.mkdirSync(path.join(rootDir, "a"))
  fs.mkdirSync(path.join(rootDir, "etc"))
  fs.writeFileSync(path.join(rootDir, "inside", "f"), "inside")
  fs.writeFileSync(path.join(rootDir, "file"), "jailed file")
  fs.writeFileSync(path.join(rootDir, "etc", "passwd"), "jailed passwd")
  fs.mkdirSync(path.join(canaryDir, "sub"), { recursive: true })
  fs.writeFileSync(path.join(canaryDir, "f"), "SECRET")
  fs.writeFileSync(path.join(canaryDir, "sub", "g"), "SECRET")
  fs.mkdirSync(siblingDir)
  fs.writeFileSync(path.join(siblingDir, "f"), "SIBLING")
  for (const [name, target] of Object.entries(links)) fs.symlinkSync(target, path.join(rootDir, name))
  hashBefore = outsideHash()
  fdsBefore = openFds()
  rootFd = await jail.openRoot(rootDir)
})

afterAll(async () => {
  await jail.close(rootFd)
  expect(outsideHash()).toBe(hashBefore)
  // Every call was awaited, and the binding closes its fds before it settles.
  expect(openFds()).toBeLessThanOrEqual(fdsBefore)
  fs.rmSync(base, { recursive: true, force: true })
})

describe("dot-dot and absolute paths stay in the root", () => {
  const rootIno = () => fs.statSync(rootDir).ino

  it("resolves .. at the root to the root itself", async () => {
    for (const p of ["..", "../..", "a/../../..", "/..", "inside/../../..", "./../a/../.."]) {
      expect([p, (await jail.stat(rootFd, p)).ino]).toEqual([p, rootIno()])
    }
  })

  it("reads the jailed /etc/passwd, never the host's", async () => {
    for (const p of ["/etc/passwd", "//etc//passwd", "../../../../etc/passwd", "inside/../../etc/passwd"]) {
      expect([p, await readFile(p)]).toEqual([p, "jailed passwd"])
    }
  })

  it("cannot name the canary or the sibling root by any path", async () => {
    for (const p of ["../canary/f", "/../canary/f", "a/../../canary/f", "../rootx/f", path.join(canaryDir, "f")]) {
      expect([p, await outcome(jail.stat(rootFd, p))]).toEqual([p, "ENOENT"])
      expect([p, await outcome(jail.open(rootFd, p, O_RDONLY, 0))]).toEqual([p, "ENOENT"])
    }
  })

  it("creates, renames and links into the root when a path climbs above it", async () => {
    await jail.mkdir(rootFd, "../escaped-dir", 0o700)
    await jail.close(await jail.open(rootFd, "../../escaped-file", O_CREAT | O_WRONLY, 0o600))
    await jail.rename(rootFd, "escaped-file", "a/../../moved", true)
    await jail.link(rootFd, "moved", "/../../linked")
    expect(fs.statSync(path.join(rootDir, "escaped-dir")).isDirectory()).toBe(true)
    expect(fs.statSync(path.join(rootDir, "moved")).nlink).toBe(2)
    expect(fs.existsSync(path.join(rootDir, "linked"))).toBe(true)
    expect(fs.readdirSync(base).sort()).toEqual(["canary", "root", "rootx"])
    await jail.unlink(rootFd, "../linked")
    await jail.unlink(rootFd, "moved")
    await jail.rmdir(rootFd, "../escaped-dir")
  })

  it("lists the root for ..", async () => {
    const dirFd = await jail.openDir(rootFd, "../..")
    const names = (await jail.readDir(dirFd, 1000)).map((e) => e.name)
    await jail.close(dirFd)
    expect(names).toContain("inside")
    expect(names).not.toContain("canary")
    expect(names).not.toContain("rootx")
  })
})

describe("a root that is a symlink", () => {
  it("is refused with ELOOP", async () => {
    const alias = path.join(base, "root-alias")
    fs.symlinkSync(rootDir, alias)
    try {
      expect(await outcome(jail.openRoot(alias))).toBe("ELOOP")
      expect(await outcome(jail.openRoot(`${alias}/`))).toBe("ELOOP")
    } finally {
      fs.unlinkSync(alias)
    }
  })
})

describe.each(Object.keys(links))("symlink %s", (link) => {
  const isLink = (s: NativeStat) => (s.mode & S_IFMT) === S_IFLNK

  it("refuses every operation through it as a middle component with ELOOP", async () => {
    const inner = `${link}/f`
    const calls: ReadonlyArray<readonly [string, Promise<unknown>]> = [
      ["stat", jail.stat(rootFd, inner)],
      ["lstat", jail.lstat(rootFd, inner)],
      ["open read", jail.open(rootFd, inner, O_RDONLY, 0)],
      ["open write", jail.open(rootFd, inner, O_WRONLY | O_TRUNC, 0)],
      ["open create", jail.open(rootFd, `${link}/new`, O_CREAT | O_RDWR, 0o600)],
      ["open exclusive", jail.open(rootFd, `${link}/new`, O_CREAT | O_EXCL | O_RDWR, 0o600)],
      ["openDir", jail.openDir(rootFd, `${link}/sub`)],
      ["openDir dot", jail.openDir(rootFd, `${link}/.`)],
      ["stat dot-dot", jail.stat(rootFd, `${link}/..`)],
      ["mkdir", jail.mkdir(rootFd, `${link}/new`, 0o700)],
      ["rmdir", jail.rmdir(rootFd, `${link}/sub`)],
      ["unlink", jail.unlink(rootFd, inner)],
      ["rename from", jail.rename(rootFd, inner, "stolen", false)],
      ["rename to", jail.rename(rootFd, "file", `${link}/planted`, true)],
      ["link from", jail.link(rootFd, inner, "stolen")],
      ["link to", jail.link(rootFd, "file", `${link}/planted`)],
      ["chmod", jail.chmod(rootFd, inner, 0o777)],
      ["chown", jail.chown(rootFd, inner, 1234, 1234)],
      ["utimes", jail.utimes(rootFd, inner, 0, 0)],
      ["truncate", jail.truncate(rootFd, inner, 0)],
      ["statvfs", jail.statvfs(rootFd, inner)]
    ]
    await expectOutcomes(calls, "ELOOP")
    expect(fs.existsSync(path.join(rootDir, "stolen"))).toBe(false)
    expect(fs.readFileSync(path.join(rootDir, "file"), "utf8")).toBe("jailed file")
  })

  it("refuses every operation that would follow it as the final component with ELOOP", async () => {
    const calls: ReadonlyArray<readonly [string, Promise<unknown>]> = [
      ["stat", jail.stat(rootFd, link)],
      ["open read", jail.open(rootFd, link, O_RDONLY, 0)],
      ["open write", jail.open(rootFd, link, O_WRONLY | O_TRUNC, 0)],
      ["open create", jail.open(rootFd, link, O_CREAT | O_RDWR, 0o600)],
      ["openDir", jail.openDir(rootFd, link)],
      ["chmod", jail.chmod(rootFd, link, 0o777)],
      ["chown", jail.chown(rootFd, link, 1234, 1234)],
      ["utimes", jail.utimes(rootFd, link, 0, 0)],
      ["truncate", jail.truncate(rootFd, link, 0)],
      ["statvfs", jail.statvfs(rootFd, link)]
    ]
    await expectOutcomes(calls, "ELOOP")
  })

  it("acts on the link itself where a call takes the final name as a name", async () => {
    expect(isLink(await jail.lstat(rootFd, link))).toBe(true)
    // The name exists, so creating at it fails; it is not a directory, so rmdir fails.
    expect(await outcome(jail.open(rootFd, link, O_CREAT | O_EXCL | O_WRONLY, 0o600))).toBe("EEXIST")
    expect(await outcome(jail.mkdir(rootFd, link, 0o700))).toBe("EEXIST")
    expect(await outcome(jail.link(rootFd, "file", link))).toBe("EEXIST")
    expect(await outcome(jail.rename(rootFd, "file", link, true))).toBe("EEXIST")
    expect(await outcome(jail.rmdir(rootFd, link))).toBe("ENOTDIR")
    // A hard link would be to the symlink itself, which is not a regular file.
    expect(await outcome(jail.link(rootFd, link, "stolen"))).toBe("ENOTREG")
    // Renaming and removing the name move and remove the link, never its target.
    await jail.rename(rootFd, link, `${link}.moved`, true)
    expect(fs.readlinkSync(path.join(rootDir, `${link}.moved`))).toBe(links[link])
    await jail.unlink(rootFd, `${link}.moved`)
    expect(fs.existsSync(path.join(rootDir, `${link}.moved`))).toBe(false)
    fs.symlinkSync(links[link] ?? "", path.join(rootDir, link))
    expect(fs.readFileSync(path.join(rootDir, "inside", "f"), "utf8")).toBe("inside")
    expect(fs.readFileSync(path.join(rootDir, "file"), "utf8")).toBe("jailed file")
  })

  it("is listed as a symlink", async () => {
    const dirFd = await jail.openDir(rootFd, "")
    const entries = await jail.readDir(dirFd, 1000)
    await jail.close(dirFd)
    const entry = entries.find((e) => e.name === link)
    expect(entry !== undefined && isLink(entry.stat)).toBe(true)
  })
})

describe("a directory swapped with a symlink while operations run", () => {
  // The swapper runs on its own thread so that renames really interleave with the
  // addon's syscalls on the libuv thread pool.
  const swapper = `
    const { renameSync } = require("node:fs")
    const { parentPort, workerData } = require("node:worker_threads")
    const { root, deadline, iterations } = workerData
    let i = 0
    for (; i < iterations && Date.now() < deadline; i++) {
      renameSync(root + "/dA", root + "/d")
      renameSync(root + "/d", root + "/dA")
      renameSync(root + "/dL", root + "/d")
      renameSync(root + "/d", root + "/dL")
    }
    parentPort.postMessage(i)
  `

  it("never reads, stats, links or changes the file behind the symlink", async () => {
    fs.mkdirSync(path.join(rootDir, "dA"))
    fs.writeFileSync(path.join(rootDir, "dA", "f"), "inside")
    fs.symlinkSync(canaryDir, path.join(rootDir, "dL"))
    const secretIno = fs.statSync(path.join(canaryDir, "f")).ino
    const outcomes = new Map<string, number>()
    const record = (key: string) => outcomes.set(key, (outcomes.get(key) ?? 0) + 1)

    let running = true
    const worker = new Worker(swapper, {
      eval: true,
      workerData: { root: rootDir, deadline: Date.now() + 2000, iterations: 20_000 }
    })
    const swaps = new Promise<number>((resolve, reject) => {
      worker.once("message", resolve)
      worker.once("error", reject)
    }).finally(() => {
      running = false
    })

    const attacker = async (n: number) => {
      while (running) {
        record(`read ${await readFile("d/f").catch((e: NodeJS.ErrnoException) => String(e.code))}`)
        record(
          `stat ${await jail.stat(rootFd, "d/f").then((s) => (s.ino === secretIno ? "SECRET" : "ok"), (e) => String(e.code))}`
        )
        record(`mkdir ${await outcome(jail.mkdir(rootFd, `d/x${n}`, 0o700))}`)
        record(`rmdir ${await outcome(jail.rmdir(rootFd, `d/x${n}`))}`)
        record(`chmod ${await outcome(jail.chmod(rootFd, "d/f", 0o600))}`)
        record(`utimes ${await outcome(jail.utimes(rootFd, "d/f", 0, 0))}`)
        record(`truncate ${await outcome(jail.truncate(rootFd, "d/f", 6))}`)
        const linked = await outcome(jail.link(rootFd, "d/f", `hl${n}`))
        record(`link ${linked}`)
        if (linked === "ok") {
          record(`read link ${await readFile(`hl${n}`)}`)
          await jail.unlink(rootFd, `hl${n}`)
        }
      }
    }
    await Promise.all([swaps, ...Array.from({ length: 4 }, (_, n) => attacker(n))])
    expect(await swaps).toBeGreaterThan(0)

    const keys = [...outcomes.keys()]
    expect(keys.filter((k) => k.includes("SECRET"))).toEqual([])
    // Every call either worked on the directory or was refused: gone (ENOENT), a
    // symlink (ELOOP), or leftovers of an earlier refused step (EEXIST, ENOENT).
    expect(keys.filter((k) => !/ (ok|inside|ENOENT|ELOOP|EEXIST)$/.test(k))).toEqual([])
    expect(outcomes.get("read inside") ?? 0).toBeGreaterThan(0)
    expect(outcomes.get("read ELOOP") ?? 0).toBeGreaterThan(0)
    expect(fs.readFileSync(path.join(canaryDir, "f"), "utf8")).toBe("SECRET")
  })
})
