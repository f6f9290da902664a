/**
 * The UserRegistry service kept in memory, loaded from configuration.
 *
 * Changes are computed first (hashing a new password takes a while) and then
 * committed in one synchronous step, so a login running at the same moment sees
 * either the old user or the new one, never half of a change.
 */
import { Effect, Layer } from "effect"
import { PasswordHasher } from "../services/PasswordHasher.js"
import type { Principal } from "../services/Principal.js"
import { Sessions } from "../services/Sessions.js"
import { type AuthError, type Credentials, type UserChanges, type UserError, UserRegistry, type UserSpec } from "../services/UserRegistry.js"
import { applyChanges, authenticateUser, fail, hasKey, makeDecoy, parseKey, type StoredUser, toInfo, toStored } from "./UserRecord.js"

/**
 * Builds an in-memory registry holding `users`.
 * @category constructors
 */
export const make = (users: ReadonlyArray<UserSpec>) =>
  Effect.gen(function*() {
    const sessions = yield* Sessions
    const hasher = yield* PasswordHasher
    const decoy = yield* makeDecoy(hasher)
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

    const authenticate = (credentials: Credentials): Effect.Effect<Principal, AuthError> =>
      authenticateUser(hasher, decoy, store.get(credentials.username), credentials)

    const updateUser = (username: string, changes: UserChanges) =>
      Effect.gen(function*() {
        const changed = yield* applyChanges(hasher, yield* existing(username), changes)
        // Commit on the user as it is now, in case another change landed while hashing.
        const current = yield* existing(username)
        store.set(username, { ...changed, keys: changes.authorizedKeys === undefined ? current.keys : changed.keys })
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
