/**
 * docs/config.md is exactly what the config Schema renders to, and the
 * rendering itself fails when a field is undescribed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { renderConfigReference } from "../../src/config/ConfigReference.js"

describe("docs/config.md", () => {
  it.effect("matches the Schema (regenerate with ./bin/portcullis config-reference > docs/config.md)", () =>
    Effect.gen(function*() {
      const rendered = yield* renderConfigReference
      const committed = fs.readFileSync(path.resolve(import.meta.dirname, "../../docs/config.md"), "utf8")
      assert.strictEqual(committed, rendered)
      for (const field of ["sftp.address", "ftp.requireSessionReuse", "users[].passwordHash", "users.sqlite", "PORTCULLIS_FTP_ADDRESS"]) {
        assert.include(rendered, field)
      }
    }))
})
