/**
 * The UserRegistry service kept in a SQLite file: the CLI's embedded default,
 * where users survive restarts and `portcullis user …` manages them while the
 * server runs.
 *
 * Every call reads the database; nothing is cached. A change made by another
 * process (the CLI beside a running server) therefore applies at the next login.
 * Users are validated and their passwords hashed by the same rules as the memory
 * registry (`UserRecord`), before any transaction starts, so a slow hash never
 * holds the write lock. Only password hashes are stored, never a password.
 *
 * `removeUser(…, { endSessions })` ends the sessions this process serves: the CLI
 * removing a user cannot end the server's sessions, only refuse the next login.
 *
 * The schema is created and upgraded by numbered migrations when the layer is
 * built. A file that cannot be opened, is not a database, cannot be migrated or
 * was written by a newer version fails the layer with `UserStoreError`.
 */
import { Clock, Data, Effect, Layer, References } from "effect"
import { Reactivity } from "effect/reactivity"
import { Migrator, SqlClient, type SqlError } from "effect/sql"
import { PasswordHasher } from "../services/PasswordHasher.js"
import type { Principal } from "../services/Principal.js"
import { Sessions } from "../services/Sessions.js"
import { type AuthError, type Credentials, type UserChanges, type UserError, UserRegistry, type UserSpec } from "../services/UserRegistry.js"
import type { AuthorizedKey } from "./AuthorizedKey.js"
import * as SqliteClient from "./SqliteClient.js"
import { applyChanges, authenticateUser, fail, makeDecoy, parseKey, type StoredUser, toInfo, toStored } from "./UserRecord.js"

/**
 * The user database is unusable. `OpenFailed`: the file cannot be opened or
 * created, or is not a SQLite database. `MigrationFailed`: its schema cannot be
 * brought up to date. `SchemaTooNew`: a newer version of Portcullis wrote it.
 * `QueryFailed`: a statement failed while serving (raised as a defect, since the
 * registry's contract has no such error; the session ends with a generic failure).
 *
 * Meant for operators only; the message carries SQLite's or the OS's own words,
 * never the file's path.
 * @category errors
 */
export class UserStoreError extends Data.TaggedError("UserStoreError")<{
  readonly reason: "OpenFailed" | "MigrationFailed" | "SchemaTooNew" | "QueryFailed"
  readonly cause?: unknown
}> {
  override get message(): string {
    const detail = detailOf(this.cause)
    return `user database: ${descriptions[this.reason]}${detail === undefined ? "" : ` (${detail})`}`
  }
}

const descriptions: Record<UserStoreError["reason"], string> = {
  OpenFailed: "cannot open the file as a SQLite database",
  MigrationFailed: "cannot bring the schema up to date",
  SchemaTooNew: "the schema was written by a newer version of Portcullis",
  QueryFailed: "a query failed"
}

// Walks the cause chain (UserStoreError -> SqlError -> reason -> driver error) for
// SQLite's message or the errno name; Node's fs messages include the path, so only
// their code is used.
const detailOf = (cause: unknown): string | undefined => {
  let current = cause
  for (let depth = 0; depth < 6 && typeof current === "object" && current !== null; depth++) {
    if ("code" in current && current.code === "ERR_SQLITE_ERROR" && current instanceof Error) return current.message
    if ("syscall" in current && "code" in current && typeof current.code === "string") return current.code
    if (current instanceof Migrator.MigrationError && current.cause === undefined) return current.message
    current = "cause" in current ? current.cause : undefined
  }
  return undefined
}

const migrationsTable = "portcullis_migrations"

