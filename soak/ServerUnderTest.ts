/**
 * The Portcullis server the soak measures, in this process through the
 * library's Effect API (the built package, imported by its own name), so that
 * this process's event-loop delay, memory and fds are the server's.
 *
 * Its log goes to a tally instead of the terminal: entries are counted by level
 * and message, and the first warnings and errors are kept with their causes, so
 * 2,000 "session timed out" lines become one row of the report and an error is
 * never lost in the noise.
 */
import { Cause, Deferred, Effect, Layer, Logger, ManagedRuntime, References, Stream } from "effect"
import { decodeConfig, Events, Server, Sessions } from "portcullis"

export interface LogEntry {
  readonly level: string
  readonly message: string
  readonly count: number
}

export interface LogSample {
  readonly level: string
  readonly message: string
  readonly annotations: Record<string, unknown>
  readonly cause: string | undefined
}

const keptSamples = 20
const serious = new Set(["Warn", "Error", "Fatal"])

class LogTally {
  readonly counts = new Map<string, LogEntry>()
  readonly samples: Array<LogSample> = []

  readonly logger = Logger.make((options) => {
    const level = options.logLevel
    const message = (Array.isArray(options.message) ? options.message : [options.message])
      .map((part) => (typeof part === "string" ? part : JSON.stringify(part)))
      .join(" ")
    const key = `${level}\u0000${message}`
    const entry = this.counts.get(key)
    this.counts.set(key, { level, message, count: (entry?.count ?? 0) + 1 })
    if (serious.has(level) && this.samples.length < keptSamples) {
      this.samples.push({
        level,
        message,
        annotations: { ...options.fiber.getRef(References.CurrentLogAnnotations) },
        cause: options.cause.reasons.length > 0 ? Cause.pretty(options.cause) : undefined
      })
    }
  })

  /** Entries at Error or Fatal level. */
  get errors(): number {
    let n = 0
    for (const entry of this.counts.values()) if (entry.level === "Error" || entry.level === "Fatal") n += entry.count
    return n
  }
}

export interface ServerUnderTest {
  readonly sftpPort: number
  readonly ftpPort: number
  readonly log: LogTally
  /** Live sessions (authenticated or not). */
  readonly sessions: () => Promise<number>
  /** UploadCompleted events published since the server started. */
  readonly uploadEvents: () => number
  readonly droppedEvents: () => Promise<{ readonly uploads: number; readonly auth: number }>
  /** Graceful shutdown, then the runtime is released. */
  readonly stop: () => Promise<{ readonly forced: number }>
}

export const startServer = async (input: unknown): Promise<ServerUnderTest> => {
  const log = new LogTally()
  const config = await Effect.runPromise(decodeConfig(input))
  const runtime = ManagedRuntime.make(Server.layer(config).pipe(Layer.provide(Logger.layer([log.logger]))))
  const addresses = await runtime.runPromise(Server.Server.use((server) => Effect.succeed(server.addresses)))
  if (!addresses.sftp || !addresses.ftp) {
    await runtime.dispose()
    throw new Error("the server did not bind both SFTP and FTP")
  }
  let uploads = 0
  // Subscribed before this returns, so no upload of the soak is missed; the stream
  // ends when the server's event hub does.
  await runtime.runPromise(Effect.gen(function*() {
    const subscribed = yield* Deferred.make<void>()
    yield* Effect.forkDetach(Effect.scoped(Effect.gen(function*() {
      const stream = yield* Events.use((events) => events.subscribeUploads)
      yield* Deferred.succeed(subscribed, undefined)
      yield* Stream.runForEach(stream, () => Effect.sync(() => void uploads++))
    })))
    yield* Deferred.await(subscribed)
  }))
  return {
    sftpPort: addresses.sftp.port,
    ftpPort: addresses.ftp.port,
    log,
    sessions: () => runtime.runPromise(Sessions.use((s) => Effect.map(s.list, (list) => list.length))),
    uploadEvents: () => uploads,
    droppedEvents: () => runtime.runPromise(Events.use((e) => e.dropped)),
    stop: async () => {
      try {
        return await runtime.runPromise(Server.Server.use((s) => s.shutdown("10 seconds")))
      } finally {
        await runtime.dispose()
      }
    }
  }
}
