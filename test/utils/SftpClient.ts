/**
 * ssh2's SFTP client wrapped for Effect tests: connect with a password or a key,
 * and call any client method as an Effect.
 */
import { Data, Effect } from "effect"
import ssh2 from "ssh2"

export interface Connected {
  readonly client: ssh2.Client
  readonly sftp: ssh2.SFTPWrapper
}

export type Auth = { readonly password: string } | { readonly privateKey: string | Buffer }

/** Connects and opens the sftp subsystem; disconnects with the scope. */
export const connect = (port: number, username: string, auth: Auth) =>
  Effect.acquireRelease(
    Effect.callback<Connected, Error>((resume) => {
      const client = new ssh2.Client()
      client.on("error", (error) => resume(Effect.fail(error)))
      client.on("ready", () =>
        client.sftp((error, sftp) => (error ? resume(Effect.fail(error)) : resume(Effect.succeed({ client, sftp })))))
      client.connect({ host: "127.0.0.1", port, username, ...auth, readyTimeout: 20_000 })
    }),
    ({ client }) => Effect.sync(() => client.end())
  )

/** Only the handshake and authentication: resolves when ready, fails when refused. */
export const login = (port: number, username: string, auth: Auth) =>
  Effect.acquireRelease(
    Effect.callback<ssh2.Client, Error>((resume) => {
      const client = new ssh2.Client()
      client.on("error", (error) => resume(Effect.fail(error)))
      client.on("ready", () => resume(Effect.succeed(client)))
      client.connect({ host: "127.0.0.1", port, username, ...auth, readyTimeout: 20_000 })
    }),
    (client) => Effect.sync(() => client.end())
  )

/** Calls an ssh2 SFTP method that takes a node-style callback as its last argument. */
export const call = <A = void>(f: (cb: (error: Error | null | undefined, value?: A) => void) => void) =>
  Effect.callback<A, SftpStatusError>((resume) =>
    f((error, value) => {
      if (error) resume(Effect.fail(new SftpStatusError({ code: (error as Error & { code?: number }).code ?? -1, message: error.message })))
      else resume(Effect.succeed(value as A))
    }))

/** A status error as the client saw it: `code` is the SSH_FX_* number. */
export class SftpStatusError extends Data.TaggedError("SftpStatusError")<{ readonly code: number; readonly message: string }> {}

/**
 * A raw `sftp` subsystem channel: send any bytes, read whole reply packets.
 * For malformed-input tests and for requests ssh2's client cannot make.
 */
export interface RawChannel {
  readonly send: (bytes: Uint8Array) => Effect.Effect<void>
  /** The next reply packet's body (type byte first). Fails when the channel closes first. */
  readonly next: Effect.Effect<Buffer, Error>
  /** Completes when the server closes the channel. */
  readonly closed: Effect.Effect<void>
  /** Closes this channel; the SSH connection stays open. */
  readonly close: Effect.Effect<void>
}

export const rawChannel = (port: number, username: string, auth: Auth) =>
  Effect.gen(function*() {
    const client = yield* login(port, username, auth)
    const channel = yield* Effect.callback<ssh2.ClientChannel, Error>((resume) =>
      void client.subsys("sftp", (error, channel) => (error ? resume(Effect.fail(error)) : resume(Effect.succeed(channel)))))
    let buffered = Buffer.alloc(0)
    let ended = false
    const waiters: Array<() => void> = []
    const wake = () => waiters.splice(0).forEach((w) => w())
    channel.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      wake()
    })
    channel.on("close", () => {
      ended = true
      wake()
    })
    const take = (): Buffer | undefined => {
      if (buffered.length < 4) return undefined
      const length = buffered.readUInt32BE(0)
      if (buffered.length < 4 + length) return undefined
      const body = buffered.subarray(4, 4 + length)
      buffered = buffered.subarray(4 + length)
      return body
    }
    const next: Effect.Effect<Buffer, Error> = Effect.suspend(() => {
      const body = take()
      if (body) return Effect.succeed(body)
      if (ended) return Effect.fail(new Error("channel closed"))
      return Effect.callback<void>((resume) => void waiters.push(() => resume(Effect.void))).pipe(Effect.andThen(next))
    })
    const channelClosed = Effect.callback<void>((resume) => {
      if (ended) return resume(Effect.void)
      channel.once("close", () => resume(Effect.void))
    })
    return {
      send: (bytes: Uint8Array) => Effect.sync(() => void channel.write(bytes)),
      next,
      closed: channelClosed,
      close: Effect.sync(() => void channel.close())
    } satisfies RawChannel
  })

/** Builds a packet: uint32 length, type, then the given fields (numbers are uint32, strings are SSH strings). */
export const packet = (type: number, ...fields: ReadonlyArray<number | string | Buffer>): Buffer => {
  const parts = fields.map((f) => {
    if (typeof f === "number") {
      const b = Buffer.alloc(4)
      b.writeUInt32BE(f >>> 0)
      return b
    }
    const bytes = typeof f === "string" ? Buffer.from(f) : f
    const len = Buffer.alloc(4)
    len.writeUInt32BE(bytes.length)
    return Buffer.concat([len, bytes])
  })
  const body = Buffer.concat([Buffer.from([type]), ...parts])
  const head = Buffer.alloc(4)
  head.writeUInt32BE(body.length)
  return Buffer.concat([head, body])
}

/**
 * Opens `path` with `pflags` (SSH_FXF_*) over a raw channel as request `id`,
 * and returns its handle; fails when the reply is not SSH_FXP_HANDLE.
 */
export const openHandle = (raw: RawChannel, id: number, path: string, pflags: number) =>
  Effect.gen(function*() {
    yield* raw.send(packet(3, id, path, pflags, 0))
    const opened = yield* raw.next
    if (opened[0] !== 102) return yield* Effect.fail(new Error(`OPEN ${path}: reply type ${opened[0]}, not HANDLE`))
    return opened.subarray(9, 9 + opened.readUInt32BE(5))
  })