// Tables are STRICT so that a value of the wrong type is refused rather than stored.
// Keys are listed in the order they were added (rowid order).
const migrations = {
  "0001_users": Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE users (
      username TEXT PRIMARY KEY NOT NULL,
      root TEXT NOT NULL,
      can_read INTEGER NOT NULL CHECK (can_read IN (0, 1)),
      can_write INTEGER NOT NULL CHECK (can_write IN (0, 1)),
      password_hash TEXT,
      disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
      created_at TEXT NOT NULL,
      updated_at TEXT NOT NULL
    ) STRICT`
    yield* sql`CREATE TABLE user_keys (
      username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE ON UPDATE CASCADE,
      key_type TEXT NOT NULL,
      key_blob BLOB NOT NULL,
      canonical TEXT NOT NULL,
      PRIMARY KEY (username, key_blob)
    ) STRICT`
  })
}
const latestMigration = Math.max(...Object.keys(migrations).map((name) => Number.parseInt(name, 10)))

const runMigrations = Migrator.make({})

/** Creates or upgrades the schema; refuses a database from a newer version. */
const migrate = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* runMigrations({ loader: Migrator.fromRecord(migrations), table: migrationsTable }).pipe(
    Effect.mapError((cause) => new UserStoreError({ reason: "MigrationFailed", cause }))
  )
  const [row] = yield* sql<{ readonly latest: number }>`SELECT MAX(migration_id) AS latest FROM ${sql(migrationsTable)}`.pipe(
    Effect.mapError((cause) => new UserStoreError({ reason: "MigrationFailed", cause }))
  )
  if ((row?.latest ?? 0) > latestMigration) return yield* new UserStoreError({ reason: "SchemaTooNew" })
})

interface UserRow {
  readonly username: string
  readonly root: string
  readonly can_read: number
  readonly can_write: number
  readonly password_hash: string | null
  readonly disabled: number
  readonly key_type: string | null
  readonly key_blob: Uint8Array | null
  readonly canonical: string | null
}

// One row per (user, key), users in the order they were added, each user's keys in order.
const toStoredUsers = (rows: ReadonlyArray<UserRow>): ReadonlyArray<StoredUser> => {
  const users: Array<StoredUser & { readonly keys: Array<AuthorizedKey> }> = []
  for (const row of rows) {
    let user = users.at(-1)
    if (user?.username !== row.username) {
      user = {
        username: row.username,
        root: row.root,
        // Boolean(): 0/1, or 0n/1n when a caller turned on SqlClient.SafeIntegers.
        canRead: Boolean(row.can_read),
        canWrite: Boolean(row.can_write),
        passwordHash: row.password_hash ?? undefined,
        keys: [],
        disabled: Boolean(row.disabled)
      }
      users.push(user)
    }
    if (row.key_type !== null && row.key_blob !== null && row.canonical !== null) {
      const blob = Buffer.from(row.key_blob.buffer, row.key_blob.byteOffset, row.key_blob.byteLength)
      user.keys.push({ type: row.key_type, blob, canonical: row.canonical })
    }
  }
  return users
}

const flag = (value: boolean) => (value ? 1 : 0)

// See `transaction` below for why.
const noYield = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provideService(effect, References.PreventSchedulerYield, true)

/**
 * Builds a registry on the database of the SqlClient, creating or upgrading its
 * schema first.
 * @category constructors
 */
export const make = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const sessions = yield* Sessions
  const hasher = yield* PasswordHasher
  yield* migrate.pipe(noYield)
  const decoy = yield* makeDecoy(hasher)

  const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms).toISOString())

  // A failing statement is not something the contract lets a caller handle.
  const storeDefect = (cause: SqlError.SqlError) => Effect.die(new UserStoreError({ reason: "QueryFailed", cause }))
  const query = <A>(statement: Effect.Effect<A, SqlError.SqlError>): Effect.Effect<A> => Effect.catch(statement, storeDefect)

  // Nothing inside a transaction waits for I/O, and scheduler yields are off, so
  // the write lock is taken and released without another fiber of this process
  // running in between: a second connection of this process waiting for the lock
  // would block the event loop in SQLite's busy handler, and with it the holder.
  const transaction = <A>(body: Effect.Effect<A, UserError | SqlError.SqlError>): Effect.Effect<A, UserError> =>
    sql.withTransaction(body).pipe(Effect.catchTag("SqlError", storeDefect), noYield)

  const selectUsers = (username: string | undefined) =>
    query(sql<UserRow>`
      SELECT u.username, u.root, u.can_read, u.can_write, u.password_hash, u.disabled,
             k.key_type, k.key_blob, k.canonical
      FROM users u LEFT JOIN user_keys k ON k.username = u.username
      ${username === undefined ? sql`` : sql`WHERE u.username = ${username}`}
      ORDER BY u.rowid, k.rowid`).pipe(Effect.map(toStoredUsers))

  // One statement, so the user and its keys come from one snapshot.
  const find = (username: string) => Effect.map(selectUsers(username), (users) => users[0])

  const existing = (username: string) =>
    Effect.flatMap(find(username), (user) => (user ? Effect.succeed(user) : fail(username, "NotFound", "no such user")))

  const requireUser = (username: string) =>
    Effect.flatMap(
      sql`SELECT 1 AS found FROM users WHERE username = ${username}`,
      (rows) => (rows.length > 0 ? Effect.void : fail(username, "NotFound", "no such user"))
    )

  const insertKeys = (username: string, keys: ReadonlyArray<AuthorizedKey>) =>
    Effect.forEach(keys, (key) =>
      // A key listed twice is kept once.
      sql`INSERT INTO user_keys (username, key_type, key_blob, canonical)
          VALUES (${username}, ${key.type}, ${key.blob}, ${key.canonical}) ON CONFLICT DO NOTHING`, { discard: true })

  const touch = (username: string, at: string) => sql`UPDATE users SET updated_at = ${at} WHERE username = ${username}`

  const authenticate = (credentials: Credentials): Effect.Effect<Principal, AuthError> =>
    find(credentials.username).pipe(Effect.flatMap((user) => authenticateUser(hasher, decoy, user, credentials)))

  const addUser = (spec: UserSpec) =>
    Effect.gen(function*() {
      const user = yield* toStored(hasher, spec)
      const at = yield* now
      yield* transaction(Effect.gen(function*() {
        const [taken] = yield* sql`SELECT 1 AS found FROM users WHERE username = ${user.username}`
        if (taken) return yield* fail(user.username, "AlreadyExists", "a user with this name exists")
        yield* sql`INSERT INTO users (username, root, can_read, can_write, password_hash, disabled, created_at, updated_at)
                   VALUES (${user.username}, ${user.root}, ${flag(user.canRead)}, ${flag(user.canWrite)},
                           ${user.passwordHash ?? null}, ${flag(user.disabled)}, ${at}, ${at})`
        yield* insertKeys(user.username, user.keys)
      }))
    })

  const updateUser = (username: string, changes: UserChanges) =>
    Effect.gen(function*() {
      const changed = yield* applyChanges(hasher, yield* existing(username), changes)
      const at = yield* now
      // Only the fields given are written, so a change that landed while hashing is kept.
      const passwordChanges = changes.password !== undefined || changes.passwordHash !== undefined
      const columns = {
        updated_at: at,
        ...(changes.root === undefined ? {} : { root: changed.root }),
        ...(changes.canRead === undefined ? {} : { can_read: flag(changed.canRead) }),
        ...(changes.canWrite === undefined ? {} : { can_write: flag(changed.canWrite) }),
        ...(passwordChanges ? { password_hash: changed.passwordHash ?? null } : {}),
        ...(changes.disabled === undefined ? {} : { disabled: flag(changed.disabled) })
      }
      yield* transaction(Effect.gen(function*() {
        const updated = yield* sql`UPDATE users SET ${sql.update(columns)} WHERE username = ${username} RETURNING username`
        if (updated.length === 0) return yield* fail(username, "NotFound", "no such user")
        if (changes.authorizedKeys !== undefined) {
          yield* sql`DELETE FROM user_keys WHERE username = ${username}`
          yield* insertKeys(username, changed.keys)
        }
      }))
    })

  const endSessionsOf = (usernames: ReadonlyArray<string>, endSessions: boolean | undefined) =>
    endSessions ? Effect.forEach(usernames, sessions.endUser, { discard: true }) : Effect.void

  return UserRegistry.of({
    authenticate,
    get: (username) => existing(username).pipe(Effect.map(toInfo)),
    list: selectUsers(undefined).pipe(Effect.map((users) => users.map(toInfo))),
    addUser,
    updateUser,
    removeUser: (username, options) =>
      Effect.gen(function*() {
        // Keys go with the user (ON DELETE CASCADE).
        const removed = yield* query(sql`DELETE FROM users WHERE username = ${username} RETURNING username`)
        if (removed.length === 0) return yield* fail(username, "NotFound", "no such user")
        yield* endSessionsOf([username], options?.endSessions)
      }),
    removeAllUsers: (options) =>
      Effect.gen(function*() {
        const removed = yield* query(sql<{ readonly username: string }>`DELETE FROM users RETURNING username`)
        const usernames = removed.map((row) => row.username)
        yield* endSessionsOf(usernames, options?.endSessions)
        return usernames.length
      }),
    addUserKey: (username, line) =>
      Effect.gen(function*() {
        const key = yield* parseKey(username, line)
        const at = yield* now
        yield* transaction(Effect.gen(function*() {
          yield* requireUser(username)
          const added = yield* sql`INSERT INTO user_keys (username, key_type, key_blob, canonical)
                                   VALUES (${username}, ${key.type}, ${key.blob}, ${key.canonical})
                                   ON CONFLICT DO NOTHING RETURNING username`
          if (added.length === 0) return yield* fail(username, "AlreadyExists", "the user already has this key")
          yield* touch(username, at)
        }))
      }),
    removeUserKey: (username, line) =>
      Effect.gen(function*() {
        const key = yield* parseKey(username, line)
        const at = yield* now
        yield* transaction(Effect.gen(function*() {
          yield* requireUser(username)
          // The same type and key data; the comment does not matter.
          const removed = yield* sql`DELETE FROM user_keys WHERE username = ${username} AND key_blob = ${key.blob} RETURNING username`
          if (removed.length === 0) return yield* fail(username, "KeyNotFound", "the user has no such key")
          yield* touch(username, at)
        }))
      })
  })
})

/**
 * A registry stored in the SQLite file `filename` (created with mode 0600 when
 * missing; its directory must exist). Fails to build with `UserStoreError`. The
 * file is closed when the layer's scope closes.
 * @category layers
 */
export const layer = (filename: string): Layer.Layer<UserRegistry, UserStoreError, Sessions | PasswordHasher> =>
  Layer.effect(
    UserRegistry,
    Effect.gen(function*() {
      const client = yield* SqliteClient.make({ filename }).pipe(
        Effect.mapError((cause) => new UserStoreError({ reason: "OpenFailed", cause }))
      )
      return yield* make.pipe(Effect.provideService(SqlClient.SqlClient, client))
    })
  ).pipe(Layer.provide(Reactivity.layer))
