/**
 * The JSON lines a child process prints (the `portcullis` command's log), kept
 * as records, and a way to wait for the first one matching a predicate: an
 * event, never a timer.
 */
import { Effect } from "effect"
import type { Readable } from "node:stream"

/** A record of one printed line. */
export type LogRecord = Record<string, unknown>

/**
 * What `watch` collects from a stream.
 * @category testing
 */
export interface JsonLines {
  /** Every line printed so far. */
  readonly records: () => ReadonlyArray<LogRecord>
  /** The first line (already printed or still to come) matching `predicate`. */
  line(predicate: (record: LogRecord) => boolean): Effect.Effect<LogRecord>
}

/**
 * Collects the JSON lines of `stream` from now on.
 * @category testing
 */
export const watch = (stream: Readable): JsonLines => {
  const records: Array<LogRecord> = []
  const waiters = new Set<() => void>()
  let pending = ""
  stream.on("data", (chunk: Buffer) => {
    pending += chunk.toString()
    const lines = pending.split("\n")
    pending = lines.pop()!
    for (const line of lines) if (line !== "") records.push(JSON.parse(line) as LogRecord)
    waiters.forEach((wake) => wake())
  })
  const line = (predicate: (record: LogRecord) => boolean) =>
    Effect.callback<LogRecord>((resume) => {
      const check = () => {
        const found = records.find(predicate)
        if (!found) return
        waiters.delete(check)
        resume(Effect.succeed(found))
      }
      waiters.add(check)
      check()
      return Effect.sync(() => void waiters.delete(check))
    })
  return { records: () => records, line }
}
