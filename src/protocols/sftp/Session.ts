/**
 * One SFTP channel: reads packets, serves requests concurrently, writes replies.
 *
 * Clients pipeline dozens of READ/WRITE requests, so each request runs in its
 * own fiber, while replies leave in the order the requests arrived and at most
 * `maxRequestsInFlight` requests are read and unanswered (ReplyWindow): once
 * that many are, the loop stops reading the channel, so ssh2's window stops
 * the client. Requests on one handle keep the order that matters (see
 * Requests.lockOf): this loop takes their locks in arrival order, and waits
 * while the next request's lock is held.
 *
 * Only the handler of a request runs as an Effect; the loop decodes, locks and
 * forks it synchronously, and the fiber's exit is observed directly. The
 * per-request cost of this path is what small-files uploads pay (bench/README.md).
 *
 * A malformed packet stream (a length over the limit, no INIT first) ends the
 * session; a malformed request with a readable id gets BAD_MESSAGE. A defect in
 * a handler sends a generic failure, is logged with its cause, and ends the session.
 */
import { Cause, Clock, Data, Deferred, Effect, Exit, FiberSet, Result } from "effect"
import type { Duplex } from "node:stream"
import type { Events } from "../../services/Events.js"
import type { JailHandle } from "../../services/Jail.js"
import type { Principal } from "../../services/Principal.js"
import type { SessionControl } from "../../services/Sessions.js"
import type { Access } from "../common/Access.js"
import { release } from "../common/ReleaseMemory.js"
import * as Waiter from "../common/Waiter.js"
import * as ChannelChunks from "./ChannelChunks.js"
import * as Codec from "./Codec.js"
import * as Handles from "./Handles.js"
import * as ReplyWindow from "./ReplyWindow.js"
import { defaultLimits, extensions, handle, lockOf, type RequestContext, type SftpLimits } from "./Requests.js"
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
  /** The TCP socket under the SSH connection, corked while replies are written (see ReplyWindow). */
  readonly transport: ReplyWindow.ReplyWindowOptions["transport"]
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

type Handled = Exclude<Codec.Request, Codec.Init | Codec.Unknown>

/**
 * Serves SFTP on `channel` until the client closes it. Open handles are closed
 * (without announcing uploads) when it ends.
 * @category constructors
 */
