/**
 * The client side of a fuzzed SFTP session: raw `sftp` subsystem channels on
 * one SSH connection (a channel per case costs a round trip, a login per case
 * would cost a key exchange), and a strict parser of the replies a server may
 * send, so a property can say "every reply is well-formed and of the type its
 * request allows".
 */
import { Data, Deferred, Effect, type Scope } from "effect"
import ssh2 from "ssh2"
import { SftpPacket } from "../../src/protocols/sftp/Wire.js"

/** The server closed the channel (or the connection) before the awaited reply. */
export class ChannelClosed extends Data.TaggedError("ChannelClosed")<{}> {}

/** A raw SFTP channel: bytes in, whole reply packet bodies out. */
export interface SftpChannel {
  readonly send: (bytes: Uint8Array) => Effect.Effect<void>
  /** The next reply body (type byte first); fails with ChannelClosed once the channel is closed and drained. */
  readonly next: Effect.Effect<Buffer, ChannelClosed>
  readonly isClosed: () => boolean
  /** Ends the channel from our side and waits until it is closed. */
  readonly close: Effect.Effect<void>
}

/** Logs in with a password; the connection ends with the scope. `closed` completes when the server drops it. */
export const sshLogin = (port: number, username: string, password: string) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly client: ssh2.Client; readonly closed: Deferred.Deferred<void> }, Error>((resume) => {
      const client = new ssh2.Client()
      const closed = Deferred.makeUnsafe<void>()
      client.on("error", (error) => resume(Effect.fail(error)))
      client.on("close", () => Deferred.doneUnsafe(closed, Effect.void))
      client.on("ready", () => {
        // Small request/reply exchanges would otherwise wait on Nagle and delayed ACKs.
        client.setNoDelay(true)
        resume(Effect.succeed({ client, closed }))
      })
      client.connect({ host: "127.0.0.1", port, username, password, readyTimeout: 60_000 })
    }),
    ({ client }) => Effect.sync(() => client.end())
  )

/** Opens a new `sftp` subsystem channel on `client`; it is closed with the scope. */
export const openChannel = (client: ssh2.Client): Effect.Effect<SftpChannel, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<ssh2.ClientChannel, Error>((resume) =>
      void client.subsys("sftp", (error, channel) => (error ? resume(Effect.fail(error)) : resume(Effect.succeed(channel))))
    ),
    (channel) => Effect.sync(() => channel.destroy())
  ).pipe(Effect.map((channel) => {
    const chunks: Array<Buffer> = []
    let buffered = 0
    let ended = false
    let wake: (() => void) | undefined
    const closed = Deferred.makeUnsafe<void>()
    channel.on("data", (chunk: Buffer) => {
      chunks.push(chunk)
      buffered += chunk.length
      wake?.()
    })
    channel.stderr.resume()
    channel.on("error", () => {})
    channel.on("close", () => {
      ended = true
      Deferred.doneUnsafe(closed, Effect.void)
      wake?.()
    })
    const take = (): Buffer | undefined => {
      if (buffered < 4) return undefined
      if (chunks.length > 1) chunks.splice(0, chunks.length, Buffer.concat(chunks))
      const head = chunks[0]!
      const length = head.readUInt32BE(0)
      if (buffered < 4 + length) return undefined
      const body = head.subarray(4, 4 + length)
      const rest = head.subarray(4 + length)
      chunks.splice(0, 1, ...(rest.length > 0 ? [rest] : []))
      buffered -= 4 + length
      return body
    }
    const next: Effect.Effect<Buffer, ChannelClosed> = Effect.suspend(() => {
      const body = take()
      if (body) return Effect.succeed(body)
      if (ended) return Effect.fail(new ChannelClosed())
      return Effect.callback<void>((resume) => {
        wake = () => {
          wake = undefined
          resume(Effect.void)
        }
      }).pipe(Effect.andThen(next))
    })
    return {
      send: (bytes) => Effect.sync(() => void (!ended && channel.write(bytes))),
      next,
      isClosed: () => ended,
      close: Effect.suspend(() => {
        if (!ended) channel.end()
        return Deferred.await(closed)
      })
    } satisfies SftpChannel
  }))

// --- replies ----------------------------------------------------------------------------------

