/**
 * Clients for the pre-authentication tests (PreAuthLimits.test.ts, Bans.test.ts):
 * raw TCP connections that say nothing from a chosen loopback address (Linux
 * routes all of 127/8 to lo, so 127.0.0.2, 127.0.0.3 … are distinct client IPs),
 * one SSH password attempt from a chosen address, and a way to wait until the
 * server's ConnectionGuard has caught up with a close, without timers.
 */
import { Context, Deferred, Effect, type Scope } from "effect"
import * as net from "node:net"
import ssh2 from "ssh2"
import { ConnectionGuard, type GuardStats } from "../../src/services/ConnectionGuard.js"
import { track } from "../utils/FtpRawClient.js"

/** A connection that sends nothing. */
export interface Silent {
  readonly socket: net.Socket
  /**
   * What the server did first: `ssh` (its identification line), `220` (an FTP
   * greeting), `421 …` (the refusal line), or `closed` (closed without a byte).
   */
  readonly first: Effect.Effect<string>
  /** Completes when the server closed the connection. */
  readonly closed: Effect.Effect<void>
  readonly isClosed: () => boolean
}

/** Opens a connection from `localAddress` to `port` that never sends a byte; destroyed with the scope. */
export const silent = (port: number, localAddress = "127.0.0.1"): Effect.Effect<Silent, never, Scope.Scope> =>
  Effect.gen(function*() {
    const socket = yield* track(net.connect({ host: "127.0.0.1", port, localAddress }))
    const first = Deferred.makeUnsafe<string>()
    const closed = Deferred.makeUnsafe<void>()
    let received = ""
    socket.on("data", (chunk: Buffer) => {
      received += chunk.toString("latin1")
      if (!received.includes("\r\n")) return
      const line = received.slice(0, received.indexOf("\r\n"))
      Deferred.doneUnsafe(first, Effect.succeed(line.startsWith("SSH-2.0-") ? "ssh" : line.startsWith("220") ? "220" : line))
    })
    socket.once("close", () => {
      Deferred.doneUnsafe(first, Effect.succeed(received === "" ? "closed" : received))
      Deferred.doneUnsafe(closed, Effect.void)
    })
    return { socket, first: Deferred.await(first), closed: Deferred.await(closed), isClosed: () => Deferred.isDoneUnsafe(closed) }
  })

/** Opens `count` silent connections at once and waits for the server's first answer on each. */
export const silentMany = (port: number, count: number, localAddress: (i: number) => string) =>
  Effect.gen(function*() {
    const connections = yield* Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) => silent(port, localAddress(i)))
    const firsts = yield* Effect.forEach(connections, (c) => c.first, { concurrency: "unbounded" })
    return connections.map((connection, i) => ({ connection, first: firsts[i]! }))
  })

/** The guard's numbers on a running test server. */
export const guardStats = (context: Context.Context<ConnectionGuard>): Effect.Effect<GuardStats> =>
  Context.get(context, ConnectionGuard).stats

/** One turn of the event loop (I/O callbacks run), without any timer. */
const turn = Effect.callback<void>((resume) => void setImmediate(() => resume(Effect.void)))

/** A few turns of the event loop: lets the server react to what just happened, before checking that it did not. */
export const settle = Effect.repeat(turn, { times: 20 })

/** Waits, turn by turn, until `condition` holds (the test's own timeout bounds it). */
export const eventually = <E, R>(condition: Effect.Effect<boolean, E, R>): Effect.Effect<void, E, R> =>
  Effect.gen(function*() {
    while (!(yield* condition)) yield* turn
  })

/** What one SSH connection's password attempt came to. */
export interface SshAttempt {
  readonly loggedIn: boolean
  /** The server closed the connection before this client did. */
  readonly closedByServer: boolean
  /** The connection got as far as authentication (the server sent its identification and completed the key exchange). */
  readonly handshaked: boolean
}

/**
 * One SSH connection from `localAddress`: "none", then `passwords` one by one
 * until one works, the server closes, or they run out.
 */
export const sshPasswords = (port: number, username: string, passwords: ReadonlyArray<string>, localAddress = "127.0.0.1") =>
  Effect.callback<SshAttempt>((resume) => {
    const client = new ssh2.Client()
    let loggedIn = false
    let handshaked = false
    let ending = false
    let next = 0
    client.on("error", () => {})
    client.on("handshake", () => void (handshaked = true))
    client.on("ready", () => {
      loggedIn = true
      ending = true
      client.end()
    })
    client.on("close", () => resume(Effect.succeed({ loggedIn, closedByServer: !ending, handshaked })))
    client.connect({
      host: "127.0.0.1",
      port,
      localAddress,
      username,
      readyTimeout: 60_000,
      authHandler: (methodsLeft, _partial, done) => {
        if (methodsLeft === null) return done({ type: "none", username })
        const password = passwords[next++]
        if (password === undefined) {
          ending = true
          client.end()
          return
        }
        done({ type: "password", username, password })
      }
    })
  })

/** An SSH connection held in the middle of authentication, after "none" was answered. */
export interface PendingSsh {
  /** Completes once the server answered "none" (key exchange done, waiting for a credential). */
  readonly ready: Effect.Effect<void>
  /** Sends one password attempt; completes when the connection closes (a login ends it from this side). */
  attempt(password: string): Effect.Effect<SshAttempt>
}

/** Connects from `localAddress` as `username`, sends "none" and waits with the next attempt until told. */
export const sshPending = (port: number, username: string, localAddress = "127.0.0.1"): Effect.Effect<PendingSsh> =>
  Effect.sync(() => {
    const client = new ssh2.Client()
    const ready = Deferred.makeUnsafe<void>()
    const result = Deferred.makeUnsafe<SshAttempt>()
    let give: ((method: ssh2.AnyAuthMethod) => void) | undefined
    let loggedIn = false
    let ending = false
    let handshaked = false
    client.on("error", () => {})
    client.on("handshake", () => void (handshaked = true))
    client.on("ready", () => {
      loggedIn = true
      ending = true
      client.end()
    })
    client.on("close", () => Deferred.doneUnsafe(result, Effect.succeed({ loggedIn, closedByServer: !ending, handshaked })))
    client.connect({
      host: "127.0.0.1",
      port,
      localAddress,
      username,
      readyTimeout: 60_000,
      authHandler: (methodsLeft, _partial, done) => {
        if (methodsLeft === null) return done({ type: "none", username })
        // Called again: the attempt was refused. Wait for the server to decide about the connection.
        if (give !== undefined) return
        give = done
        Deferred.doneUnsafe(ready, Effect.void)
      }
    })
    return {
      ready: Deferred.await(ready),
      attempt: (password) =>
        Effect.suspend(() => {
          give?.({ type: "password", username, password })
          return Deferred.await(result)
        })
    }
  })
