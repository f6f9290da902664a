/**
 * Property-based fuzzing of path handling: VirtualPath.resolve against the
 * POSIX reference (path.posix.resolve) and its own contract, then random
 * operations (mkdir, write, rename, remove, rmdir, setstat, link, list) with
 * random paths through the real Jail layer (JailNative, openat2) on a temp
 * root. Beside the root sit canaries (`alice2`, the root's name plus a
 * character, and `outside`), and inside it symlinks that lead to them; their
 * full digest (names, modes, sizes, times, contents) must not change. Paths
 * go in both cleaned (VirtualPath.resolve) and raw (the kernel alone must
 * contain them); every failure must be a typed JailError, never a throw.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import fc from "fast-check"
import * as fs from "node:fs"
import * as path from "node:path"
import * as JailNative from "../../src/layers/JailNative.js"
import { JailError, type JailHandle, jailErrorReasonTags } from "../../src/services/Jail.js"
import * as VirtualPath from "../../src/services/VirtualPath.js"
import { tempDir } from "../utils/TempDir.js"
import { outsideDigest, plantCanaries } from "./Canary.js"
import { fuzzParameters, fuzzTimeout } from "./FuzzRuns.js"
import { resetRoot } from "./FuzzServer.js"
import { openFds, watchProcess } from "./ProcessHealth.js"
import { pathArbitrary } from "./SftpModel.js"

const controls = /[\u0000-\u001f\u007f]/

describe("VirtualPath (property-based)", () => {
  const cwdArbitrary = pathArbitrary([], { long: false }).map((p) => VirtualPath.resolve(VirtualPath.root, p)).filter((r) => r._tag === "Success").map((r) =>
    r._tag === "Success" ? r.success : VirtualPath.root
  )

  it("resolves like path.posix.resolve under a chroot, or refuses exactly NUL, controls, broken Unicode and over-long results", () => {
    fc.assert(
      fc.property(cwdArbitrary, pathArbitrary(), (cwd, input) => {
        let result: ReturnType<typeof VirtualPath.resolve>
        try {
          result = VirtualPath.resolve(cwd, input)
        } catch (error) {
          return assert.fail(`resolve threw ${String(error)}`)
        }
        const reference = path.posix.resolve(cwd, input)
        if (result._tag === "Failure") {
          const { problem } = result.failure
          const expected = input.includes("\u0000")
            ? "Nul"
            : controls.test(input)
            ? "ControlCharacter"
            : !input.isWellFormed()
            ? "InvalidUnicode"
            : "TooLong"
          assert.strictEqual(problem, expected)
          if (problem === "TooLong") assert.isAbove(Buffer.byteLength(reference), VirtualPath.maxPathBytes)
          return
        }
        const clean = result.success
        // ".." stops at "/", exactly as path.posix.resolve does at the file system root.
        assert.strictEqual(clean, reference)
        assert.isTrue(clean === "/" || (clean.startsWith("/") && !clean.endsWith("/")))
        for (const part of clean.split("/").slice(1)) assert.isTrue(clean === "/" || (part !== "" && part !== "." && part !== ".."), clean)
        assert.notMatch(clean, controls)
        assert.isAtMost(Buffer.byteLength(clean), VirtualPath.maxPathBytes)
        assert.isTrue(VirtualPath.isWithin(clean, VirtualPath.root))
        // Cleaning is idempotent, relative to any directory.
        assert.deepStrictEqual(VirtualPath.resolve(cwd, clean), result)
        assert.deepStrictEqual(VirtualPath.resolve(VirtualPath.root, clean), result)
        // parent and basename take the path apart again.
        if (clean !== "/") assert.strictEqual(VirtualPath.child(VirtualPath.parent(clean), VirtualPath.basename(clean)), clean)
      }),
      fuzzParameters(3000)
    )
  })

  it("isWithin compares whole components: a name that extends another is not inside it", () => {
    fc.assert(
      fc.property(cwdArbitrary, fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 4 }).filter((s) => !s.includes("/")), (dir, suffix) => {
        const sibling = VirtualPath.resolve(VirtualPath.root, `${dir}${suffix}`)
        if (sibling._tag === "Failure" || dir === "/") return
        assert.strictEqual(VirtualPath.isWithin(sibling.success, dir), sibling.success === dir)
        const inside = VirtualPath.resolve(dir, suffix === "." || suffix === ".." ? "x" : suffix)
        if (inside._tag === "Success") assert.isTrue(VirtualPath.isWithin(inside.success, dir))
      }),
      fuzzParameters(2000)
    )
  })
})

// --- the real jail ---------------------------------------------------------------------------

/** A jail path: cleaned by VirtualPath (what the protocols pass), or raw (only the kernel contains it). */
type JailPath = { readonly raw: boolean; readonly input: string }

