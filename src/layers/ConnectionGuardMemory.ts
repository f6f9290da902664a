/**
 * The ConnectionGuard service on in-process tables: the count of unauthenticated
 * connections (in all and per client IP), recent failures per IP, and bans.
 *
 * Memory is bounded whatever a flood does. The per-IP connection counts hold
 * only addresses with a connection open (at most `maxPreAuthConnections` of
 * them). The failure and ban tables hold at most `maxTrackedAddresses` entries
 * each: a JavaScript Map iterates in insertion order, and an entry is re-inserted
 * at every failure, so the first entry is always the one that failed longest ago
 * (and the first ban the one that ends first). Expired entries are dropped from
 * the front whenever an entry is added, and when a table is still full its
 * oldest entry makes room. Nothing sweeps on a timer.
 *
 * Refusals at accept are logged at most once per `refusalLogInterval`, with the
 * counts since the previous line, so a flood of 10,000 connections writes a
 * handful of lines, not 10,000. A ban is one line, `event: "client_banned"`.
 *
 * The state lives in this process: several server nodes do not share bans.
 */
import { Clock, Duration, Effect, Layer } from "effect"
import {
  type Admission,
  type Ban,
  clientKey,
  ConnectionGuard,
  type GuardStats,
  type RefusalReason
} from "../services/ConnectionGuard.js"

/**
 * Limits of the guard; 0 turns a cap (or bans) off. They cannot change while
 * the server runs.
 * @category models
 */
export interface ConnectionGuardOptions {
  /** Unauthenticated connections open at once, SFTP and FTP together. Default 256; 0: no cap. */
  readonly maxPreAuthConnections?: number
  /** Unauthenticated connections open at once from one client IP. Default 32; 0: no cap. */
  readonly maxPreAuthConnectionsPerIp?: number
  readonly bans?: {
    /** Rejected credentials within `window` that ban an IP. Default 10; 0: no bans. */
    readonly maxFailures?: number
    /** How long a failure counts. Default "1 minute"; zero: no bans. */
    readonly window?: Duration.Input
    /** How long a ban lasts. Default "15 minutes"; zero: no bans. */
    readonly duration?: Duration.Input
  }
  /** Entries of the failure table and of the ban table, each. Default 10,000. */
  readonly maxTrackedAddresses?: number
  /** At most one "connections refused" log line per interval. Default "10 seconds". */
  readonly refusalLogInterval?: Duration.Input
}

const noRefusals = (): Record<RefusalReason, number> => ({ Banned: 0, TooManyPreAuth: 0, TooManyPreAuthFromIp: 0 })

/** Deletes the first entries of `table` while `expired` says so (entries are in time order). */
const dropExpired = <V>(table: Map<string, V>, expired: (value: V) => boolean) => {
  for (const [key, value] of table) {
    if (!expired(value)) return
    table.delete(key)
  }
}

/** Deletes the oldest entries until there is room for one more. */
const makeRoom = <V>(table: Map<string, V>, capacity: number) => {
  for (const key of table.keys()) {
    if (table.size < capacity) return
    table.delete(key)
  }
}

/**
 * Builds the guard.
 * @category constructors
 */
