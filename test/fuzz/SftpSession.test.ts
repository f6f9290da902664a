/**
 * Property-based fuzzing of a real SFTP server (Session.ts, Requests.ts and
 * the codec behind them) over SSH: each case opens a fresh `sftp` channel and
 * sends a batch of valid, mutated and random packets (lying lengths, truncated
 * attributes, huge counts, invalid UTF-8, random types, paths that climb out of
 * the root), cut into random chunks.
 *
 * A reference framer says which packet bodies the server receives. The
 * session must then answer each of them, in order, with a well-formed reply of
 * a type its request allows and the request's id, or close the channel exactly
 * where the protocol says it must (a bad length, no INIT first, INIT twice, a
 * packet without an id); replies to the packets before a close may be cut
 * short, nothing may come after it. A REALPATH sentinel after the batch proves
 * that an open session answered everything. After every case a second,
 * concurrently open session still answers REALPATH and STAT, nothing outside
 * the user's root changed. Some cases send everything and close the channel
 * at once. Across the run no uncaught exception, unhandled rejection or
 * logged error occurred, and memory and open file descriptors stayed bounded.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect } from "effect"
import fc from "fast-check"
import * as path from "node:path"
import type ssh2 from "ssh2"
import { Sessions } from "../../src/services/Sessions.js"
import { defaultMaxPacketLength, SftpPacket } from "../../src/protocols/sftp/Wire.js"
import { fuzzParameters, fuzzReport, fuzzTimeout } from "./FuzzRuns.js"
import { fuzzServer, password, resetRoot } from "./FuzzServer.js"
import { errorLog, memoryInUse, mib, openFds, watchProcess } from "./ProcessHealth.js"
import { frame, handleBurstArbitrary, mutatedArbitrary, openArbitrary, pathArbitrary, referenceFrames, requestArbitrary, split, sshString, u32, u8 } from "./SftpModel.js"
import { allowedReplies, openChannel, parseReply, type SftpChannel, sshLogin } from "./SftpWire.js"

/** Whatever a case sends, and how. */
interface Batch {
  readonly init: boolean
  readonly bodies: ReadonlyArray<Buffer>
  /** One length field that lies: which packet, and the value written instead. */
  readonly lie: { readonly index: number; readonly length: number } | null
  readonly cuts: ReadonlyArray<number>
  /** Packets after which the client waits for the replies so far. */
  readonly pauses: ReadonlyArray<number>
  /**
   * The client sends everything and leaves at once, without reading a reply:
   * it closes the channel, or destroys the TCP connection under it.
   */
  readonly abort: "no" | "channel" | "connection"
}

const sentinelId = 0xfffffff0

const initPacket = frame(Buffer.concat([u8(SftpPacket.Init), u32(3)]))

const realpath = (id: number, p: string) => frame(Buffer.concat([u8(SftpPacket.Realpath), u32(id), sshString(p)]))
const stat = (id: number, p: string) => frame(Buffer.concat([u8(SftpPacket.Stat), u32(id), sshString(p)]))

/** The batch's bytes, completed so that the sentinel after it is framed as a packet of its own. */
const wire = (batch: Batch): Buffer => {
  const frames = batch.bodies.map((body, i) =>
    batch.lie !== null && batch.lie.index % batch.bodies.length === i ? Buffer.concat([u32(batch.lie.length), body]) : frame(body)
  )
  let stream = Buffer.concat([...(batch.init ? [initPacket] : []), ...frames])
  // An unfinished packet at the end swallows whatever follows it: fill it with zeros first.
  for (;;) {
    const framed = referenceFrames(stream, defaultMaxPacketLength)
    if (framed.bad !== undefined || framed.tail === 0) break
    stream = Buffer.concat([stream, Buffer.alloc(framed.missing)])
  }
  return Buffer.concat([stream, realpath(sentinelId, "/")])
}