type Op =
  | { readonly _tag: "mkdir" | "rmdir" | "remove" | "stat" | "lstat" | "list" | "statvfs"; readonly path: JailPath }
  | { readonly _tag: "write"; readonly path: JailPath; readonly data: Uint8Array; readonly truncate: boolean; readonly exclusive: boolean }
  | { readonly _tag: "read"; readonly path: JailPath }
  | { readonly _tag: "rename"; readonly from: JailPath; readonly to: JailPath; readonly overwrite: boolean }
  | { readonly _tag: "link"; readonly from: JailPath; readonly to: JailPath }
  | {
    readonly _tag: "setstat"
    readonly path: JailPath
    readonly mode: number | null
    readonly size: number | null
    readonly times: readonly [number, number] | null
    readonly owner: readonly [number, number] | null
  }

const toVirtual = (p: JailPath): VirtualPath.VirtualPath | undefined => {
  if (p.raw) return `/${p.input}` as VirtualPath.VirtualPath
  const resolved = VirtualPath.resolve(VirtualPath.root, p.input)
  return resolved._tag === "Success" ? resolved.success : undefined
}

const run = (jail: JailHandle, op: Op): Effect.Effect<unknown, JailError> | undefined => {
  const one = "path" in op ? toVirtual(op.path) : undefined
  switch (op._tag) {
    case "mkdir":
    case "rmdir":
    case "remove":
    case "stat":
    case "lstat":
    case "statvfs":
      return one && jail[op._tag](one)
    case "list":
      return one && jail.openDirectory(one).pipe(Effect.flatMap((dir) => dir.read(64).pipe(Effect.ensuring(dir.close))))
    case "read":
      return one && jail.openFile(one, { read: true, write: false }).pipe(
        Effect.flatMap((file) => file.read(0, 4096).pipe(Effect.ensuring(Effect.ignore(file.close))))
      )
    case "write":
      return one && jail.openFile(one, { read: false, write: true, create: true, truncate: op.truncate, exclusive: op.exclusive }).pipe(
        Effect.flatMap((file) => file.write(0, op.data).pipe(Effect.andThen(file.close), Effect.ensuring(Effect.ignore(file.close))))
      )
    case "setstat":
      return one && jail.setAttributes(one, {
        ...(op.mode !== null ? { mode: op.mode } : {}),
        ...(op.size !== null ? { size: op.size } : {}),
        ...(op.times !== null ? { atimeMs: op.times[0], mtimeMs: op.times[1] } : {}),
        ...(op.owner !== null ? { uid: op.owner[0], gid: op.owner[1] } : {})
      })
    case "rename":
    case "link": {
      const from = toVirtual(op.from)
      const to = toVirtual(op.to)
      if (!from || !to) return undefined
      return op._tag === "rename" ? jail.rename(from, to, { overwrite: op.overwrite }) : jail.link(from, to)
    }
  }
}

const reasonTags = new Set<string>(jailErrorReasonTags)

