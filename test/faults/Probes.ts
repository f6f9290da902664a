/**
 * What the fault-injection tests observe of a server running in the test process:
 * its open file descriptors (/proc/self/fd), its live sessions (the Sessions
 * service) and the uploads it announces (the Events service). Waiting is on the
 * services' own signals, never on a timer.
 */
import { Context, Effect, Option, Queue, Stream } from "effect"
import * as fs from "node:fs"
import { Events, type UploadCompleted } from "../../src/services/Events.js"
import { Sessions } from "../../src/services/Sessions.js"

/** The process's open file descriptors: number → what it points at (socket:[…], a path, anon_inode:…). */
export const openFds = (): ReadonlyMap<string, string> => {
  const fds = new Map<string, string>()
  for (const fd of fs.readdirSync("/proc/self/fd")) {
    try {
      fds.set(fd, fs.readlinkSync(`/proc/self/fd/${fd}`))
    } catch {
      // The fd readdir itself used is closed by now.
    }
  }
  return fds
}

/** The fds of `after` that `before` did not have, for an assertion message. */
export const describeNewFds = (before: ReadonlyMap<string, string>, after: ReadonlyMap<string, string>): string =>
  [...after].filter(([fd, target]) => before.get(fd) !== target).map(([fd, target]) => `${fd} -> ${target}`).join(", ") || "none"

/** Completes when the server has no session left: every session's scope (files, sockets, jail) is closed. */
export const sessionsGone = (context: Context.Context<Sessions>) => Context.get(context, Sessions).awaitEmpty

/** Completed uploads, from now on, in a queue. */
export const uploadEvents = (context: Context.Context<Events>) =>
  Effect.gen(function*() {
    const stream: Stream.Stream<UploadCompleted> = yield* Context.get(context, Events).subscribeUploads
    return yield* Stream.toQueue(stream, { capacity: "unbounded" })
  })

/** The paths of every event in the queue now, without waiting. */
export const drainEvents = (queue: Queue.Dequeue<UploadCompleted, unknown>) =>
  Effect.gen(function*() {
    const paths: Array<string> = []
    while (true) {
      const next = yield* Queue.poll(queue)
      if (Option.isNone(next)) return paths
      paths.push(next.value.path)
    }
  })
