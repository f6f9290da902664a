/**
 * Scoped temporary directories for tests: created under the OS temp dir and
 * removed with everything in them when the test's scope closes.
 */
import { Effect } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** A fresh directory, removed when the scope closes. */
export const tempDir = (prefix = "portcullis-") =>
  Effect.acquireRelease(
    Effect.sync(() => fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)))),
    (dir) => Effect.sync(() => fs.rmSync(dir, { recursive: true, force: true }))
  )
