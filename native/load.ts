/**
 * Loads the `jail` native addon (native/src/jail.cc) and types it as `JailBinding`.
 *
 * node-gyp puts the addon in `build/Release` or, for a debug build, in `build/Debug`
 * next to binding.gyp. This module runs either from source (`native/load.ts`, under
 * vitest) or compiled (`dist/native/load.js`), so each build directory is looked up
 * relative to this file and relative to `../../native/`. When nothing loads, the one
 * error lists every path with the reason it failed: a missing build and an ABI
 * mismatch need different fixes. Alongside `src/layers/JailNative.ts`, this is the
 * only module that handles exceptions: `JailNative` turns this one into
 * `JailUnavailable`.
 */
import { createRequire } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { JailBinding } from "./jail.js"

const here = path.dirname(fileURLToPath(import.meta.url))

/** The candidate files, in the order they are tried. */
const candidates: ReadonlyArray<string> = [here, path.join(here, "..", "..", "native")].flatMap((base) => [
  path.join(base, "build", "Release", "jail.node"),
  path.join(base, "build", "Debug", "jail.node")
])

let loaded: JailBinding | undefined

/** The first line of a load failure (require appends its whole require stack). */
const firstLine = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause)).split("\n")[0] ?? ""

/**
 * Returns the addon, loading it on the first call (later calls return the same object).
 * Tries `build/Release/jail.node`, then `build/Debug/jail.node`, next to this file and
 * then under `../../native/`.
 *
 * @throws Error listing every path tried and why each failed, when none loads.
 * @category layers
 */
export const loadJailBinding = (): JailBinding => {
  if (loaded !== undefined) return loaded
  const require = createRequire(import.meta.url)
  const failures: Array<string> = []
  for (const candidate of candidates) {
    try {
      loaded = require(candidate) as JailBinding
      return loaded
    } catch (cause) {
      failures.push(`  ${candidate}: ${firstLine(cause)}`)
    }
  }
  throw new Error(`cannot load the jail addon; tried:\n${failures.join("\n")}`)
}