export const serveChannel = (channel: Duplex, context: ChannelContext): Effect.Effect<void, never, Events> =>
  Effect.gen(function*() {
    const limits: SftpLimits = { ...defaultLimits, ...context.limits }
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
    const services = yield* Effect.context<Events>()
    const log = Effect.runForkWith(services)
    // Closed with the scope: the requests still running are interrupted and awaited.
    const requests = yield* FiberSet.make<ReplyWindow.Reply>()
    const fork = yield* FiberSet.runtime(requests)<Events>()

    // The loop waits on one condition at a time: room in the window, a free
    // lock, or (at the end) every reply written. Whatever frees one wakes it.
    const loop = Waiter.make()
    let channelGone = false
    const waitUntil = (ready: () => boolean) =>
      loop.next(() =>
        channelGone ? Effect.fail(new SessionEnd({ reason: "channel closed" })) : ready() ? Effect.void : undefined
      )

    // Once shutdown drains the server, the channel ends as soon as every reply
    // is written and no handle is open.
    const quiet = Deferred.makeUnsafe<void>()
    let draining = false
    const checkQuiet = () => {
      if (draining && window.isEmpty() && handles.size() === 0) Deferred.doneUnsafe(quiet, Exit.void)
    }
    const ended = Deferred.makeUnsafe<never, SessionEnd>()

    const window = ReplyWindow.make(channel, {
      maxInFlight: limits.maxRequestsInFlight,
      transport: context.transport,
      onRoom: () => {
        loop.wake()
        checkQuiet()
      }
    })
    channel.once("close", () => {
      channelGone = true
      window.close()
      loop.wake()
    })
    yield* Effect.addFinalizer(() => Effect.sync(window.close))

    const answer = (reply: ReplyWindow.Reply): undefined => {
      window.fill(window.reserve(), reply)
      return undefined
    }

    /** What a request's fiber ended with becomes its reply; `body` is its packet (a WRITE's data is a view of it). */
    const finish = (
      request: Handled,
      body: Buffer,
      place: ReplyWindow.Place,
      lock: Handles.HandleLock | undefined,
      exclusive: boolean,
      exit: Exit.Exit<ReplyWindow.Reply>
    ) => {
      if (lock) Handles.giveLock(lock, exclusive)
      // The reader gave a WRITE of 4 KiB or more a buffer of its own: its bytes are in the file now.
      if (request._tag === "Write") release(body)
      if (Exit.isSuccess(exit)) window.fill(place, exit.value)
      else if (!Cause.hasInterruptsOnly(exit.cause)) {
        log(Effect.logError("SFTP request defect", exit.cause))
        window.fill(
          place,
          [Codec.encodeStatus(request.id, SftpStatus.Failure, "Failure")],
          () => Deferred.doneUnsafe(ended, Exit.fail(new SessionEnd({ reason: "defect" })))
        )
      }
      // An interrupted request (the session is ending) leaves its place empty:
      // no later reply overtakes the missing one.
      loop.wake()
    }

    const start = (request: Handled, body: Buffer, now: number, lock: Handles.HandleLock | undefined, exclusive: boolean) => {
      if (lock) Handles.takeLock(lock, exclusive)
      const place = window.reserve()
      fork(handle(ctx, request, now)).addObserver((exit) => finish(request, body, place, lock, exclusive, exit))
    }

    /** Starts `request` now, or gives what to wait for first when its handle's lock is held. */
    const serve = (request: Handled, body: Buffer, now: number): Effect.Effect<void, SessionEnd> | undefined => {
      const target = lockOf(request)
      const entry = target ? handles.find(target.handle) : undefined
      const lock = entry?.lock
      const exclusive = target?.exclusive === true ||
        (request._tag === "Write" && entry?._tag === "File" && entry.append)
      if (lock && !Handles.isFree(lock, exclusive)) {
        return waitUntil(() => Handles.isFree(lock, exclusive)).pipe(
          Effect.andThen(Effect.sync(() => start(request, body, now, lock, exclusive)))
        )
      }
      start(request, body, now, lock, exclusive)
      return undefined
    }

    let initialized = false
    /** Handles one packet; gives an effect only when the loop must wait or the session must end. */
    const onPacket = (body: Buffer, now: number): Effect.Effect<void, SessionEnd> | undefined => {
      const decoded = Codec.decodeRequest(body)
      if (Result.isFailure(decoded)) {
        const { id } = decoded.failure
        if (id === undefined || !initialized) return Effect.fail(new SessionEnd({ reason: `bad packet: ${decoded.failure.reason}` }))
        return answer([Codec.encodeStatus(id, SftpStatus.BadMessage, "Bad message")])
      }
      const request = decoded.success
      if (!initialized) {
        if (request._tag !== "Init") return Effect.fail(new SessionEnd({ reason: "the first packet was not INIT" }))
        initialized = true
        return answer([Codec.encodeVersion(extensions)])
      }
      if (request._tag === "Init") return Effect.fail(new SessionEnd({ reason: "INIT sent twice" }))
      if (request._tag === "Unknown") {
        const { id } = request
        if (id === undefined) return Effect.fail(new SessionEnd({ reason: "unknown packet without id" }))
        return answer([Codec.encodeStatus(id, SftpStatus.OpUnsupported, "Operation unsupported")])
      }
      return serve(request, body, now)
    }

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
        yield* context.control.touch
        const now = yield* Clock.currentTimeMillis
        for (const body of packets) {
          if (!window.hasRoom()) yield* waitUntil(window.hasRoom)
          const wait = onPacket(body, now)
          if (wait) yield* wait
        }
      }
    })
    const drained = context.control.draining.pipe(
      Effect.andThen(Effect.sync(() => {
        draining = true
        checkQuiet()
      })),
      Effect.andThen(Deferred.await(quiet)),
      Effect.andThen(Effect.fail(new Drained()))
    )
    const outcome = yield* Effect.exit(
      Effect.raceAllFirst([
        // The client's EOF: answer what it sent before it.
        readAll.pipe(Effect.andThen(waitUntil(window.isEmpty))),
        Deferred.await(ended),
        drained
      ])
    )
    if (Exit.isFailure(outcome) && !Cause.hasInterruptsOnly(outcome.cause)) {
      yield* Effect.logInfo("SFTP channel closed", Cause.squash(outcome.cause))
    }
  }).pipe(Effect.scoped)
