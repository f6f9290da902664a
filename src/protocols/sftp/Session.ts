/**
 * One SFTP channel: reads packets, serves requests concurrently, writes replies.
 *
 * Clients pipeline dozens of READ/WRITE requests, so each request runs in its
 * own fiber, but replies leave in the order the requests arrived: the protocol
 * allows any order, yet OpenSSH 9.2's scp truncates a download at the first
 * out-of-order READ reply and paramiko's put waits forever for an overtaken one
 * (pkg/sftp orders its replies for the same reason).
 * Memory stays bounded: at most `maxRequestsInFlight` requests are served at
 * once, and while that many are running the loop stops reading the channel, so
 * ssh2's window stops the client. Requests on one handle keep the order that
 * matters (see Requests.lockOf), acquired by this loop in arrival order.
 *
 * A malformed packet stream (a length over the limit, no INIT first) ends the
 * session; a malformed request with a readable id gets BAD_MESSAGE. A defect in
 * a handler sends a generic failure, is logged with its cause, and ends the session.
 */
import { Cause, Clock, Data, Deferred, Effect, Exit, FiberSet, Result, Semaphore } from "effect"
import type { Duplex, Writable } from "node:stream"
import type { Events } from "../../services/Events.js"
import type { JailHandle } from "../../services/Jail.js"
import type { Principal } from "../../services/Principal.js"
import type { SessionControl } from "../../services/Sessions.js"
import type { Access } from "../common/Access.js"
import { release } from "../common/ReleaseMemory.js"
import * as ChannelChunks from "./ChannelChunks.js"
import * as Codec from "./Codec.js"
import * as Handles from "./Handles.js"
import { defaultLimits, extensions, handle, lockOf, type Reply, type RequestContext, type SftpLimits } from "./Requests.js"
import { SftpStatus } from "./Wire.js"

export type { SftpLimits } from "./Requests.js"

/**
 * What a channel needs from its SSH session.
 * @category models
 */
export interface ChannelContext {
  readonly principal: Principal
  readonly jail: JailHandle
  readonly access: Access
  readonly control: SessionControl
  readonly clientIp: string
  readonly tempExtensions: ReadonlyArray<string>
  readonly limits: Partial<SftpLimits>
  /**
   * The TCP socket under the SSH connection. Replies are written with it corked
   * until the end of the tick: ssh2 turns a 256 KiB READ reply into eight
   * 32 KiB SSH packets, each its own socket write, and corking sends them (and
   * the other replies of the same tick) in one writev system call.
   */
  readonly transport: Pick<Writable, "cork" | "uncork">
  /** Told about each channel chunk once its bytes are copied out (see InboundBuffers). */
  readonly framed: (chunk: Uint8Array) => void
}

/**
 * Packets gathered while the loop is busy before the channel is paused: two
 * full-size WRITE requests.
 */
const maxBatchBytes = 512 * 1024

/** Shutdown asked the session to leave and it has nothing in progress. */
class Drained extends Data.TaggedError("Drained")<{}> {}

/** The session cannot go on: the client broke the protocol or a handler had a defect. */
class SessionEnd extends Data.TaggedError("SessionEnd")<{ readonly reason: string }> {}

/** Writes reply packets in order, waiting for 'drain' when the channel's buffer is full. */
const writeReply = (channel: Duplex, transport: ChannelContext["transport"], reply: Reply) =>
  Effect.callback<void>((resume) => {
    let flushed = true
    transport.cork()
    process.nextTick(() => transport.uncork())
    // ssh2 has copied a packet into its SSH packets once the write's callback runs.
    for (const packet of reply) flushed = channel.write(packet, () => release(packet))
    if (flushed || channel.destroyed) return resume(Effect.void)
    const done = () => {
      channel.off("drain", done)
      channel.off("close", done)
      resume(Effect.void)
    }
    channel.on("drain", done)
    channel.on("close", done)
  })

/**
 * Serves SFTP on `channel` until the client closes it. Open handles are closed
 * (without announcing uploads) when it ends.
 * @category constructors
 */