describe("Jail on the native addon (property-based)", () => {
  const runs = fuzzParameters<[ReadonlyArray<Op>]>(150, 4)

  it.effect(`random operations on random paths never touch anything outside the root (${runs.numRuns} cases)`, () =>
    Effect.gen(function*() {
      const watch = yield* watchProcess
      const base = yield* tempDir("portcullis-fuzz-jail-")
      const root = path.join(base, "home", "alice")
      fs.mkdirSync(root, { recursive: true })
      resetRoot(root)
      plantCanaries(root)
      const outside = () => outsideDigest(base, [root])
      const before = outside()
      const service = yield* JailNative.make()
      const jail = yield* service.open(root)

      const hostPieces = [root, base, `${root}2`, path.join(base, "home", "outside")].map((p) => p.slice(1))
      const jailPath: fc.Arbitrary<JailPath> = fc.record({
        raw: fc.boolean(),
        input: pathArbitrary(hostPieces)
      })
      const op: fc.Arbitrary<Op> = fc.oneof(
        fc.record({ _tag: fc.constantFrom("mkdir", "rmdir", "remove", "stat", "lstat", "list", "statvfs"), path: jailPath }),
        fc.record({ _tag: fc.constant("read" as const), path: jailPath }),
        fc.record({ _tag: fc.constant("write" as const), path: jailPath, data: fc.uint8Array({ maxLength: 32 }), truncate: fc.boolean(), exclusive: fc.boolean() }),
        fc.record({ _tag: fc.constant("rename" as const), from: jailPath, to: jailPath, overwrite: fc.boolean() }),
        fc.record({ _tag: fc.constant("link" as const), from: jailPath, to: jailPath }),
        fc.record({
          _tag: fc.constant("setstat" as const),
          path: jailPath,
          mode: fc.option(fc.nat({ max: 0o7777 })),
          size: fc.option(fc.nat({ max: 1 << 20 })),
          times: fc.option(fc.tuple(fc.nat({ max: 2 ** 31 }), fc.nat({ max: 2 ** 31 })).map(([a, m]) => [a * 1000, m * 1000] as const)),
          owner: fc.option(fc.tuple(fc.constantFrom(0, 1000, 65534), fc.constantFrom(0, 100, 65534)))
        })
      )

      const outcomes = { ok: 0, refused: 0 }
      const fdsBefore = openFds()
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 10 }), (ops) =>
            Effect.runPromise(Effect.gen(function*() {
              resetRoot(root)
              for (const o of ops) {
                const effect = run(jail, o)
                if (effect === undefined) continue
                const exit = yield* Effect.exit(effect)
                if (Exit.isSuccess(exit)) {
                  outcomes.ok++
                  continue
                }
                // Only typed failures: no defect, no throw from the addon; the error names the
                // virtual path the caller gave, never a host path.
                const error = Cause.squash(exit.cause)
                if (!(error instanceof JailError)) return assert.fail(`${o._tag} died: ${String(error)}`)
                assert.isTrue(reasonTags.has(error.reason._tag), error.reason._tag)
                const given = ("path" in o ? [o.path] : [o.from, o.to]).map(toVirtual)
                assert.include(given, error.path)
                outcomes.refused++
              }
              // The host path of any cleaned path stays under the root, by whole components.
              for (const o of ops) {
                const p = "path" in o ? o.path : o.from
                const clean = p.raw ? undefined : toVirtual(p)
                if (clean) {
                  const host = jail.hostPath(clean)
                  assert.isTrue(host === root || host.startsWith(`${root}/`), host)
                }
              }
              assert.strictEqual(outside(), before, `something outside the root changed after ${JSON.stringify(ops).slice(0, 400)}`)
            }))
          ),
          runs
        )
      )
      // Every file and directory the operations opened was closed again.
      assert.strictEqual(openFds(), fdsBefore)
      assert.isAbove(outcomes.ok, 0)
      assert.isAbove(outcomes.refused, 0)
      assert.deepStrictEqual(watch.errors(), [])
    }), fuzzTimeout(runs.numRuns ?? 0, 100))
})
