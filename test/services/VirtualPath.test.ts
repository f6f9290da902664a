import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import * as VirtualPath from "../../src/services/VirtualPath.js"

const resolve = (input: string, cwd = "/home/work") =>
  Result.match(VirtualPath.resolve(cwd as VirtualPath.VirtualPath, input), {
    onSuccess: (path): string => path,
    onFailure: (error): string => `!${error.problem}`
  })

describe("VirtualPath", () => {
  it("cleans every traversal form into a path under /", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["", "/home/work"],
      [".", "/home/work"],
      ["./a/./b/", "/home/work/a/b"],
      ["..", "/home"],
      ["../../..", "/"],
      ["/../..", "/"],
      ["a/../../../../etc/passwd", "/etc/passwd"],
      ["/etc/passwd", "/etc/passwd"],
      ["//a//b//", "/a/b"],
      ["/", "/"],
      ["a\\..\\b", "/home/work/a\\..\\b"],
      ["...", "/home/work/..."],
      ["a/..b", "/home/work/a/..b"]
    ]
    for (const [input, expected] of cases) assert.strictEqual(resolve(input), expected, JSON.stringify(input))
  })

  it("refuses NUL, control characters, invalid Unicode and over-long paths", () => {
    assert.strictEqual(resolve("a\u0000b"), "!Nul")
    assert.strictEqual(resolve("a\r\nDELE x"), "!ControlCharacter")
    assert.strictEqual(resolve("tab\there"), "!ControlCharacter")
    assert.strictEqual(resolve("del\u007f"), "!ControlCharacter")
    assert.strictEqual(resolve("bad\ud800"), "!InvalidUnicode")
    assert.strictEqual(resolve(`/${"a".repeat(VirtualPath.maxPathBytes)}`), "!TooLong")
    assert.strictEqual(resolve(`/${"a".repeat(64 * 1024)}`), "!TooLong")
    assert.strictEqual(resolve(`/${"a/".repeat(2000)}`), `/${"a/".repeat(1999)}a`)
  })

  it("splits and joins", () => {
    const p = "/a/b/c" as VirtualPath.VirtualPath
    assert.strictEqual(VirtualPath.parent(p), "/a/b")
    assert.strictEqual(VirtualPath.parent("/a" as VirtualPath.VirtualPath), "/")
    assert.strictEqual(VirtualPath.parent(VirtualPath.root), "/")
    assert.strictEqual(VirtualPath.basename(p), "c")
    assert.strictEqual(VirtualPath.basename(VirtualPath.root), "")
    assert.strictEqual(VirtualPath.toRelative(p), "a/b/c")
    assert.strictEqual(VirtualPath.toRelative(VirtualPath.root), "")
    assert.strictEqual(VirtualPath.child(VirtualPath.root, "x"), "/x")
    assert.strictEqual(VirtualPath.child(p, "x"), "/a/b/c/x")
  })

  it("isWithin compares whole components, not string prefixes", () => {
    const alice = "/home/alice" as VirtualPath.VirtualPath
    assert.isTrue(VirtualPath.isWithin("/home/alice/x" as VirtualPath.VirtualPath, alice))
    assert.isTrue(VirtualPath.isWithin(alice, alice))
    assert.isFalse(VirtualPath.isWithin("/home/alicebob" as VirtualPath.VirtualPath, alice))
    assert.isFalse(VirtualPath.isWithin("/home/al" as VirtualPath.VirtualPath, alice))
    assert.isTrue(VirtualPath.isWithin(alice, VirtualPath.root))
  })
})
