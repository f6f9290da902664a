import { defineConfig } from "vitest/config"

// CI sets PORTCULLIS_VITEST_JSON to also get a machine-readable report (.ci/run
// reads the pass/fail counts from it); locally only the default reporter runs.
const jsonReport = process.env["PORTCULLIS_VITEST_JSON"]

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    ...(jsonReport ? { reporters: ["default", "json"], outputFile: { json: jsonReport } } : {})
  }
})
