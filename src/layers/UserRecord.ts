/**
 * A user as registry backends keep it, and the rules every backend applies:
 * validation of names, roots, keys and password hashes, and the credential check
 * (constant-time key comparison; unknown, key-only and disabled users cost a
 * real argon2id verification). The memory and SQLite registries both use it, so
 * a user is accepted or refused the same way whatever stores it.
 */
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import type { PasswordHasher } from "../services/PasswordHasher.js"
import { usernameProblem } from "../services/Username.js"
import type { Principal } from "../services/Principal.js"
import { AuthError, type Credentials, type UserChanges, UserError, type UserInfo, type UserSpec } from "../services/UserRegistry.js"
import { type AuthorizedKey, parseAuthorizedKey } from "./AuthorizedKey.js"
import { isAcceptablePassword, maxPasswordBytes } from "./PasswordHash.js"

/**
 * A validated user with its password hash and parsed keys.
 * @category models
 */
export interface StoredUser {
  readonly username: string
  readonly root: string
  readonly canRead: boolean
  readonly canWrite: boolean
  readonly passwordHash: string | undefined
  readonly keys: ReadonlyArray<AuthorizedKey>
  readonly disabled: boolean
}

/** Fails with a UserError. */
export const fail = (username: string, reason: UserError["reason"], detail: string) =>
  Effect.fail(new UserError({ username, reason, detail }))

const checkUsername = (username: string) => {
  const problem = usernameProblem(username)
  return problem ? fail(username, "InvalidUsername", `the username ${problem}`) : Effect.void
}

export const checkRoot = (username: string, root: string) =>
  nodePath.isAbsolute(root) ? Effect.void : fail(username, "InvalidRoot", "the root must be an absolute path")

export const parseKey = (username: string, line: string) => {
  const parsed = parseAuthorizedKey(line)
  return "problem" in parsed ? fail(username, "InvalidKey", parsed.problem) : Effect.succeed(parsed)
}

/** The stored hash for a password or a hash given by the caller; undefined means no password. */
export const passwordHashOf = (
  hasher: PasswordHasher["Service"],
  username: string,
  password: string | null | undefined,
  passwordHash: string | null | undefined
): Effect.Effect<string | undefined, UserError> => {
  if (password != null && passwordHash != null) {
    return fail(username, "InvalidPassword", "give a password or a password hash, not both")
  }
  if (password != null) {
    return isAcceptablePassword(password)
      ? hasher.hash(password)
      : fail(username, "InvalidPassword", `a password must have 1 to ${maxPasswordBytes} bytes`)
  }
  if (passwordHash != null) {
    return hasher.isSupported(passwordHash)
      ? Effect.succeed(passwordHash)
      : fail(username, "InvalidPasswordHash", "expected an argon2id, bcrypt ($2a$/$2b$/$2y$) or sha512-crypt ($6$) hash")
  }
  return Effect.succeed(undefined)
}

/**
 * Validates a new user and hashes its password.
 * @category constructors
 */
export const toStored = (hasher: PasswordHasher["Service"], spec: UserSpec): Effect.Effect<StoredUser, UserError> =>
  Effect.gen(function*() {
    yield* checkUsername(spec.username)
    yield* checkRoot(spec.username, spec.root)
    const keys = yield* Effect.forEach(spec.authorizedKeys ?? [], (line) => parseKey(spec.username, line))
    return {
      username: spec.username,
      root: spec.root,
      canRead: spec.canRead,
      canWrite: spec.canWrite,
      passwordHash: yield* passwordHashOf(hasher, spec.username, spec.password, spec.passwordHash),
      keys,
      disabled: spec.disabled ?? false
    }
  })

/**
 * What a registry reports about a user (never the hash).
 * @category constructors
 */
export const toInfo = (user: StoredUser): UserInfo => ({
  username: user.username,
  root: user.root,
  canRead: user.canRead,
  canWrite: user.canWrite,
  hasPassword: user.passwordHash !== undefined,
  authorizedKeys: user.keys.map((k) => k.canonical),
  disabled: user.disabled
})

