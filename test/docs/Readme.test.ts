/**
 * The README's TypeScript quick starts are the example files, verbatim: the
 * type check of `npm test` covers the examples, and this test keeps the README
 * from drifting away from them.
 */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"

const root = path.resolve(import.meta.dirname, "../..")
const readme = fs.readFileSync(path.join(root, "README.md"), "utf8")
const blocks = Array.from(readme.matchAll(/```ts\n([\s\S]*?)```/g), (m) => m[1])

describe("README", () => {
  for (const example of ["examples/effect-quickstart.ts", "examples/promise-quickstart.ts"]) {
    it(`shows ${example} exactly`, () => {
      assert.include(blocks, fs.readFileSync(path.join(root, example), "utf8"))
    })
  }

  it("documents the commands it tells a newcomer to run", () => {
    const scripts = (JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts
    assert.include(readme, "npm install\nnpm start")
    assert.include(readme, "npm test")
    assert.strictEqual(scripts["start"], "./bin/portcullis serve")
    assert.include(fs.readFileSync(path.join(root, ".ci/run"), "utf8"), "npm test")
  })
})
