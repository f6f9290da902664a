/**
 * The architecture's one rule, checked on the sources: protocols and service
 * contracts never touch the file system or the native addon directly. Files
 * are reached only through the Jail service, whose only implementation lives in
 * src/layers (style.md: "layers are the only place that touches the OS").
 */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"

const src = path.resolve(import.meta.dirname, "../../src")

const sources = (dir: string): ReadonlyArray<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sources(path.join(dir, entry.name)) : entry.name.endsWith(".ts") ? [path.join(dir, entry.name)] : []
  )

const importsOf = (file: string): ReadonlyArray<string> =>
  Array.from(fs.readFileSync(file, "utf8").matchAll(/^\s*(?:import|export)[^"']*["']([^"']+)["']/gm), (m) => m[1]!)

const forbidden = (specifier: string) =>
  /^(node:)?(fs|fs\/promises|path)$/.test(specifier) || specifier.includes("/native/") || specifier.includes("/layers/")

describe("module boundaries", () => {
  for (const folder of ["services", "protocols"]) {
    it(`src/${folder} imports no file system, path, native or layer module`, () => {
      const files = sources(path.join(src, folder))
      assert.isAbove(files.length, 5)
      const offenders = files.flatMap((file) =>
        importsOf(file).filter(forbidden).map((specifier) => `${path.relative(src, file)} imports ${specifier}`)
      )
      assert.deepStrictEqual(offenders, [])
    })
  }

  it("only src/layers imports the native addon", () => {
    const offenders = sources(src)
      .filter((file) => !file.startsWith(path.join(src, "layers")))
      .flatMap((file) => importsOf(file).filter((s) => s.includes("native/")).map((s) => `${path.relative(src, file)} imports ${s}`))
    assert.deepStrictEqual(offenders, [])
  })
})