/** `value` in one case out of `oneIn`, null otherwise. */
const rarely = <A>(value: fc.Arbitrary<A>, oneIn: number): fc.Arbitrary<A | null> =>
  fc.oneof({ weight: oneIn - 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: value })

type Step = { readonly _tag: "Version" } | { readonly _tag: "Reply"; readonly body: Buffer }

const describeStep = (step: Step) =>
  step._tag === "Version" ? "INIT" : `type ${step.body[0]}, ${step.body.length} bytes: ${step.body.toString("hex").slice(0, 60)}`

/** What the session must do with the bodies it receives: reply to each, then close or stay open. */
const plan = (stream: Buffer): { readonly steps: ReadonlyArray<Step>; readonly closes: boolean } => {
  const framed = referenceFrames(stream, defaultMaxPacketLength)
  const steps: Array<Step> = []
  let initialized = false
  for (const body of framed.bodies) {
    const type = body[0]
    if (!initialized) {
      if (type !== SftpPacket.Init || body.length < 5) return { steps, closes: true }
      initialized = true
      steps.push({ _tag: "Version" })
      continue
    }
    // INIT twice, or a packet too short to hold an id: nothing to answer, the session ends.
    if (type === SftpPacket.Init || body.length < 5) return { steps, closes: true }
    steps.push({ _tag: "Reply", body })
  }
  return { steps, closes: framed.bad !== undefined }
}

/** Checks one reply against the request it answers; a description of what is wrong, or undefined. */
const checkReply = (index: number, step: Step, body: Buffer): string | undefined => {
  const reply = parseReply(body)
  if (typeof reply === "string") return `packet ${index} (${describeStep(step)}): ${reply}`
  if (step._tag === "Version") return reply.type === SftpPacket.Version ? undefined : `INIT answered with type ${reply.type}`
  const id = step.body.readUInt32BE(1)
  if (reply.type === SftpPacket.Version) return `packet ${index} (${describeStep(step)}) answered with VERSION`
  if (reply.id !== id) return `packet ${index} (${describeStep(step)}): reply id ${reply.id}, expected ${id}`
  if (!allowedReplies(step.body).has(reply.type)) return `packet ${index} (${describeStep(step)}): reply type ${reply.type} not allowed`
  return undefined
}

/**
 * Sends the stream in rounds that end at packet boundaries (`pauses`), each cut
 * into chunks at `cuts`, and checks the replies of a round before the next is
 * sent, so requests on a handle can follow the OPEN that made it. Every packet
 * sent before the one that must close the session is answered; replies in the
 * round that closes it may be cut short, and nothing comes after.
 */
const checkSession = (channel: SftpChannel, stream: Buffer, pauses: ReadonlyArray<number>, cuts: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const framed = referenceFrames(stream, defaultMaxPacketLength)
    const { closes, steps } = plan(stream)
    const ends = framed.bodies.map((body) => body.byteOffset - stream.byteOffset + body.length)
    // The session may close once any byte of the packet (or length field) that ends it has arrived.
    const closeStart = !closes ? Infinity : steps.length === 0 ? 0 : ends[steps.length - 1]!
    const boundaries = [...new Set([...pauses.map((p) => ends[p % Math.max(1, steps.length)] ?? stream.length), stream.length])]
      .filter((at) => at <= stream.length)
      .sort((a, b) => a - b)
    let sent = 0
    let answered = 0
    for (const upto of boundaries) {
      for (const chunk of split(stream.subarray(sent, upto), cuts)) yield* channel.send(chunk)
      sent = upto
      const mayClose = sent > closeStart
      while (answered < steps.length && ends[answered]! <= sent) {
        const step = steps[answered]!
        const next = yield* Effect.result(channel.next)
        if (next._tag === "Failure") {
          if (mayClose) return "closed"
          return yield* Effect.fail(`closed before answering packet ${answered} of ${steps.length} (${describeStep(step)})`)
        }
        const wrong = checkReply(answered, step, next.success)
        if (wrong !== undefined) return yield* Effect.fail(wrong)
        answered++
      }
      if (mayClose) break
    }
    if (closes) {
      const after = yield* Effect.result(channel.next)
      if (after._tag === "Success") return yield* Effect.fail(`a reply after the packet that must close the session: ${after.success.toString("hex").slice(0, 80)}`)
      return "closed"
    }
    return "answered"
  })

