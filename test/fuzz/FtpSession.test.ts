/**
 * Property-based fuzzing of a real FTP control connection (ControlChannel.ts,
 * Session.ts, LineReader.ts, Command.ts, Replies.ts) over raw sockets: each
 * case connects, maybe logs in, and sends a random byte stream (commands with
 * traversal paths, quotes and controls, IAC sequences, NUL, CR without LF,
 * over-long lines, raw bytes) in random chunks, then QUIT.
 *
 * The server must close the connection (QUIT, an over-long line, too many
 * failed logins, bytes after AUTH TLS), and everything it sent must be
 * well-formed replies: CRLF-terminated lines, each a 3-digit code with " " or
 * "-", multi-line replies whose middle lines start with a space, no CR, LF or
 * NUL anywhere else (no reply injection from an echoed name). After every case
 * another logged-in session still answers, nothing outside the user's root
 * changed; across the run no uncaught exception, unhandled rejection or logged
 * error occurred and memory stayed bounded.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect } from "effect"
import fc from "fast-check"
import { Sessions } from "../../src/services/Sessions.js"
import { connect, type FtpRawClient } from "../utils/FtpRawClient.js"
import { replyTranscriptProblem, streamPieceArbitrary } from "./FtpModel.js"
import { fuzzParameters, fuzzReport, fuzzTimeout } from "./FuzzRuns.js"
import { fuzzServer, password, resetRoot } from "./FuzzServer.js"
import { errorLog, memoryInUse, mib, openFds, watchProcess } from "./ProcessHealth.js"
import { split } from "./SftpModel.js"

interface Case {
  readonly login: boolean
  readonly stream: Buffer
  readonly cuts: ReadonlyArray<number>
  /** The client ends with QUIT, or drops the connection right after the stream. */
  readonly drop: boolean
}

describe("FTP control connection (property-based, real server)", () => {
  const runs = fuzzParameters<[Case]>(120, 4, { timeout: 30_000 })
  const log = errorLog()

  it.effect(`every reply is well-formed; the connection closes; other sessions unaffected; nothing outside the root changes (${runs.numRuns} cases)`, () =>
    Effect.gen(function*() {
      const watch = yield* watchProcess
      const server = yield* fuzzServer
      const outside = server.outside()
      const extra = [server.root, server.base, `${server.root}2`].map((p) => p.slice(1))
      const fuzzCase: fc.Arbitrary<Case> = fc.record({
        login: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
        stream: fc.array(streamPieceArbitrary(4096, extra), { minLength: 1, maxLength: 16 }).map((pieces) => Buffer.concat(pieces)),
        cuts: fc.array(fc.nat(), { maxLength: 8 }),
        drop: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) })
      })
      const outcomes = { quit: 0, closedEarly: 0, dropped: 0 }

      /** One case; `other` is a logged-in session open while the cases run. */
      const runCase = (other: FtpRawClient, c: Case) =>
        Effect.scoped(Effect.gen(function*() {
          resetRoot(server.root)
          const client = yield* connect(server.ftpPort)
          if (c.login) yield* client.login("alice", password)
          for (const chunk of split(c.stream, c.cuts)) yield* client.write(chunk)
          if (c.drop) {
            // Gone with commands (and maybe a transfer) in progress: the server must clean up alone.
            client.raw.destroy()
          } else {
            // CRLF ends whatever line (or Telnet sequence) the stream left open; QUIT then ends the session.
            yield* client.write("\r\nQUIT\r\n")
          }
          yield* client.closed
          const transcript = client.transcript()
          const problem = replyTranscriptProblem(transcript, { cut: c.drop })
          if (problem !== undefined) return yield* Effect.fail(new Error(problem))
          if (c.drop) outcomes.dropped++
          else if (transcript.includes("\r\n221 ")) outcomes.quit++
          else outcomes.closedEarly++
          // Another logged-in session is unaffected.
          assert.strictEqual((yield* other.command("NOOP")).code, 200)
          const mlst = yield* other.command("MLST /")
          assert.strictEqual(mlst.code, 250, mlst.text)
          assert.strictEqual(server.outside(), outside, "something outside the root changed")
        }))

      const before = yield* memoryInUse
      const fdsBefore = openFds()
      yield* Effect.scoped(Effect.gen(function*() {
        const other = yield* connect(server.ftpPort)
        yield* other.login("alice", password)
        yield* Effect.promise(() => fc.assert(fc.asyncProperty(fuzzCase, (c) => Effect.runPromise(runCase(other, c))), runs))
      }))
      // Sessions whose client vanished end on the server's time: wait for all of them to be gone.
      yield* Context.get(server.context, Sessions).awaitEmpty
      const after = yield* memoryInUse
      const fdsAfter = openFds()
      assert.isAbove(outcomes.quit, 0)
      assert.deepStrictEqual(watch.errors(), [])
      assert.deepStrictEqual(log.entries(), [], `${log.count()} errors logged`)
      assert.isBelow(after - before, 64 * 1024 * 1024, `memory grew from ${mib(before)} to ${mib(after)}`)
      assert.isBelow(fdsAfter - fdsBefore, 16, `open file descriptors went from ${fdsBefore} to ${fdsAfter}`)
      // A new session still logs in.
      const fresh = yield* connect(server.ftpPort)
      yield* fresh.login("alice", password)
      assert.strictEqual((yield* fresh.command("PWD")).code, 257)
      fuzzReport(
        `FTP control: ${runs.numRuns} cases, ${outcomes.quit} ended by QUIT, ${outcomes.closedEarly} closed earlier by the server, ` +
          `${outcomes.dropped} dropped by the client; memory ${mib(before)} -> ${mib(after)}, fds ${fdsBefore} -> ${fdsAfter}`
      )
    }).pipe(Effect.provide(log.layer)), fuzzTimeout(runs.numRuns ?? 0, 300))
})
