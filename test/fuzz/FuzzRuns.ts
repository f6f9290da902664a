/**
 * How much the property-based fuzzers run, in one place.
 *
 * `npm test` runs every property with a small number of cases, so the whole
 * test/fuzz directory stays within a few tens of seconds; `npm run fuzz` sets
 * PORTCULLIS_FUZZ_RUNS (20000 by default) and runs the same properties long.
 * Each property scales that number by its cost: pure decoders take it as is,
 * properties that talk to a real server over sockets take a fraction of it.
 *
 * Seeds: fast-check picks a fresh seed per run and prints it, with the path of
 * the shrunk counterexample, when a property fails. PORTCULLIS_FUZZ_SEED (and
 * PORTCULLIS_FUZZ_PATH) replay exactly that failure:
 * `PORTCULLIS_FUZZ_SEED=123 PORTCULLIS_FUZZ_PATH="4:1:0" npx vitest run test/fuzz/X.test.ts`.
 */
import type fc from "fast-check"

const positiveInt = (name: string): number | undefined => {
  const raw = process.env[name]
  if (raw === undefined || raw === "") return undefined
  const value = Number(raw)
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`)
  return value
}

const anyInt = (name: string): number | undefined => {
  const raw = process.env[name]
  if (raw === undefined || raw === "") return undefined
  const value = Number(raw)
  if (!Number.isSafeInteger(value)) throw new Error(`${name} must be an integer, got ${JSON.stringify(raw)}`)
  return value
}

/** PORTCULLIS_FUZZ_RUNS, or undefined for the short runs of `npm test`. */
const longRuns = positiveInt("PORTCULLIS_FUZZ_RUNS")

/** Whether this is a long fuzzing run (`npm run fuzz`). */
export const isLongRun = longRuns !== undefined

/**
 * Cases for one property: `short` under `npm test`; under `npm run fuzz`,
 * PORTCULLIS_FUZZ_RUNS divided by `costFactor` (1 for pure functions, larger for
 * properties whose cases open connections), and never fewer than `short`.
 */
export const fuzzRuns = (short: number, costFactor = 1): number =>
  longRuns === undefined ? short : Math.max(short, Math.ceil(longRuns / costFactor))

/**
 * fast-check parameters for one property: the number of runs and, when
 * PORTCULLIS_FUZZ_SEED is set, the seed (and PORTCULLIS_FUZZ_PATH) to replay.
 * `timeout` bounds one async case in milliseconds, so a hang fails with its
 * counterexample and seed instead of the whole test timing out silently.
 */
export const fuzzParameters = <T>(
  short: number,
  costFactor = 1,
  extra: Omit<fc.Parameters<T>, "numRuns" | "seed" | "path"> = {}
): fc.Parameters<T> => {
  const seed = anyInt("PORTCULLIS_FUZZ_SEED")
  const path = process.env["PORTCULLIS_FUZZ_PATH"]
  return {
    ...extra,
    numRuns: fuzzRuns(short, costFactor),
    ...(seed !== undefined ? { seed } : {}),
    ...(seed !== undefined && path ? { path } : {})
  }
}

/**
 * Test timeout for a property of `runs` cases that each may take up to
 * `perCaseMs` under load: a floor of 60 s (vitest's default here), more for long runs.
 */
export const fuzzTimeout = (runs: number, perCaseMs: number): number => Math.max(60_000, runs * perCaseMs)

/**
 * Prints one summary line of a property (cases, outcomes, memory) on stderr in
 * long runs, where the figures are the point; `npm test` stays quiet.
 */
export const fuzzReport = (line: string): void => {
  if (isLongRun) process.stderr.write(`[fuzz] ${line}\n`)
}
