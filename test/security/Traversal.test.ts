/**
 * Checklist A, path forms end to end: every traversal form a client can send
 * (`..`, `/../..`, `//`, trailing `/`, `.`, empty, absolute host paths,
 * backslashes, NUL, CR and other controls, overlong names, encoded and
 * look-alike dots) through both protocols of one real server, and the
 * "normalisation done twice" check (CVE-2026-30914): the same request through
 * SFTP and FTP names the same file or meets the same refusal, for a fixed
 * matrix with the expected answer and for random paths built from traversal
 * pieces (fast-check, fixed seed). Nothing outside the root is read or written.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"
import * as fs from "node:fs"
import * as path from "node:path"
import { call } from "../utils/SftpClient.js"
import { bothSessions, ftpDo, ftpList, ftpRead, sftpDo, sftpList, sftpRead } from "./BothProtocols.js"
import { digest, SECRET, world } from "./World.js"

describe("A.traversal (checklist A: path forms through both protocols)", () => {
  it.effect("A.traversal: `..`, `/../..`, `//`, trailing `/`, `.`, empty, absolute host paths, backslashes, NUL, CR/controls and overlong names are contained or refused, the same through SFTP and FTP", () =>
    Effect.gen(function*() {
      const w = yield* world()
      fs.writeFileSync(path.join(w.root, "back\\slash"), "BS")
      const { ftp, sftp } = yield* bothSessions(w.server)
      const canary = w.canary()
      const A = "file:A"
      const B = "file:B"
      const notFound = "refused:NotFound"
      const invalid = "refused:InvalidPath"
      const isDir = "refused:IsADirectory"
      const reads: ReadonlyArray<readonly [string, string]> = [
        // Dot-dot never climbs above the root; empty and "." components vanish; a trailing "/" is dropped.
        ...["a.txt", "/a.txt", "./a.txt", "//a.txt", "/./a.txt", "a.txt/", "/a.txt//", "dir/../a.txt", "../a.txt", "/../a.txt",
          "/../../a.txt", "../../../../a.txt", "dir/../../a.txt", "/dir/./../../.././a.txt", `${"../".repeat(1000)}a.txt`].map((p) => [p, A] as const),
        ...["dir/b.txt", "dir//b.txt", "/dir/./b.txt/", "dir/../dir/b.txt", "../dir/b.txt", "/../../dir/b.txt"].map((p) => [p, B] as const),
        ...["", ".", "..", "/", "//", "/..", "/../..", "dir/..", "dir/", "./dir/."].map((p) => [p, isDir] as const),
        // Climbing out to the canary or the sibling root ("alicex" extends "alice") reaches nothing.
        ...["../outside/secret.txt", "/../outside/secret.txt", "../../outside/secret.txt", "dir/../../outside/secret.txt",
          "../alicex/theirs.txt", "/../../home/alicex/theirs.txt", "../../alicex/theirs.txt", "/../alicex/theirs.txt"].map((p) => [p, notFound] as const),
        // Absolute host paths are paths inside the root, where they do not exist.
        ...[`${w.outside}/secret.txt`, `${w.root}/a.txt`, `${w.sibling}/theirs.txt`, "/etc/passwd", "/proc/self/root/etc/passwd"].map((p) => [p, notFound] as const),
        // A backslash is an ordinary character, never a separator.
        ...["dir\\b.txt", "..\\outside\\secret.txt", "..\\..\\..\\etc\\passwd", "\\a.txt", "dir\\..\\a.txt"].map((p) => [p, notFound] as const),
        ["back\\slash", "file:BS"],
        // Encoded and look-alike dots, and "~", are names, not traversal.
        ...["%2e%2e/outside/secret.txt", "..%2foutside%2fsecret.txt", "\u2024\u2024/outside/secret.txt", "\uff0e\uff0e/outside/secret.txt", "~/a.txt", "~"].map((p) =>
          [p, notFound] as const
        ),
        // NUL, CR and other control characters are refused outright, wherever they are.
        ...["a.txt\u0000", "a.txt\u0000../outside/secret.txt", "\u0000", "a\rb.txt", "dir/\r/b.txt", "a.txt\t", "\u007f", "\u001b[31m.txt", "dir/\u0001"].map((p) =>
          [p, invalid] as const
        ),
        // A component the kernel cannot take is refused, not truncated to a name that exists.
        [`a.txt${"x".repeat(300)}`, invalid],
        [`dir/${"y".repeat(256)}`, invalid],
        [`${"z".repeat(255)}`, notFound]
      ]
      const mismatches: Array<string> = []
      for (const [p, expected] of reads) {
        const viaSftp = yield* sftpRead(sftp, p)
        const viaFtp = yield* ftpRead(ftp, p)
        if (viaSftp !== expected || viaFtp !== expected) mismatches.push(`${JSON.stringify(p).slice(0, 60)}: sftp ${viaSftp}, ftp ${viaFtp}, expected ${expected}`)
      }
      assert.deepStrictEqual(mismatches, [])

      // Listings name the same directory.
      const rootNames = `listed:${["a.txt", "back\\slash", "dir"].sort().join(",")}`
      for (const [p, expected] of [["", rootNames], [".", rootNames], ["..", rootNames], ["/../..", rootNames], ["//", rootNames], ["dir/..", rootNames],
        ["dir/", "listed:b.txt"], ["//dir//", "listed:b.txt"], ["../dir", "listed:b.txt"], [`${w.outside}`, notFound], ["../outside", notFound]] as const) {
        assert.strictEqual(yield* sftpList(sftp, p), expected, `SFTP readdir ${p}`)
        assert.strictEqual(yield* ftpList(ftp, p), expected, `FTP NLST ${p}`)
      }

      // Relative to an FTP working directory the same rules hold.
      assert.strictEqual(yield* ftpDo(ftp, "CWD dir"), "ok")
      assert.strictEqual(yield* ftpRead(ftp, "../../../a.txt"), A)
      assert.strictEqual(yield* ftpRead(ftp, "b.txt/"), B)
      assert.strictEqual(yield* ftpDo(ftp, "CWD ../../.."), "ok")
      assert.include((yield* ftp.expect("PWD", 257)).text, "\"/\"")

      // Paths longer than PATH_MAX (SFTP carries them; an FTP line is capped at 4096 bytes), and LF.
      assert.strictEqual(yield* sftpRead(sftp, "/a".repeat(2100)), invalid)
      assert.strictEqual(yield* sftpRead(sftp, "a.txt\n../outside/secret.txt"), invalid)

      assert.strictEqual(w.canary(), canary)
    }), 120_000)

  it.effect("A.traversal: directories created through climbing, absolute or backslashed names land inside the root, the same through SFTP and FTP", () =>
    Effect.gen(function*() {
      const w = yield* world()
      const { ftp, sftp } = yield* bothSessions(w.server)
      const canary = w.canary()
      const forms = ["../../NAME", "/../NAME", "//NAME", "NAME/", "./NAME", "dir/../../NAME", "dir/../dir/NAME", `${w.outside}/NAME`, `${w.root}/NAME`, "..\\NAME",
        "/../../../tmp/NAME", "NAME\u0000", "NAME\r"]
      const mismatches: Array<string> = []
      for (const [i, form] of forms.entries()) {
        const viaSftp = yield* sftpDo(call((cb) => sftp.mkdir(form.replace("NAME", `s${i}`), cb)))
        const viaFtp = yield* ftpDo(ftp, `MKD ${form.replace("NAME", `f${i}`)}`)
        if (viaSftp !== viaFtp) mismatches.push(`${form}: sftp ${viaSftp}, ftp ${viaFtp}`)
      }
      assert.deepStrictEqual(mismatches, [])
      // Where they landed, with each protocol's name replaced by its form's number.
      const created = (prefix: string) => {
        const found: Array<string> = []
        const walk = (dir: string) => {
          for (const name of fs.readdirSync(dir)) {
            const relative = path.relative(w.root, path.join(dir, name))
            if (name.startsWith(prefix) || name.includes(`\\${prefix}`)) found.push(relative.replace(new RegExp(`${prefix}(\\d+)`), "#$1"))
            if (fs.statSync(path.join(dir, name)).isDirectory()) walk(path.join(dir, name))
          }
        }
        walk(w.root)
        return found.sort()
      }
      assert.deepStrictEqual(created("s"), created("f"))
      assert.deepStrictEqual(created("s"), ["#0", "#1", "#2", "#3", "#4", "#5", "..\\#9", "dir/#6"])
      assert.strictEqual(w.canary(), canary)
    }))

  it.effect("A.normalisation: 300 random paths of traversal pieces resolve identically through SFTP and FTP (fast-check, seed 20260707)", () =>
    Effect.gen(function*() {
      const w = yield* world()
      fs.writeFileSync(path.join(w.root, "back\\slash"), "BS")
      fs.writeFileSync(path.join(w.root, " "), "SPACE")
      const { ftp, sftp } = yield* bothSessions(w.server)
      const canary = w.canary()
      const rootDigest = digest(w.root)
      const piece = fc.constantFrom(
        "..", ".", "", "a.txt", "dir", "b.txt", "outside", "secret.txt", "alicex", "theirs.txt", "home", "\\", "..\\", "back\\slash",
        "~", "%2e%2e", " ", "etc", "passwd", w.outside.slice(1), w.root.slice(1)
      )
      const paths = fc.sample(
        fc.tuple(fc.boolean(), fc.array(piece, { maxLength: 8 }), fc.boolean()).map(([absolute, parts, slash]) =>
          `${absolute ? "/" : ""}${parts.join("/")}${slash ? "/" : ""}`
        ),
        { numRuns: 300, seed: 20260707 }
      )
      const mismatches: Array<string> = []
      const outcomes = new Set<string>()
      for (const p of paths) {
        const viaSftp = yield* sftpRead(sftp, p)
        const viaFtp = yield* ftpRead(ftp, p)
        outcomes.add(viaSftp)
        if (viaSftp !== viaFtp) mismatches.push(`${JSON.stringify(p)}: sftp ${viaSftp}, ftp ${viaFtp}`)
        assert.notInclude(viaSftp + viaFtp, SECRET, p)
      }
      assert.deepStrictEqual(mismatches, [])
      // The sample reached files, directories and refusals, not just one of them.
      for (const expected of ["file:A", "file:B", "refused:NotFound", "refused:IsADirectory"]) assert.isTrue(outcomes.has(expected), expected)
      assert.strictEqual(w.canary(), canary)
      assert.strictEqual(digest(w.root), rootDigest)
    }), 120_000)
})
