/**
 * What the fuzzers check about the process around the server under test: no
 * uncaught exception or unhandled rejection while a property runs, and memory
 * and file descriptors that do not grow without bound across thousands of
 * hostile cases.
 *
 * The server runs in the test's own process, so a crash would be an uncaught
 * exception here; vitest reports those only at the end of the run, detached
 * from the property. `watchProcess` records them while the property runs so the
 * test itself fails. Memory is measured after a full garbage collection (V8's
 * `gc`, exposed at run time), as heap used plus external memory (Buffers), so
 * a leak of either shows; the bound given by each test is deliberately generous.
 *
 * Logs: @effect/vitest's TestConsole keeps every line it is given, so a server
 * that logs one line per closed channel would look like a leak over a long run.
 * `errorLog` replaces the loggers with one that keeps only Error and Fatal
 * entries (a defect in a handler is logged at Error), a bounded number of them,
 * for the test to assert there were none.
 */
import { Cause, Effect, Layer, Logger, LogLevel } from "effect"
import * as fs from "node:fs"
import * as v8 from "node:v8"
import * as vm from "node:vm"

/** Errors that reached the process while the watch was on. */
export interface ProcessWatch {
  readonly errors: () => ReadonlyArray<string>
}

/**
 * Records 'uncaughtException' and 'unhandledRejection' until the scope closes.
 * @category testing
 */
export const watchProcess = Effect.acquireRelease(
  Effect.sync(() => {
    const errors: Array<string> = []
    const onError = (kind: string) => (error: unknown) => {
      errors.push(`${kind}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`)
    }
    const onException = onError("uncaughtException")
    const onRejection = onError("unhandledRejection")
    process.on("uncaughtException", onException)
    process.on("unhandledRejection", onRejection)
    return { errors: () => errors.slice(), onException, onRejection }
  }),
  ({ onException, onRejection }) =>
    Effect.sync(() => {
      process.off("uncaughtException", onException)
      process.off("unhandledRejection", onRejection)
    })
).pipe(Effect.map(({ errors }): ProcessWatch => ({ errors })))

// V8 only exposes `gc` when the flag is set before a context is created: set it,
// then take `gc` from a fresh context.
const collectGarbage = (() => {
  v8.setFlagsFromString("--expose-gc")
  const gc: unknown = vm.runInNewContext("gc")
  return typeof gc === "function" ? (gc as () => void) : undefined
})()

/**
 * Heap used plus external memory (Buffers), in bytes, after a full garbage
 * collection when one can be forced. Async work still settling (sockets closing)
 * gets a few turns of the event loop first.
 * @category testing
 */
export const memoryInUse: Effect.Effect<number> = Effect.promise(async () => {
  for (let i = 0; i < 3; i++) {
    await new Promise<void>((resolve) => setImmediate(resolve))
    collectGarbage?.()
  }
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.external
})

/** Mebibytes, for messages. */
export const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`

/** The Error and Fatal log entries of a run (the first 20 in full), and how many there were. */
export interface ErrorLog {
  readonly layer: Layer.Layer<never>
  readonly entries: () => ReadonlyArray<string>
  readonly count: () => number
}

/**
 * A logger layer that drops everything below Error and keeps the first errors.
 * @category testing
 */
export const errorLog = (): ErrorLog => {
  const entries: Array<string> = []
  let count = 0
  const logger = Logger.make((options) => {
    if (!LogLevel.isGreaterThanOrEqualTo(options.logLevel, "Error")) return
    count++
    if (entries.length < 20) entries.push(`${options.logLevel}: ${String(options.message)} ${Cause.pretty(options.cause)}`)
  })
  return { layer: Logger.layer([logger]), entries: () => entries.slice(), count: () => count }
}

/**
 * File descriptors open in this process (sockets and files of the server and
 * of the test's clients), from /proc: a server that leaks an fd per aborted
 * session shows as a count that grows with the number of cases.
 * @category testing
 */
export const openFds = (): number => fs.readdirSync("/proc/self/fd").length

