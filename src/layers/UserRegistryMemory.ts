/**
 * The UserRegistry service kept in memory, loaded from configuration.
 *
 * Changes are computed first (hashing a new password takes a while) and then
 * committed in one synchronous step, so a login running at the same moment sees
 * either the old user or the new one, never half of a change.
 */
import { Effect, Layer } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import { PasswordHasher } from "../services/PasswordHasher.js"
import type { Principal } from "../services/Principal.js"
import { Sessions } from "../services/Sessions.js"
import { usernameProblem } from "../services/Username.js"
import {
  AuthError,
  type Credentials,
  type UserChanges,
  UserError,
  type UserInfo,
  UserRegistry,
  type UserSpec
} from "../services/UserRegistry.js"
import { type AuthorizedKey, parseAuthorizedKey } from "./AuthorizedKey.js"
import { isAcceptablePassword, maxPasswordBytes } from "./PasswordHash.js"

interface StoredUser {
  readonly username: string
  readonly root: string
  readonly canRead: boolean
  readonly canWrite: boolean
  readonly passwordHash: string | undefined
  readonly keys: ReadonlyArray<AuthorizedKey>
}

const fail = (username: string, reason: UserError["reason"], detail: string) =>
  Effect.fail(new UserError({ username, reason, detail }))

const checkUsername = (username: string) => {
  const problem = usernameProblem(username)
  return problem ? fail(username, "InvalidUsername", `the username ${problem}`) : Effect.void
}

const checkRoot = (username: string, root: string) =>
  nodePath.isAbsolute(root) ? Effect.void : fail(username, "InvalidRoot", "the root must be an absolute path")

const parseKey = (username: string, line: string) => {
  const parsed = parseAuthorizedKey(line)
  return "problem" in parsed ? fail(username, "InvalidKey", parsed.problem) : Effect.succeed(parsed)
}

/** The stored hash for a password or a hash given by the caller; undefined means no password. */
const passwordHashOf = (
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

const toStored = (hasher: PasswordHasher["Service"], spec: UserSpec): Effect.Effect<StoredUser, UserError> =>
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
      keys
    }
  })

const toInfo = (user: StoredUser): UserInfo => ({
  username: user.username,
  root: user.root,
  canRead: user.canRead,
  canWrite: user.canWrite,
  hasPassword: user.passwordHash !== undefined,
  authorizedKeys: user.keys.map((k) => k.canonical)
})

// Compares every stored key, without stopping at the first match, so the time
// spent does not tell which key matched.
const hasKey = (keys: ReadonlyArray<AuthorizedKey>, blob: Uint8Array): boolean => {
  let found = false
  for (const key of keys) {
    const same = key.blob.length === blob.length && crypto.timingSafeEqual(key.blob, blob)
    found = same || found
  }
  return found
}

const rootIsDirectory = (root: string) =>
  Effect.promise(() => fs.stat(root).then((s) => s.isDirectory(), () => false))

/**
 * Builds an in-memory registry holding `users`.
 * @category constructors
 */
