/**
 * The real `portcullis` command (./bin/portcullis over the compiled dist/), for
 * the tests that signal or kill the server process: `serve` started in the
 * background with its JSON lines collected, and `user …` run to completion.
 * Nothing waits on a timer: lines, exits and replies are events.
 */
import { Deferred, Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import * as JsonLines from "./JsonLines.js"
import { run } from "./Processes.js"

const bin = path.resolve(import.meta.dirname, "../../bin/portcullis")

/** A running `portcullis serve`. */
export interface RunningServe {
  readonly child: ChildProcess
  /** Every JSON line printed so far. */
  readonly records: () => ReadonlyArray<Record<string, unknown>>
  /** The first line (already printed or still to come) matching `predicate`. */
  line(predicate: (record: Record<string, unknown>) => boolean): Effect.Effect<Record<string, unknown>>
  /** The port of a `listening` line. */
  port(protocol: "sftp" | "ftp"): Effect.Effect<number>
  /** Completes when the process has exited and its stdout is read to the end. */
  readonly exit: Effect.Effect<{ readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly stderr: string }>
}

/** Writes `config` as JSON into `dir`; the file's path. */
export const writeConfig = (dir: string, config: unknown, name = "config.json") => {
  const file = path.join(dir, name)
  fs.writeFileSync(file, JSON.stringify(config))
  return file
}

/** Starts `portcullis serve --config FILE`; it is killed when the scope closes if still running. */
export const serve = (configFile: string, cwd: string) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const child = spawn(bin, ["serve", "--config", configFile], { cwd, stdio: ["ignore", "pipe", "pipe"] })
      const { line, records } = JsonLines.watch(child.stdout!)
      let stderr = ""
      child.stderr!.on("data", (chunk: Buffer) => void (stderr += chunk.toString()))
      const exited = yield* Deferred.make<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>()
      // 'close' comes after the last 'data' of stdout and stderr.
      child.on("close", (code, signal) => Deferred.doneUnsafe(exited, Effect.succeed({ code, signal, stderr })))
      const port = (protocol: "sftp" | "ftp") =>
        line((r) => r["event"] === "listening" && r["protocol"] === protocol).pipe(
          Effect.map((r) => Number(String(r["address"]).split(":").pop()))
        )
      return { child, records, line, port, exit: Deferred.await(exited) } satisfies RunningServe
    }),
    ({ child }) => Effect.sync(() => void (child.exitCode === null && child.signalCode === null && child.kill("SIGKILL")))
  )

/** `portcullis user ARGS --db FILE`, to completion; `input` goes to stdin (for --password-stdin). */
export const user = (db: string, args: ReadonlyArray<string>, input = "") =>
  run(bin, ["user", ...args, "--db", db], { input, timeoutMs: 120_000 }).pipe(Effect.orDie)