/** A reply, parsed and checked for its type's layout. */
export interface Reply {
  readonly type: number
  /** Undefined for VERSION. */
  readonly id: number | undefined
  /** For STATUS: the SSH_FX_* code. */
  readonly code?: number
}

/** Reads an SFTP reply body strictly: every field present, nothing left over (EXTENDED_REPLY excepted). */
export const parseReply = (body: Buffer): Reply | string => {
  let at = 0
  const need = (n: number) => body.length - at >= n
  const u32 = (): number | undefined => {
    if (!need(4)) return undefined
    const v = body.readUInt32BE(at)
    at += 4
    return v
  }
  const bytes = (): Buffer | undefined => {
    const n = u32()
    if (n === undefined || !need(n)) return undefined
    const b = body.subarray(at, at + n)
    at += n
    return b
  }
  const attrs = (): boolean => {
    const flags = u32()
    if (flags === undefined) return false
    const words = ((flags & 1) ? 2 : 0) + ((flags & 2) ? 2 : 0) + ((flags & 4) ? 1 : 0) + ((flags & 8) ? 2 : 0)
    if (!need(words * 4)) return false
    at += words * 4
    if (flags & 0x80000000) {
      const count = u32()
      if (count === undefined) return false
      for (let i = 0; i < count; i++) if (bytes() === undefined || bytes() === undefined) return false
    }
    return true
  }
  if (body.length < 1) return "empty reply"
  const type = body[0]!
  at = 1
  if (type === SftpPacket.Version) {
    const version = u32()
    if (version !== 3) return `VERSION ${version}`
    while (at < body.length) if (bytes() === undefined || bytes() === undefined) return "VERSION: broken extension pair"
    return { type, id: undefined }
  }
  const id = u32()
  if (id === undefined) return `type ${type}: no id`
  const done = (ok: boolean, what: string, extra: Partial<Reply> = {}): Reply | string =>
    ok && at === body.length ? { type, id, ...extra } : `${what}: malformed (${body.toString("hex").slice(0, 120)})`
  switch (type) {
    case SftpPacket.Status: {
      const code = u32()
      const message = bytes()
      const language = bytes()
      if (code === undefined || code > 8) return `STATUS code ${code}`
      return done(message !== undefined && language !== undefined, "STATUS", { code })
    }
    case SftpPacket.Handle: {
      const handle = bytes()
      return done(handle !== undefined && handle.length <= 256, "HANDLE")
    }
    case SftpPacket.Data:
      return done(bytes() !== undefined, "DATA")
    case SftpPacket.Name: {
      const count = u32()
      let ok = count !== undefined
      for (let i = 0; ok && i < count!; i++) ok = bytes() !== undefined && bytes() !== undefined && attrs()
      return done(ok, "NAME")
    }
    case SftpPacket.Attrs:
      return done(attrs(), "ATTRS")
    case SftpPacket.ExtendedReply:
      return { type, id }
    default:
      return `unexpected reply type ${type}`
  }
}

const S = SftpPacket

/**
 * The reply types a request body allows (STATUS always: any request may fail,
 * and a malformed one is BAD_MESSAGE). Extended requests are told apart by name.
 */
export const allowedReplies = (body: Buffer): ReadonlySet<number> => {
  const type = body[0]
  const only = (...types: Array<number>) => new Set([S.Status, ...types])
  switch (type) {
    case S.Open:
    case S.Opendir:
      return only(S.Handle)
    case S.Read:
      return only(S.Data)
    case S.Lstat:
    case S.Fstat:
    case S.Stat:
      return only(S.Attrs)
    case S.Readdir:
    case S.Realpath:
    case S.Readlink:
      return only(S.Name)
    case S.Extended: {
      if (body.length < 9) return only()
      const length = body.readUInt32BE(5)
      if (body.length - 9 < length) return only()
      const name = body.subarray(9, 9 + length).toString("latin1")
      if (["statvfs@openssh.com", "fstatvfs@openssh.com", "limits@openssh.com"].includes(name)) return only(S.ExtendedReply)
      if (["expand-path@openssh.com", "home-directory"].includes(name)) return only(S.Name)
      return only()
    }
    default:
      return only()
  }
}
