/**
 * The ConnectionGuard service: who may open a connection and keep trying to log
 * in, before any credential was accepted. One guard serves SFTP and FTP
 * together, so its limits and bans hold across both protocols.
 *
 * Two defences, both about unauthenticated peers (an authenticated session is
 * never counted, refused or closed by the guard):
 * - Caps on connections that have not authenticated yet, in all and per client
 *   IP (OpenSSH's MaxStartups and PerSourceMaxStartups). A listener asks `admit`
 *   at accept; a connection over a cap is closed before any protocol work (no SSH
 *   key exchange, no TLS handshake; FTP gets one 421 line). The slot it holds is
 *   freed when it authenticates or closes, whichever comes first.
 * - Bans (fail2ban in the server): rejected credentials are counted per client
 *   IP, and an IP with `maxFailures` of them within `window` is refused for
 *   `duration`: new connections at accept, and further login attempts on its
 *   connections that are still unauthenticated.
 *
 * Every time comes from the Clock, so tests drive windows and bans with TestClock.
 */
import { Context, type Effect } from "effect"

/**
 * Why a connection was refused at accept.
 * - `Banned`: the client IP is banned.
 * - `TooManyPreAuth`: `maxPreAuthConnections` unauthenticated connections are open.
 * - `TooManyPreAuthFromIp`: `maxPreAuthConnectionsPerIp` of them come from this IP.
 * @category models
 */
export type RefusalReason = "Banned" | "TooManyPreAuth" | "TooManyPreAuthFromIp"

/**
 * The place a connection holds among the unauthenticated ones. Releasing it
 * twice is harmless; the listener releases it when the session authenticates
 * and again when it ends.
 * @category models
 */
export interface PreAuthSlot {
  readonly release: Effect.Effect<void>
}

/**
 * The guard's answer at accept.
 * @category models
 */
export type Admission =
  | { readonly _tag: "Admitted"; readonly slot: PreAuthSlot }
  | { readonly _tag: "Refused"; readonly reason: RefusalReason }

/**
 * A ban in force.
 * @category models
 */
export interface Ban {
  /** The banned address (IPv4-mapped IPv6 addresses are given as IPv4). */
  readonly clientIp: string
  /** When it ends, in Clock milliseconds since the epoch. */
  readonly untilMs: number
}

/**
 * What the guard holds right now, for monitoring and tests.
 * @category models
 */
export interface GuardStats {
  /** Connections not authenticated yet. */
  readonly preAuthConnections: number
  /** Client IPs with at least one such connection. */
  readonly preAuthAddresses: number
  /** Client IPs with recent failures, not banned (bounded by the guard's table size). */
  readonly trackedAddresses: number
  /** Bans in the table (bounded too; expired ones leave lazily). */
  readonly bans: number
  /** Connections refused at accept since the start, per reason. */
  readonly refused: Readonly<Record<RefusalReason, number>>
}

/**
 * Pre-authentication limits and bans, shared by every protocol of a server.
 * @category services
 */
export class ConnectionGuard extends Context.Service<ConnectionGuard, {
  /**
   * Called by a listener for each accepted TCP connection, before anything is
   * sent or read. Refused: the listener closes the socket (FTP first says 421).
   */
  admit(clientIp: string): Effect.Effect<Admission>
  /**
   * Whether `clientIp` is banned now. SFTP authentication requests and FTP PASS
   * check it first: a banned client's attempt is refused without checking the
   * credential, and its connection is closed.
   */
  isBanned(clientIp: string): Effect.Effect<boolean>
  /**
   * Counts one rejected credential of `clientIp`: a wrong password, an unknown or
   * disabled user, a signed public key that is refused. A public-key query (no
   * signature) is not a failure. Returns true when `clientIp` is banned now; the
   * caller then closes the connection.
   */
  recordFailure(clientIp: string): Effect.Effect<boolean>
  /** The bans in force. */
  readonly bans: Effect.Effect<ReadonlyArray<Ban>>
  /** Lifts the ban on `clientIp` and forgets its failures; false when it was not banned. */
  unban(clientIp: string): Effect.Effect<boolean>
  readonly stats: Effect.Effect<GuardStats>
}>()("portcullis/services/ConnectionGuard") {}

/**
 * The key the guard counts a client under: IPv4-mapped IPv6 (`::ffff:1.2.3.4`)
 * is the IPv4 address, so a dual-stack listener and an IPv4 one agree.
 * @category constructors
 */
export const clientKey = (clientIp: string): string => clientIp.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, "")
