/**
 * The permission check, written once for both protocols.
 *
 * Every file operation of a session passes through here before it reaches the
 * jail: `canRead` gates file contents and directory listings, `canWrite` gates
 * every change, and ownership and time changes need the server-wide
 * `allowChown` / `allowChtimes` on top. Looking at attributes (stat, size,
 * modification time, realpath) is allowed to every user, write-only ones
 * included: upload clients stat before they write (to resume, to avoid
 * clobbering), and a write-only drop box is useless without it.
 */
import { Data, Effect } from "effect"
import type { OpenMode, SetAttributes } from "../../services/Jail.js"
import type { Principal } from "../../services/Principal.js"

/**
 * An operation the user or the server's policy does not allow.
 * @category errors
 */
export class AccessDenied extends Data.TaggedError("AccessDenied")<{
  readonly path: string
  readonly reason: "ReadNotAllowed" | "WriteNotAllowed" | "ChownNotAllowed" | "ChtimesNotAllowed"
}> {
  override get message(): string {
    return `${this.reason}: ${JSON.stringify(this.path)}`
  }
}

/**
 * Server-wide rules that apply to every user.
 * @category models
 */
export interface AccessPolicy {
  /** Let clients change owner and group. Default false. */
  readonly allowChown: boolean
  /** Let clients set access and modification times. Default false. */
  readonly allowChtimes: boolean
}

/**
 * The checks of one session.
 * @category models
 */
export interface Access {
  /** Reading file contents. */
  read(path: string): Effect.Effect<void, AccessDenied>
  /** Listing a directory. */
  list(path: string): Effect.Effect<void, AccessDenied>
  /** Creating, changing, renaming or removing anything. */
  write(path: string): Effect.Effect<void, AccessDenied>
  /** Opening a file in `mode`: reading needs read, any write flag needs write. */
  open(path: string, mode: OpenMode): Effect.Effect<void, AccessDenied>
  /** Changing attributes: write, plus chown/chtimes where those fields are set. */
  setAttributes(path: string, attributes: SetAttributes): Effect.Effect<void, AccessDenied>
}

const deny = (path: string, reason: AccessDenied["reason"]) => Effect.fail(new AccessDenied({ path, reason }))

/**
 * The checks for `principal` under `policy`.
 * @category constructors
 */
export const make = (principal: Principal, policy: AccessPolicy): Access => {
  const read = (path: string) => (principal.canRead ? Effect.void : deny(path, "ReadNotAllowed"))
  const write = (path: string) => (principal.canWrite ? Effect.void : deny(path, "WriteNotAllowed"))
  return {
    read,
    list: read,
    write,
    open: (path, mode) => {
      const writes = mode.write || mode.create === true || mode.truncate === true || mode.append === true || mode.exclusive === true
      if (mode.read && !principal.canRead) return deny(path, "ReadNotAllowed")
      return writes ? write(path) : Effect.void
    },
    setAttributes: (path, attributes) =>
      Effect.gen(function*() {
        yield* write(path)
        if ((attributes.uid !== undefined || attributes.gid !== undefined) && !policy.allowChown) {
          return yield* deny(path, "ChownNotAllowed")
        }
        if ((attributes.atimeMs !== undefined || attributes.mtimeMs !== undefined) && !policy.allowChtimes) {
          return yield* deny(path, "ChtimesNotAllowed")
        }
      })
  }
}
