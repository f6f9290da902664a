/**
 * The command's output: one JSON object per line on stdout, for log shippers.
 *
 * `listening` lines and one line per published event follow design.md's contract
 * (`{"event":"upload_completed",…}`); every other log line is
 * `{"level":…,"message":…,…annotations}`.
 */
import { Cause, Effect, Logger, References, Stream } from "effect"
import type { Address } from "../config/Address.js"
import { formatAddress } from "../config/Address.js"
import { type AuthEvent, Events, type UploadCompleted } from "../services/Events.js"

/** Writes one JSON line to stdout. */
export const printLine = (record: Record<string, unknown>) => Effect.sync(() => void process.stdout.write(`${JSON.stringify(record)}\n`))

/** `{"event":"listening","protocol":"sftp","address":"127.0.0.1:40123"}` */
export const listening = (protocol: string, address: Address) =>
  printLine({ event: "listening", protocol, address: formatAddress(address) })

const authEventNames = { LoginSucceeded: "login_success", LoginFailed: "login_failed", Logout: "logout" } as const

const uploadLine = (e: UploadCompleted) => ({
  event: "upload_completed",
  protocol: e.protocol,
  username: e.username,
  path: e.path,
  fullPath: e.fullPath,
  clientIp: e.clientIp,
  size: e.size
})

const authLine = (e: AuthEvent) => ({ event: authEventNames[e._tag], protocol: e.protocol, username: e.username, clientIp: e.clientIp })

/** Prints every event until the server stops (runs in the caller's scope). */
export const printEvents = Effect.gen(function*() {
  const events = yield* Events
  const uploads = yield* events.subscribeUploads
  const auth = yield* events.subscribeAuth
  yield* Effect.forkScoped(Stream.runForEach(uploads, (e) => printLine(uploadLine(e))))
  yield* Effect.forkScoped(Stream.runForEach(auth, (e) => printLine(authLine(e))))
})

const messageOf = (message: unknown): string =>
  Array.isArray(message) ? message.map((m) => (typeof m === "string" ? m : JSON.stringify(m))).join(" ") : String(message)

/** The logger of the command: JSON lines on stdout, annotations as fields, the cause (if any) pretty-printed. */
export const logger = Logger.make((options) => {
  const record: Record<string, unknown> = {
    level: options.logLevel.toLowerCase(),
    message: messageOf(options.message),
    ...options.fiber.getRef(References.CurrentLogAnnotations)
  }
  if (options.cause.reasons.length > 0) record["cause"] = Cause.pretty(options.cause)
  process.stdout.write(`${JSON.stringify(record)}\n`)
})