export const make = (options: ConnectionGuardOptions = {}): Effect.Effect<ConnectionGuard["Service"]> =>
  Effect.sync(() => {
    const maxPreAuth = options.maxPreAuthConnections ?? 256
    const maxPreAuthPerIp = options.maxPreAuthConnectionsPerIp ?? 32
    const maxFailures = options.bans?.maxFailures ?? 10
    const windowMs = Duration.toMillis(options.bans?.window ?? "1 minute")
    const banMs = Duration.toMillis(options.bans?.duration ?? "15 minutes")
    const bansOn = maxFailures > 0 && windowMs > 0 && banMs > 0
    const capacity = Math.max(1, options.maxTrackedAddresses ?? 10_000)
    const logIntervalMs = Duration.toMillis(options.refusalLogInterval ?? "10 seconds")

    let preAuth = 0
    const preAuthByIp = new Map<string, number>()
    /** Times of recent failures (at most maxFailures), per IP; in the order of each IP's last failure. */
    const failures = new Map<string, Array<number>>()
    /** When each ban ends; in the order bans were made, which is the order they end. */
    const banned = new Map<string, number>()
    const refused = noRefusals()
    let unlogged = noRefusals()
    let lastLogMs: number | undefined

    const isBannedAt = (key: string, now: number) => {
      const until = banned.get(key)
      if (until === undefined) return false
      if (now < until) return true
      banned.delete(key)
      return false
    }

    // The addresses behind the counts of the next refusal line; a flood from many
    // addresses is reported as at least `maxLoggedAddresses` of them.
    let unloggedAddresses = new Set<string>()
    const maxLoggedAddresses = 1000

    const refuse = (reason: RefusalReason, key: string, now: number): Effect.Effect<Admission> => {
      refused[reason]++
      unlogged[reason]++
      if (unloggedAddresses.size < maxLoggedAddresses) unloggedAddresses.add(key)
      const refusal: Admission = { _tag: "Refused", reason }
      if (lastLogMs !== undefined && now - lastLogMs < logIntervalMs) return Effect.succeed(refusal)
      const counts = unlogged
      const addresses = unloggedAddresses.size
      unlogged = noRefusals()
      unloggedAddresses = new Set()
      lastLogMs = now
      return Effect.logWarning("connections refused before authentication").pipe(
        Effect.annotateLogs({
          event: "connections_refused",
          // The counts cover every address since the last line: name the last one and how many there were.
          lastClientIp: key,
          addresses,
          banned: counts.Banned,
          tooManyPreAuth: counts.TooManyPreAuth,
          tooManyPreAuthFromIp: counts.TooManyPreAuthFromIp
        }),
        Effect.as(refusal)
      )
    }

    const slotFor = (key: string) => {
      let held = true
      return {
        release: Effect.sync(() => {
          if (!held) return
          held = false
          preAuth--
          const left = (preAuthByIp.get(key) ?? 1) - 1
          if (left > 0) preAuthByIp.set(key, left)
          else preAuthByIp.delete(key)
        })
      }
    }

    const admit = (clientIp: string) =>
      Effect.flatMap(Clock.currentTimeMillis, (now): Effect.Effect<Admission> => {
        const key = clientKey(clientIp)
        if (bansOn && isBannedAt(key, now)) return refuse("Banned", key, now)
        if (maxPreAuth > 0 && preAuth >= maxPreAuth) return refuse("TooManyPreAuth", key, now)
        const fromIp = preAuthByIp.get(key) ?? 0
        if (maxPreAuthPerIp > 0 && fromIp >= maxPreAuthPerIp) return refuse("TooManyPreAuthFromIp", key, now)
        preAuth++
        preAuthByIp.set(key, fromIp + 1)
        return Effect.succeed({ _tag: "Admitted", slot: slotFor(key) })
      })

    const recordFailure = (clientIp: string) =>
      Effect.flatMap(Clock.currentTimeMillis, (now): Effect.Effect<boolean> => {
        if (!bansOn) return Effect.succeed(false)
        const key = clientKey(clientIp)
        if (isBannedAt(key, now)) return Effect.succeed(true)
        const recent = (failures.get(key) ?? []).filter((at) => now - at < windowMs)
        recent.push(now)
        failures.delete(key)
        dropExpired(failures, (times) => now - times[times.length - 1]! >= windowMs)
        if (recent.length < maxFailures) {
          makeRoom(failures, capacity)
          failures.set(key, recent)
          return Effect.succeed(false)
        }
        const until = now + banMs
        dropExpired(banned, (end) => end <= now)
        makeRoom(banned, capacity)
        banned.set(key, until)
        return Effect.logWarning("client banned after repeated login failures").pipe(
          Effect.annotateLogs({ event: "client_banned", clientIp: key, until: new Date(until).toISOString(), failures: recent.length }),
          Effect.as(true)
        )
      })

    return ConnectionGuard.of({
      admit,
      isBanned: (clientIp) => Effect.map(Clock.currentTimeMillis, (now) => bansOn && isBannedAt(clientKey(clientIp), now)),
      recordFailure,
      bans: Effect.map(Clock.currentTimeMillis, (now) => {
        dropExpired(banned, (end) => end <= now)
        return Array.from(banned, ([clientIp, untilMs]): Ban => ({ clientIp, untilMs }))
      }),
      unban: (clientIp) =>
        Effect.map(Clock.currentTimeMillis, (now) => {
          const key = clientKey(clientIp)
          const wasBanned = isBannedAt(key, now)
          banned.delete(key)
          failures.delete(key)
          return wasBanned
        }),
      stats: Effect.sync((): GuardStats => ({
        preAuthConnections: preAuth,
        preAuthAddresses: preAuthByIp.size,
        trackedAddresses: failures.size,
        bans: banned.size,
        refused: { ...refused }
      }))
    })
  })

/**
 * The guard as a layer.
 * @category layers
 */
export const layer = (options: ConnectionGuardOptions = {}): Layer.Layer<ConnectionGuard> =>
  Layer.effect(ConnectionGuard, make(options))