export const make = (users: ReadonlyArray<UserSpec>) =>
  Effect.gen(function*() {
    const sessions = yield* Sessions
    const hasher = yield* PasswordHasher
    // A hash of a random password nobody knows: unknown and key-only users are
    // checked against it, so they cost the same argon2id work as real ones.
    const decoy = yield* hasher.hash(crypto.randomBytes(32).toString("hex"))
    const store = new Map<string, StoredUser>()
    for (const spec of users) {
      if (store.has(spec.username)) return yield* fail(spec.username, "AlreadyExists", "listed twice")
      store.set(spec.username, yield* toStored(hasher, spec))
    }

    const existing = (username: string) =>
      Effect.suspend(() => {
        const user = store.get(username)
        return user ? Effect.succeed(user) : fail(username, "NotFound", "no such user")
      })

    const credentialsMatch = (user: StoredUser | undefined, credentials: Credentials): Effect.Effect<boolean> => {
      if (credentials._tag === "PublicKey") return Effect.succeed(hasKey(user?.keys ?? [], credentials.key))
      // Refused before any hashing: the outcome cannot depend on whether the user exists.
      if (!isAcceptablePassword(credentials.password)) return Effect.succeed(false)
      const hash = user?.passwordHash
      return hasher.verify(credentials.password, hash ?? decoy).pipe(Effect.map((ok) => ok && hash !== undefined))
    }

    const authenticate = (credentials: Credentials): Effect.Effect<Principal, AuthError> =>
      Effect.gen(function*() {
        const { username } = credentials
        const user = store.get(username)
        if (!(yield* credentialsMatch(user, credentials)) || !user) {
          return yield* new AuthError({ username, reason: "InvalidCredentials" })
        }
        if (!(yield* rootIsDirectory(user.root))) {
          yield* Effect.logWarning("login refused: the user's root is missing or not a directory", { username })
          return yield* new AuthError({ username, reason: "RootUnavailable" })
        }
        return { username, root: user.root, canRead: user.canRead, canWrite: user.canWrite }
      })

    const updateUser = (username: string, changes: UserChanges) =>
      Effect.gen(function*() {
        yield* existing(username)
        if (changes.root !== undefined) yield* checkRoot(username, changes.root)
        const keys = changes.authorizedKeys === undefined
          ? undefined
          : yield* Effect.forEach(changes.authorizedKeys, (line) => parseKey(username, line))
        const passwordChanges = changes.password !== undefined || changes.passwordHash !== undefined
        const passwordHash = passwordChanges ? yield* passwordHashOf(hasher, username, changes.password, changes.passwordHash) : undefined
        // Commit on the user as it is now, in case another change landed while hashing.
        const current = yield* existing(username)
        store.set(username, {
          ...current,
          root: changes.root ?? current.root,
          canRead: changes.canRead ?? current.canRead,
          canWrite: changes.canWrite ?? current.canWrite,
          passwordHash: passwordChanges ? passwordHash : current.passwordHash,
          keys: keys ?? current.keys
        })
      })

    const endSessionsOf = (usernames: ReadonlyArray<string>, endSessions: boolean | undefined) =>
      endSessions ? Effect.forEach(usernames, sessions.endUser, { discard: true }) : Effect.void

    return UserRegistry.of({
      authenticate,
      get: (username) => existing(username).pipe(Effect.map(toInfo)),
      list: Effect.sync(() => Array.from(store.values(), toInfo)),
      addUser: (spec) =>
        Effect.gen(function*() {
          const user = yield* toStored(hasher, spec)
          if (store.has(user.username)) return yield* fail(user.username, "AlreadyExists", "a user with this name exists")
          store.set(user.username, user)
        }),
      updateUser,
      removeUser: (username, options) =>
        Effect.gen(function*() {
          yield* existing(username)
          store.delete(username)
          yield* endSessionsOf([username], options?.endSessions)
        }),
      removeAllUsers: (options) =>
        Effect.gen(function*() {
          const usernames = Array.from(store.keys())
          store.clear()
          yield* endSessionsOf(usernames, options?.endSessions)
          return usernames.length
        }),
      addUserKey: (username, line) =>
        Effect.gen(function*() {
          const key = yield* parseKey(username, line)
          const user = yield* existing(username)
          if (hasKey(user.keys, key.blob)) return yield* fail(username, "AlreadyExists", "the user already has this key")
          store.set(username, { ...user, keys: [...user.keys, key] })
        }),
      removeUserKey: (username, line) =>
        Effect.gen(function*() {
          const key = yield* parseKey(username, line)
          const user = yield* existing(username)
          const keys = user.keys.filter((k) => !k.blob.equals(key.blob))
          if (keys.length === user.keys.length) return yield* fail(username, "KeyNotFound", "the user has no such key")
          store.set(username, { ...user, keys })
        })
    })
  })

/**
 * An in-memory registry holding `users`; fails to build on an invalid user.
 * @category layers
 */
export const layer = (users: ReadonlyArray<UserSpec>): Layer.Layer<UserRegistry, UserError, Sessions | PasswordHasher> =>
  Layer.effect(UserRegistry, make(users))
