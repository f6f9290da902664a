/**
 * The passive-mode port range of an FTP listener, shared by all its sessions.
 *
 * PASV/EPSV tell the client which port to connect to, so a predictable port lets
 * another host race the real client to it (passive port stealing). Ports are
 * therefore picked uniformly at random (crypto.randomInt) among those of the
 * range that this server has not reserved already. A reservation belongs to a
 * Scope, the PASV listener's, and returns to the pool when that scope closes,
 * whatever way the transfer ended.
 *
 * Without a range the pool hands out port 0 (the OS picks an ephemeral port) and
 * only counts reservations, so per-session caps work the same either way.
 * Exhaustion fails with `PortsExhausted`; the session answers 425. Capping how
 * many ports one session or one client IP may hold is the caller's business,
 * from `reserved()`.
 */
import { Data, Effect, Result, type Scope } from "effect"
import * as crypto from "node:crypto"

/**
 * An inclusive range of TCP ports, 1024 ≤ low ≤ high ≤ 65535.
 * @category models
 */
export interface PortRange {
  readonly low: number
  readonly high: number
}

/**
 * A port range that is not "low-high" with 1024 ≤ low ≤ high ≤ 65535.
 * @category errors
 */
export class InvalidPortRange extends Data.TaggedError("InvalidPortRange")<{
  readonly input: string
}> {
  override get message(): string {
    return `invalid passive port range ${JSON.stringify(this.input)}: expected "low-high" with 1024 <= low <= high <= 65535`
  }
}

/**
 * Every port of the range is reserved by this server.
 * @category errors
 */
export class PortsExhausted extends Data.TaggedError("PortsExhausted")<{
  /** How many ports the range has. */
  readonly size: number
}> {
  override get message(): string {
    return `all ${this.size} passive ports are in use`
  }
}

/**
 * Parses "50000-50100" (no spaces, no signs, nothing trailing).
 * @category constructors
 */
export const parsePortRange = (input: string): Result.Result<PortRange, InvalidPortRange> => {
  const match = /^(\d{1,5})-(\d{1,5})$/.exec(input)
  if (!match) return Result.fail(new InvalidPortRange({ input }))
  const low = Number(match[1])
  const high = Number(match[2])
  // Ports below 1024 are privileged, and a range that would include them is a configuration mistake.
  if (low < 1024 || low > high || high > 65535) return Result.fail(new InvalidPortRange({ input }))
  return Result.succeed({ low, high })
}

/**
 * The passive ports of one listener.
 * @category models
 */
export interface PassivePortPool {
  /** The configured range; undefined means "any port" (reservations are port 0). */
  readonly range: PortRange | undefined
  /**
   * Reserves a random port of the range that no other reservation of this pool
   * holds, until the scope closes. Port 0 without a range. The port may still be
   * taken by another process: the caller binds it and tries another on EADDRINUSE.
   */
  readonly reserve: Effect.Effect<number, PortsExhausted, Scope.Scope>
  /** How many reservations are held right now. */
  reserved(): number
}

/** Random tries before falling back to a scan; a mostly empty range never needs the scan. */
const randomTries = 16

const makeRangePool = (range: PortRange): PassivePortPool => {
  const size = range.high - range.low + 1
  const taken = new Set<number>()
  const pick = (): number | undefined => {
    if (taken.size >= size) return undefined
    for (let i = 0; i < randomTries; i++) {
      const port = range.low + crypto.randomInt(size)
      if (!taken.has(port)) return port
    }
    // Mostly full: choose uniformly among the free ports, so the pick stays unpredictable.
    let index = crypto.randomInt(size - taken.size)
    for (let port = range.low; port <= range.high; port++) {
      if (taken.has(port)) continue
      if (index === 0) return port
      index--
    }
    return undefined
  }
  const reserve = Effect.acquireRelease(
    Effect.suspend(() => {
      const port = pick()
      if (port === undefined) return Effect.fail(new PortsExhausted({ size }))
      taken.add(port)
      return Effect.succeed(port)
    }),
    (port) => Effect.sync(() => taken.delete(port))
  )
  return { range, reserve, reserved: () => taken.size }
}

const makeAnyPortPool = (): PassivePortPool => {
  let held = 0
  const reserve = Effect.acquireRelease(
    Effect.sync(() => {
      held++
      return 0
    }),
    () => Effect.sync(() => void held--)
  )
  return { range: undefined, reserve, reserved: () => held }
}

/**
 * A pool over `range` ("50000-50100" or a parsed range), or over any port when
 * `range` is undefined. The config schema has already validated a string range,
 * so an invalid one here is a bug and throws.
 * @category constructors
 */
export const makePassivePortPool = (range?: string | PortRange | undefined): PassivePortPool => {
  if (range === undefined) return makeAnyPortPool()
  if (typeof range !== "string") {
    const text = `${range.low}-${range.high}`
    if (Result.isFailure(parsePortRange(text))) throw new InvalidPortRange({ input: text })
    return makeRangePool(range)
  }
  const parsed = parsePortRange(range)
  if (Result.isFailure(parsed)) throw parsed.failure
  return makeRangePool(parsed.success)
}
