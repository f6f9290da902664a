/**
 * The replies of one SFTP channel, written in the order their requests
 * arrived, and the budget of requests in flight.
 *
 * Each request reserves its place when it is read; its reply waits there until
 * every earlier reply has gone out. The protocol allows any order, yet OpenSSH
 * 9.2's scp truncates a download at the first out-of-order READ reply and
 * paramiko's put waits forever for an overtaken one (pkg/sftp orders its
 * replies for the same reason). A place whose request never answers (it was
 * interrupted as the session ends) holds back every later reply, so a reply
 * never overtakes a missing one.
 *
 * A place counts against the budget until its reply is handed to the channel.
 * So at most `maxInFlight` requests run or wait with their replies (READ
 * replies of 256 KiB each), and while the channel's buffer is full nothing more
 * is handed to it: replies then wait in their places, the budget runs out, the
 * session stops reading, and ssh2's window stops the client.
 *
 * This is plain bookkeeping on the event loop, without a fiber or a Deferred
 * per request: a small-files upload sends three requests per file, and that
 * per-request cost was most of what the server spent on it.
 */
import type { Writable } from "node:stream"
import { release } from "../common/ReleaseMemory.js"

/**
 * Reply packets, written in order (a READ reply is a header plus the data, without a copy).
 * @category models
 */
export type Reply = ReadonlyArray<Uint8Array>

/**
 * The place of one request's reply, from `reserve`.
 * @category models
 */
export interface Place {
  /** @internal */
  reply: Reply | undefined
  /** @internal */
  afterWrite: (() => void) | undefined
  /** @internal */
  next: Place | undefined
}

/**
 * The reply side of one channel, made by `make`.
 * @category models
 */
export interface ReplyWindow {
  /** Whether another request may be read: fewer than `maxInFlight` places are taken. */
  readonly hasRoom: () => boolean
  /** Whether every reserved reply has been handed to the channel. */
  readonly isEmpty: () => boolean
  /** Takes the next place in arrival order (the caller has checked `hasRoom`). */
  readonly reserve: () => Place
  /**
   * Gives `place` its reply and writes every reply that is now first in line.
   * `afterWrite` runs once this reply is handed to the channel.
   */
  readonly fill: (place: Place, reply: Reply, afterWrite?: () => void) => void
  /** Writes nothing more: later replies are dropped and their places freed at once. */
  readonly close: () => void
}

/**
 * How `make` writes replies.
 * @category models
 */
export interface ReplyWindowOptions {
  /** Places at most, that is requests read and not yet answered. */
  readonly maxInFlight: number
  /**
   * The TCP socket under the SSH connection. Replies are written with it corked
   * until the end of the tick: ssh2 turns a 256 KiB READ reply into eight
   * 32 KiB SSH packets, each its own socket write, and corking sends them (and
   * the other replies of the same tick) in one writev system call.
   */
  readonly transport: Pick<Writable, "cork" | "uncork">
  /** Told whenever places were freed. */
  readonly onRoom: () => void
}

/**
 * A window over `channel`, listening for its 'drain'.
 * @category constructors
 */
export const make = (channel: Writable, options: ReplyWindowOptions): ReplyWindow => {
  const { maxInFlight, onRoom, transport } = options
  let head: Place | undefined
  let tail: Place | undefined
  let taken = 0
  // The channel's buffer is full: hand it nothing until 'drain'.
  let blocked = false
  let closed = false
  const uncork = () => transport.uncork()

  const flush = () => {
    let freed = false
    let corked = false
    while (head !== undefined && head.reply !== undefined && (closed || !blocked)) {
      const place = head
      const reply = head.reply
      head = place.next
      if (head === undefined) tail = undefined
      taken--
      freed = true
      if (closed) {
        for (const packet of reply) release(packet)
        continue
      }
      if (!corked) {
        corked = true
        transport.cork()
        process.nextTick(uncork)
      }
      let flushed = true
      // ssh2 has copied a packet into its SSH packets once the write's callback runs.
      for (const packet of reply) flushed = channel.write(packet, () => release(packet))
      if (!flushed && !channel.destroyed) blocked = true
      place.afterWrite?.()
    }
    if (freed) onRoom()
  }

  channel.on("drain", () => {
    blocked = false
    flush()
  })

  return {
    hasRoom: () => taken < maxInFlight,
    isEmpty: () => taken === 0,
    reserve: () => {
      const place: Place = { reply: undefined, afterWrite: undefined, next: undefined }
      if (tail === undefined) head = place
      else tail.next = place
      tail = place
      taken++
      return place
    },
    fill: (place, reply, afterWrite) => {
      place.reply = reply
      place.afterWrite = afterWrite
      if (place === head) flush()
    },
    close: () => {
      closed = true
      flush()
    }
  }
}
