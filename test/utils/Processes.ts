/**
 * External programs for integration tests (OpenSSH's sftp and scp, python3 with
 * paramiko, ssh-keygen): run one to completion as an Effect and collect its
 * output and exit status.
 *
 * Every child runs in its own process group, so the whole tree (sshpass → sftp
 * → ssh) is killed together: on a real-time timeout, and when the fiber waiting
 * for it is interrupted (the test's scope closing). The timeout uses a Node
 * timer, not the Effect clock, so it also works under `it.effect`'s TestClock.
 */
import { Data, Effect } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

export interface RunOptions {
  /** Written to stdin, which is then closed. Default: stdin is empty. */
  readonly input?: string | Buffer
  /** Variables added to (or, when undefined, removed from) the inherited environment. */
  readonly env?: Readonly<Record<string, string | undefined>>
  readonly cwd?: string
  /** Real-time limit in milliseconds; the process group is killed after it. Default 60 s. */
  readonly timeoutMs?: number
}

export interface RunResult {
  /** The exit code, or null when a signal ended the process. */
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly timedOut: boolean
  readonly stdout: string
  readonly stderr: string
}

/** The program could not be started at all (not installed, not executable). */
export class SpawnError extends Data.TaggedError("SpawnError")<{ readonly command: string; readonly message: string }> {}

const environment = (extra: RunOptions["env"]): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const [key, value] of Object.entries(extra ?? {})) {
    if (value === undefined) delete env[key]
    else env[key] = value
  }
  return env
}

const killGroup = (pid: number | undefined) => {
  if (pid === undefined) return
  try {
    process.kill(-pid, "SIGKILL")
  } catch {
    // Already gone.
  }
}

/** Runs `command` with `args` to completion. A non-zero exit is a result, not a failure. */
export const run = (command: string, args: ReadonlyArray<string>, options: RunOptions = {}) =>
  Effect.callback<RunResult, SpawnError>((resume) => {
    const child = spawn(command, [...args], {
      cwd: options.cwd,
      env: environment(options.env),
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
      // Node's own deadline: it sends SIGKILL to the child, and the 'exit' handler
      // below then kills the rest of its process group (sshpass's ssh, say).
      timeout: options.timeoutMs ?? 60_000,
      killSignal: "SIGKILL"
    })
    const stdout: Array<Buffer> = []
    const stderr: Array<Buffer> = []
    let settled = false
    // Only Node's deadline calls child.kill(): killGroup signals the group directly.
    const timedOut = () => child.killed
    child.on("exit", () => {
      if (timedOut()) killGroup(child.pid)
    })
    child.stdout.on("data", (chunk: Buffer) => void stdout.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => void stderr.push(chunk))
    // A child that exits before reading all of its input makes stdin fail with EPIPE.
    child.stdin.on("error", () => {})
    child.on("error", (error) => {
      if (settled) return
      settled = true
      resume(Effect.fail(new SpawnError({ command, message: error.message })))
    })
    child.on("close", (code, signal) => {
      if (settled) return
      settled = true
      resume(Effect.succeed({
        code,
        signal,
        timedOut: timedOut(),
        stdout: Buffer.concat(stdout).toString("utf8"),
        stderr: Buffer.concat(stderr).toString("utf8")
      }))
    })
    child.stdin.end(options.input ?? "")
    return Effect.sync(() => killGroup(child.pid))
  })

/** A one-line summary of a result, for assertion messages. */
export const describeResult = (result: RunResult): string =>
  `exit ${result.code ?? result.signal}${result.timedOut ? " (timed out)" : ""}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`

/** Runs the command and dies unless it exits 0. */
export const runOk = (command: string, args: ReadonlyArray<string>, options: RunOptions = {}) =>
  run(command, args, options).pipe(
    Effect.orDie,
    Effect.flatMap((result) =>
      result.code === 0 ? Effect.succeed(result) : Effect.die(new Error(`${command} failed: ${describeResult(result)}`))
    )
  )

export interface SshKeyFiles {
  /** The private key file (mode 0600, OpenSSH format, no passphrase). */
  readonly privateKey: string
  /** The public key line, as it appears in an authorized_keys file. */
  readonly publicKey: string
}

/** A fresh key pair from ssh-keygen in `dir` (for example ed25519). */
export const sshKeygen = (dir: string, type = "ed25519", name = `id_${type}`) =>
  Effect.gen(function*() {
    const file = path.join(dir, name)
    yield* runOk("ssh-keygen", ["-q", "-t", type, "-N", "", "-C", `portcullis-test-${type}`, "-f", file])
    fs.chmodSync(file, 0o600)
    return { privateKey: file, publicKey: fs.readFileSync(`${file}.pub`, "utf8").trim() } satisfies SshKeyFiles
  })
