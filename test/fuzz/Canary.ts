/**
 * Canaries beside a user's root, and a digest of everything outside the root,
 * so a fuzzer can prove "nothing outside the root was touched".
 *
 * `plantCanaries` fills the directories an escape would reach first: a sibling
 * directory with files and a subdirectory, and a sibling whose name extends the
 * root's name (root `alice`, canary `alice2`: a string-prefix containment check
 * would let one into the other). `outsideDigest` hashes every name, type, mode,
 * size, modification time and content under a base directory, skipping the
 * roots the clients may change; comparing it before and after a property shows
 * any file created, removed, renamed, written or chmod-ed outside those roots.
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"

/** The content of every canary file; it must never reach a client. */
export const canarySecret = "CANARY-OUTSIDE-THE-ROOT-7d41e9"

/**
 * Creates `<root>2` (the prefix sibling) and `<parent>/outside`, next to `root`,
 * each with files, a subdirectory and modes that a setstat would change.
 * @category testing
 */
export const plantCanaries = (root: string): ReadonlyArray<string> => {
  const parent = path.dirname(root)
  const dirs = [`${root}2`, path.join(parent, "outside")]
  for (const dir of dirs) {
    fs.mkdirSync(path.join(dir, "sub"), { recursive: true })
    fs.writeFileSync(path.join(dir, "f"), canarySecret)
    fs.writeFileSync(path.join(dir, "new"), canarySecret)
    fs.writeFileSync(path.join(dir, "sub", "g"), canarySecret)
    fs.chmodSync(path.join(dir, "f"), 0o640)
  }
  return dirs
}

/**
 * A digest of every entry under `base` except the subtrees in `skip` (absolute
 * paths): names, types, modes, sizes, modification times, link targets, contents.
 * @category testing
 */
export const outsideDigest = (base: string, skip: ReadonlyArray<string>): string => {
  const hash = crypto.createHash("sha256")
  const skipped = new Set(skip.map((p) => path.resolve(p)))
  const walk = (dir: string) => {
    for (const name of fs.readdirSync(dir).sort()) {
      const p = path.join(dir, name)
      // A root's own entry changes too (its mtime with every file created in it).
      if (skipped.has(p)) continue
      const s = fs.lstatSync(p)
      hash.update(`${path.relative(base, p)}\0${s.mode}\0${s.size}\0${s.mtimeMs}\0${s.nlink}\n`)
      if (s.isDirectory()) walk(p)
      else if (s.isFile()) hash.update(fs.readFileSync(p))
      else if (s.isSymbolicLink()) hash.update(fs.readlinkSync(p))
    }
  }
  walk(base)
  return hash.digest("hex")
}

/**
 * Symlinks inside `root` that lead to the canaries (relative, absolute, to the
 * prefix sibling, to the host's root), so every random path may run through
 * one; the jail must never follow them.
 * @category testing
 */
export const plantEscapeLinks = (root: string): void => {
  const parent = path.dirname(root)
  fs.symlinkSync("../outside", path.join(root, "out"))
  fs.symlinkSync(path.join(parent, "outside"), path.join(root, "abs"))
  fs.symlinkSync(`../${path.basename(root)}2`, path.join(root, "sib"))
  fs.symlinkSync("/", path.join(root, "slash"))
  fs.symlinkSync("../outside/f", path.join(root, "file-out"))
}

/** The names `plantEscapeLinks` creates, for path arbitraries. */
export const escapeLinkNames: ReadonlyArray<string> = ["out", "abs", "sib", "slash", "file-out"]
