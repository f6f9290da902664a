/**
 * The FTP control connection: command lines in, replies out, and the switch to
 * TLS for AUTH TLS.
 *
 * Lines come through the bounded LineReader (no line over the limit, never split
 * into two commands; Telnet IAC handled). A client that floods commands faster
 * than they are served is paused, so memory stays bounded.
 *
 * STARTTLS injection (Postfix CVE-2011-0411, Pure-FTPd CVE-2011-1575): after
 * AUTH TLS the plaintext reader is detached first, and if anything at all was
 * received after the AUTH line, the connection is closed instead of upgraded.
 * Bytes that arrive later belong to the TLS handshake, where injected plaintext
 * can only make the handshake fail.
 */
import { Data, Effect, Queue, Result } from "effect"
import type * as net from "node:net"
import * as tls from "node:tls"
import { makeLineReader } from "./LineReader.js"
import { formatReply } from "./Replies.js"

/**
 * The control connection broke the protocol or went away.
 * @category errors
 */
export class ControlClosed extends Data.TaggedError("ControlClosed")<{
  readonly reason: "Eof" | "LineTooLong" | "SocketError" | "PipelinedAfterAuthTls" | "TlsHandshakeFailed"
}> {}

type Incoming = { readonly _tag: "Line"; readonly line: string } | { readonly _tag: "End"; readonly reason: ControlClosed["reason"] }

/** Lines queued before the socket is paused. */
const highWater = 64

/**
 * One control connection.
 * @category models
 */
export interface ControlChannel {
  readonly remoteAddress: string
  readonly localAddress: string
  readonly isTls: () => boolean
  /** The current socket (plain, or TLS after AUTH TLS / on the implicit port). */
  readonly socket: () => net.Socket
  /** The next command line; fails when the connection ends or breaks the protocol. */
  readonly nextLine: Effect.Effect<string, ControlClosed>
  /** Sends one reply (multi-line when `text` is an array), waiting while the client does not read. */
  send(code: number, text: string | ReadonlyArray<string>): Effect.Effect<void>
  /** Sends a last reply without waiting (421 on timeout: the session is closed right after). */
  sendNow(code: number, text: string): Effect.Effect<void>
  /**
   * Answers 234 and upgrades to TLS; fails with PipelinedAfterAuthTls when any
   * byte followed the AUTH TLS line, and with TlsHandshakeFailed after a bad handshake.
   */
  startTls(options: tls.TLSSocketOptions): Effect.Effect<void, ControlClosed>
}

const attach = (socket: net.Socket, queue: Queue.Queue<Incoming>, maxLineBytes: number) => {
  const reader = makeLineReader({ maxLineBytes })
  let ended = false
  const end = (reason: ControlClosed["reason"]) => {
    if (ended) return
    ended = true
    Queue.offerUnsafe(queue, { _tag: "End", reason })
  }
  const onData = (chunk: Buffer) => {
    const lines = reader.push(chunk)
    if (Result.isFailure(lines)) return end("LineTooLong")
    for (const line of lines.success) Queue.offerUnsafe(queue, { _tag: "Line", line })
    if (Queue.sizeUnsafe(queue) >= highWater) socket.pause()
  }
  const onEnd = () => end("Eof")
  const onError = () => end("SocketError")
  socket.on("data", onData)
  socket.on("end", onEnd)
  socket.on("close", onEnd)
  socket.on("error", onError)
  return {
    reader,
    detach: () => {
      socket.off("data", onData)
      socket.off("end", onEnd)
      socket.off("close", onEnd)
      socket.off("error", onError)
      socket.pause()
    }
  }
}

/**
 * Wraps `socket` (already TLS on the implicit-FTPS port). `maxLineBytes` bounds command lines.
 * @category constructors
 */
export const make = (socket: net.Socket, options: { readonly maxLineBytes: number }) =>
  Effect.gen(function*() {
    const queue = yield* Queue.unbounded<Incoming>()
    let current = socket
    let tlsActive = socket instanceof tls.TLSSocket
    let attached = attach(current, queue, options.maxLineBytes)
    // Read on only when few commands wait and the client is also reading its replies.
    const maybeResume = () => {
      if (Queue.sizeUnsafe(queue) < highWater / 4 && current.isPaused() && current.writableLength === 0) current.resume()
    }
    socket.on("drain", maybeResume)
    const writeNow = (bytes: Buffer) => Effect.sync(() => void (current.writable && current.write(bytes)))
    // A client that sends commands but never reads the replies must not make the
    // server buffer them: the next reply waits until the socket drains (or closes),
    // and meanwhile no command is read, so the idle timeout ends such a session.
    const write = (bytes: Buffer) =>
      Effect.callback<void>((resume) => {
        const socket = current
        if (!socket.writable || socket.write(bytes)) return resume(Effect.void)
        const done = () => {
          socket.off("drain", done)
          socket.off("close", done)
          resume(Effect.void)
        }
        socket.on("drain", done)
        socket.on("close", done)
      })

    const nextLine: Effect.Effect<string, ControlClosed> = Queue.take(queue).pipe(
      Effect.flatMap((incoming) => {
        maybeResume()
        return incoming._tag === "Line" ? Effect.succeed(incoming.line) : Effect.fail(new ControlClosed({ reason: incoming.reason }))
      })
    )

    const startTls = (tlsOptions: tls.TLSSocketOptions) =>
      Effect.gen(function*() {
        attached.detach()
        const pipelined = attached.reader.takeRemainder().length > 0 || Queue.sizeUnsafe(queue) > 0
        if (pipelined) return yield* new ControlClosed({ reason: "PipelinedAfterAuthTls" })
        yield* writeNow(formatReply(234, "AUTH TLS successful"))
        const secure = new tls.TLSSocket(current, { ...tlsOptions, isServer: true })
        yield* Effect.callback<void, ControlClosed>((resume) => {
          secure.once("secure", () => resume(Effect.void))
          secure.once("error", () => resume(Effect.fail(new ControlClosed({ reason: "TlsHandshakeFailed" }))))
          secure.once("close", () => resume(Effect.fail(new ControlClosed({ reason: "TlsHandshakeFailed" }))))
        })
        current = secure
        secure.on("drain", maybeResume)
        tlsActive = true
        attached = attach(secure, queue, options.maxLineBytes)
      })

    return {
      remoteAddress: socket.remoteAddress ?? "unknown",
      localAddress: socket.localAddress ?? "127.0.0.1",
      isTls: () => tlsActive,
      socket: () => current,
      nextLine,
      send: (code, text) => write(formatReply(code, text)),
      sendNow: (code, text) => writeNow(formatReply(code, text)),
      startTls
    } satisfies ControlChannel
  })