// Compares every stored key, without stopping at the first match, so the time
// spent does not tell which key matched.
export const hasKey = (keys: ReadonlyArray<AuthorizedKey>, blob: Uint8Array): boolean => {
  let found = false
  for (const key of keys) {
    const same = key.blob.length === blob.length && crypto.timingSafeEqual(key.blob, blob)
    found = same || found
  }
  return found
}

/** Whether a root exists and is a directory (checked at every login). */
export const rootIsDirectory = (root: string) =>
  Effect.promise(() => fs.stat(root).then((s) => s.isDirectory(), () => false))

/**
 * Validates `changes` against `current` and returns the changed user.
 * @category constructors
 */
export const applyChanges = (hasher: PasswordHasher["Service"], current: StoredUser, changes: UserChanges) =>
  Effect.gen(function*() {
    const { username } = current
    if (changes.root !== undefined) yield* checkRoot(username, changes.root)
    const keys = changes.authorizedKeys === undefined
      ? undefined
      : yield* Effect.forEach(changes.authorizedKeys, (line) => parseKey(username, line))
    const passwordChanges = changes.password !== undefined || changes.passwordHash !== undefined
    const passwordHash = passwordChanges ? yield* passwordHashOf(hasher, username, changes.password, changes.passwordHash) : undefined
    return {
      ...current,
      root: changes.root ?? current.root,
      canRead: changes.canRead ?? current.canRead,
      canWrite: changes.canWrite ?? current.canWrite,
      passwordHash: passwordChanges ? passwordHash : current.passwordHash,
      keys: keys ?? current.keys,
      disabled: changes.disabled ?? current.disabled
    } satisfies StoredUser
  })

/**
 * Whether `credentials` match `user` (undefined: unknown user). A disabled user
 * never matches. Costs one password verification for every password attempt
 * that is not refused up front, against `decoy` when there is nothing else.
 * @category constructors
 */
export const credentialsMatch = (
  hasher: PasswordHasher["Service"],
  decoy: string,
  user: StoredUser | undefined,
  credentials: Credentials
): Effect.Effect<boolean> => {
  if (credentials._tag === "PublicKey") return Effect.succeed(hasKey(user?.keys ?? [], credentials.key) && user?.disabled === false)
  // Refused before any hashing: the outcome cannot depend on whether the user exists.
  if (!isAcceptablePassword(credentials.password)) return Effect.succeed(false)
  const hash = user?.passwordHash
  return hasher.verify(credentials.password, hash ?? decoy).pipe(
    Effect.map((ok) => ok && hash !== undefined && user?.disabled === false)
  )
}

/**
 * A hash of a random password nobody knows, to check unknown users against.
 * @category constructors
 */
export const makeDecoy = (hasher: PasswordHasher["Service"]) => hasher.hash(crypto.randomBytes(32).toString("hex"))

/**
 * A whole login check on a user already looked up (undefined: unknown): the
 * credentials (see `credentialsMatch`), then the root. Both registries use it.
 * @category constructors
 */
export const authenticateUser = (
  hasher: PasswordHasher["Service"],
  decoy: string,
  user: StoredUser | undefined,
  credentials: Credentials
): Effect.Effect<Principal, AuthError> =>
  Effect.gen(function*() {
    const { username } = credentials
    // A disabled user still costs the full check, and is refused like a wrong password.
    if (!(yield* credentialsMatch(hasher, decoy, user, credentials)) || !user) {
      return yield* new AuthError({ username, reason: "InvalidCredentials" })
    }
    if (!(yield* rootIsDirectory(user.root))) {
      yield* Effect.logWarning("login refused: the user's root is missing or not a directory", { username })
      return yield* new AuthError({ username, reason: "RootUnavailable" })
    }
    return { username, root: user.root, canRead: user.canRead, canWrite: user.canWrite }
  })