/** A second session that must keep answering while the fuzzed ones misbehave. */
const healthCheck = (channel: SftpChannel, id: number) =>
  Effect.gen(function*() {
    yield* channel.send(Buffer.concat([realpath(id, "."), stat(id + 1, "/")]))
    const name = parseReply(yield* channel.next)
    const attrs = parseReply(yield* channel.next)
    assert.deepInclude(name, { type: SftpPacket.Name, id })
    assert.deepInclude(attrs, { type: SftpPacket.Attrs, id: id + 1 })
  })

describe("SFTP session (property-based, real server)", () => {
  const runs = fuzzParameters<[Batch]>(150, 4, { timeout: 30_000 })

  const log = errorLog()
  it.effect(`answers every packet with a valid reply or closes; other sessions unaffected; nothing outside the root changes (${runs.numRuns} cases)`, () =>
    Effect.gen(function*() {
      const watch = yield* watchProcess
      const server = yield* fuzzServer
      const outside = server.outside()

      const paths = pathArbitrary([server.root, server.base, `${server.root}2`, path.join(server.base, "outside")].map((p) => p.slice(1)))
      const requests = requestArbitrary(paths)
      // Packets the session answers (an id, not INIT) make up most of a batch, so
      // the handlers run; a packet that must end the session comes in some batches only.
      const answerable = (b: Buffer) => b.length >= 5 && b[0] !== SftpPacket.Init
      const body = fc.oneof(
        { weight: 5, arbitrary: requests.map((r) => r.body).filter(answerable) },
        { weight: 2, arbitrary: openArbitrary().map((r) => r.body) },
        { weight: 3, arbitrary: mutatedArbitrary(requests).filter(answerable) },
        { weight: 1, arbitrary: fc.uint8Array({ minLength: 5, maxLength: 48 }).map((b) => Buffer.from(b)).filter(answerable) }
      )
      const ender = fc.oneof(
        fc.constant(Buffer.concat([u8(SftpPacket.Init), u32(3)])),
        fc.uint8Array({ minLength: 1, maxLength: 4 }).map((b) => Buffer.from(b)),
        mutatedArbitrary(requests)
      )
      const batch: fc.Arbitrary<Batch> = fc.record({
        init: fc.oneof({ weight: 20, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
        bodies: fc.tuple(
          fc.array(fc.oneof({ weight: 4, arbitrary: body.map((b) => [b]) }, { weight: 1, arbitrary: handleBurstArbitrary().map((rs) => rs.map((r) => r.body)) }), {
            minLength: 1,
            maxLength: 8
          }).map((groups) => groups.flat()),
          rarely(fc.tuple(fc.nat(), ender), 5)
        ).map(([bodies, end]) => (end === null ? bodies : bodies.toSpliced(end[0] % (bodies.length + 1), 0, end[1]))),
        lie: rarely(
          fc.record({
            index: fc.nat(),
            length: fc.oneof(fc.integer({ min: 1, max: 80 }), fc.constantFrom(0, defaultMaxPacketLength, defaultMaxPacketLength + 1, 0xffffffff))
          }),
          8
        ),
        cuts: fc.array(fc.nat(), { maxLength: 8 }),
        // Sometimes one packet at a time, as a client that waits for each reply.
        pauses: fc.oneof(
          { weight: 2, arbitrary: fc.array(fc.nat(), { maxLength: 6 }) },
          { weight: 1, arbitrary: fc.constant(Array.from({ length: 64 }, (_, i) => i)) }
        ),
        abort: fc.oneof(
          { weight: 12, arbitrary: fc.constant("no" as const) },
          { weight: 2, arbitrary: fc.constant("channel" as const) },
          { weight: 1, arbitrary: fc.constant("connection" as const) }
        )
      })

      const outcomes = { answered: 0, closed: 0, aborted: 0 }
      let healthId = 1
      /** One case; `fuzzing` carries the case's channel, `other` is a session open all along. */
      const runCase = (fuzzing: ssh2.Client, other: SftpChannel, b: Batch) =>
        Effect.gen(function*() {
          resetRoot(server.root)
          const stream = wire(b)
          const outcome = yield* Effect.scoped(Effect.gen(function*() {
            if (b.abort !== "no") {
              // Requests in flight when the client leaves: the server must drop them and close every handle.
              const own = b.abort === "connection" ? (yield* sshLogin(server.sftpPort, "alice", password)).client : fuzzing
              const channel = yield* openChannel(own)
              for (const chunk of split(stream, b.cuts)) yield* channel.send(chunk)
              if (b.abort === "connection") own.destroy()
              else yield* channel.close
              return "aborted" as const
            }
            const channel = yield* openChannel(fuzzing)
            const result = yield* checkSession(channel, stream, b.pauses, b.cuts)
            yield* channel.close
            return result
          }))
          outcomes[outcome]++
          yield* healthCheck(other, healthId)
          healthId += 2
          assert.strictEqual(server.outside(), outside, "something outside the root changed")
        })

      const before = yield* memoryInUse
      const fdsBefore = openFds()
      yield* Effect.scoped(Effect.gen(function*() {
        const fuzzing = yield* sshLogin(server.sftpPort, "alice", password)
        const healthy = yield* sshLogin(server.sftpPort, "alice", password)
        const other = yield* openChannel(healthy.client)
        yield* other.send(initPacket)
        assert.strictEqual((yield* other.next)[0], SftpPacket.Version)
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(batch, (b) =>
              Effect.runPromise(runCase(fuzzing.client, other, b).pipe(Effect.mapError((e) => (typeof e === "string" ? new Error(e) : e))))),
            runs
          )
        )
        // Whatever the cases sent, the server never dropped the connection they shared.
        assert.isFalse(Deferred.isDoneUnsafe(fuzzing.closed), "the fuzzed SSH connection was dropped")
      }))
      // Sessions whose client vanished end on the server's time: wait for all of them to be gone.
      yield* Context.get(server.context, Sessions).awaitEmpty
      const after = yield* memoryInUse
      const fdsAfter = openFds()
      // Both outcomes happened: the batches reached the handlers and the close paths.
      assert.isAbove(outcomes.answered, 0)
      assert.isAbove(outcomes.closed, 0)
      assert.deepStrictEqual(watch.errors(), [])
      assert.deepStrictEqual(log.entries(), [], `${log.count()} errors logged`)
      assert.isBelow(after - before, 64 * 1024 * 1024, `memory grew from ${mib(before)} to ${mib(after)}`)
      assert.isBelow(fdsAfter - fdsBefore, 4, `open file descriptors went from ${fdsBefore} to ${fdsAfter}`)
      // A new session still works after the run.
      const fresh = yield* openChannel((yield* sshLogin(server.sftpPort, "alice", password)).client)
      yield* fresh.send(initPacket)
      assert.strictEqual((yield* fresh.next)[0], SftpPacket.Version)
      yield* healthCheck(fresh, 1)
      fuzzReport(
        `SFTP sessions: ${runs.numRuns} cases, ${outcomes.answered} answered in full, ${outcomes.closed} closed by the server, ${outcomes.aborted} abandoned by the client; ` +
          `memory ${mib(before)} -> ${mib(after)}, fds ${fdsBefore} -> ${fdsAfter}`
      )
    }).pipe(Effect.provide(log.layer)), fuzzTimeout(runs.numRuns ?? 0, 200))
})