export const serveChannel = (channel: Duplex, context: ChannelContext): Effect.Effect<void, never, Events> =>
  Effect.gen(function*() {
    const limits: SftpLimits = { ...defaultLimits, ...context.limits }
    channel.setMaxListeners(limits.maxRequestsInFlight * 2 + 10)
    // End the channel as OpenSSH's server does: exit-status 0, EOF, close. Without
    // exit-status, ssh exits 255 and scp 1 after a perfectly good session.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        const ssh = channel as Duplex & { exit?: (status: number) => void }
        if (!channel.destroyed && channel.writable) {
          ssh.exit?.(0)
          channel.end()
        }
        channel.destroy()
      })
    )
    const handles = yield* Handles.make(limits.maxOpenHandles)
    const ctx: RequestContext = { ...context, handles, limits }
    const inFlight = yield* Semaphore.make(limits.maxRequestsInFlight)
    const requests = yield* FiberSet.make<void, SessionEnd>()
    let initialized = false
    let running = 0
    // Each reply waits for the one of the request before it: a chain of Deferreds,
    // each telling whether its reply went out. A request interrupted before its
    // reply (the session is ending) silences the ones after it: a later reply
    // must never overtake a missing one, whatever order the interruptions run in.
    let previousReply = yield* Deferred.make<boolean>()
    yield* Deferred.succeed(previousReply, true)
    const inOrder = Effect.gen(function*() {
      const before = previousReply
      const mine = yield* Deferred.make<boolean>()
      previousReply = mine
      return (reply: Effect.Effect<void>) =>
        Deferred.await(before).pipe(
          Effect.flatMap((sent) => (sent ? Effect.as(reply, true) : Effect.succeed(false))),
          Effect.onExit((exit) => Deferred.succeed(mine, Exit.isSuccess(exit) && exit.value))
        )
    })
    // Once shutdown drains the server, the channel ends as soon as no request runs and no handle is open.
    const quiet = yield* Deferred.make<void>()
    let draining = false
    const checkQuiet = Effect.suspend(() =>
      draining && running === 0 && handles.size() === 0 ? Deferred.succeed(quiet, undefined) : Effect.void
    )

    /** `body` is the request's packet; a WRITE's data is a view of it. */
    const serve = (request: Exclude<Codec.Request, Codec.Init | Codec.Unknown>, body: Buffer) =>
      Effect.gen(function*() {
        yield* inFlight.take(1)
        const lock = lockOf(request)
        const entry = lock ? yield* Effect.result(handles.get(lock.handle)) : undefined
        const held = entry && Result.isSuccess(entry) ? entry.success.lock : undefined
        const exclusive = lock?.exclusive === true ||
          (request._tag === "Write" && entry !== undefined && Result.isSuccess(entry) && entry.success._tag === "File" && entry.success.append)
        const permits = exclusive ? Handles.permitsPerHandle : 1
        if (held) yield* held.take(permits)
        const now = yield* Clock.currentTimeMillis
        const send = yield* inOrder
        running++
        yield* FiberSet.run(requests, handle(ctx, request, now).pipe(
          Effect.flatMap((reply) => send(writeReply(channel, context.transport, reply))),
          Effect.catchCause((cause) =>
            Cause.hasInterruptsOnly(cause)
              ? Effect.interrupt
              : Effect.logError("SFTP request defect", cause).pipe(
                Effect.andThen(send(writeReply(channel, context.transport, [Codec.encodeStatus(request.id, SftpStatus.Failure, "Failure")]))),
                Effect.andThen(Effect.fail(new SessionEnd({ reason: "defect" })))
              )
          ),
          Effect.ensuring(Effect.andThen(held ? held.release(permits) : Effect.void, inFlight.release(1))),
          // The reader gave a WRITE of 4 KiB or more a buffer of its own: its bytes are in the file now.
          Effect.ensuring(Effect.sync(() => {
            if (request._tag === "Write") release(body)
          })),
          Effect.ensuring(Effect.suspend(() => {
            running--
            return checkQuiet
          }))
        ))
      })

    const onPacket = (body: Buffer) =>
      Effect.gen(function*() {
        yield* context.control.touch
        const decoded = Codec.decodeRequest(body)
        if (Result.isFailure(decoded)) {
          const { id } = decoded.failure
          if (id === undefined || !initialized) return yield* Effect.fail(new SessionEnd({ reason: `bad packet: ${decoded.failure.reason}` }))
          const send = yield* inOrder
          return yield* send(writeReply(channel, context.transport, [Codec.encodeStatus(id, SftpStatus.BadMessage, "Bad message")]))
        }
        const request = decoded.success
        if (!initialized) {
          if (request._tag !== "Init") return yield* Effect.fail(new SessionEnd({ reason: "the first packet was not INIT" }))
          initialized = true
          return yield* writeReply(channel, context.transport, [Codec.encodeVersion(extensions)])
        }
        if (request._tag === "Init") return yield* Effect.fail(new SessionEnd({ reason: "INIT sent twice" }))
        if (request._tag === "Unknown") {
          if (request.id === undefined) return yield* Effect.fail(new SessionEnd({ reason: "unknown packet without id" }))
          const send = yield* inOrder
          return yield* send(writeReply(channel, context.transport, [Codec.encodeStatus(request.id, SftpStatus.OpUnsupported, "Operation unsupported")]))
        }
        yield* serve(request, body)
      })

    const reader = Codec.makePacketReader({ maxPacketLength: limits.maxPacketLength })
    const chunks = ChannelChunks.make(channel, {
      maxBatchBytes,
      frame: (chunk) => Result.mapError(reader.push(chunk), (error) => new SessionEnd({ reason: `framing: ${error.reason}` })),
      onBroken: () => new SessionEnd({ reason: "channel error" }),
      onFramed: context.framed
    })
    yield* Effect.addFinalizer(() => chunks.release)
    const readAll = Effect.gen(function*() {
      while (true) {
        const packets = yield* chunks.next
        if (packets.length === 0) return
        for (const body of packets) yield* onPacket(body)
      }
    })
    const drained = context.control.draining.pipe(
      Effect.andThen(Effect.sync(() => void (draining = true))),
      Effect.andThen(checkQuiet),
      Effect.andThen(Deferred.await(quiet)),
      Effect.andThen(Effect.fail(new Drained()))
    )
    const outcome = yield* Effect.exit(
      Effect.raceAllFirst([
        readAll.pipe(Effect.andThen(FiberSet.awaitEmpty(requests))),
        FiberSet.join(requests).pipe(Effect.andThen(Effect.never)),
        drained
      ])
    )
    if (Exit.isFailure(outcome) && !Cause.hasInterruptsOnly(outcome.cause)) {
      yield* Effect.logInfo("SFTP channel closed", Cause.squash(outcome.cause))
    }
  }).pipe(Effect.scoped)
