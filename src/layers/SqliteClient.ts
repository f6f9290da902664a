/**
 * An `effect/sql` SqlClient on Node's built-in `node:sqlite` (DatabaseSync).
 *
 * Use it for an embedded database file owned by this process (the SQLite user
 * store). `node:sqlite` ships with Node, so there is no native module to build
 * or install script to approve. One connection is shared through a semaphore:
 * the driver is synchronous, so a statement never interleaves with another on
 * the same connection, and a transaction holds the connection until it ends.
 *
 * The database runs in WAL mode (readers never wait for a writer, so logins are
 * not held up by a change), with a 5 second busy timeout for writers that meet
 * another process's write lock, and with foreign keys enforced.
 */
import { Effect, Layer, type Scope, Semaphore, Stream } from "effect"
import { Reactivity } from "effect/reactivity"
import { SqlClient, type SqlConnection, SqlError, Statement } from "effect/sql"
import * as fs from "node:fs"
import { DatabaseSync, type SQLInputValue, type StatementResultingChanges, type StatementSync } from "node:sqlite"

/**
 * Options of the client.
 * @category models
 */
export interface SqliteClientConfig {
  /**
   * The database file, or ":memory:". Its directory must exist; a missing file is
   * created with mode 0600. Fixed for the life of the client.
   */
  readonly filename: string
}

const openError = (cause: unknown) =>
  new SqlError.SqlError({ reason: new SqlError.ConnectionError({ cause, message: "Failed to open the database", operation: "open" }) })

// node:sqlite puts SQLite's result code in `errcode`; the shared classifier reads `errno`.
const queryError = (operation: string, message: string) => (cause: unknown) => {
  const withErrno = typeof cause === "object" && cause !== null && "errcode" in cause && !("errno" in cause)
    ? Object.assign(cause, { errno: cause.errcode })
    : cause
  return new SqlError.SqlError({ reason: SqlError.classifySqliteError(withErrno, { message, operation }) })
}

const open = (filename: string) =>
  Effect.try({
    try: () => {
      // Created here rather than by SQLite so that the file is 0600 from its first
      // byte: it may hold password hashes. SQLite gives its -wal and -shm files the
      // same mode as the database.
      if (filename !== ":memory:") fs.closeSync(fs.openSync(filename, "a", 0o600))
      return new DatabaseSync(filename)
    },
    catch: openError
  })

const configure = (db: DatabaseSync) =>
  Effect.try({
    try: () => {
      // busy_timeout first, so that switching to WAL waits for another process's lock.
      // These are also the first reads of the file: a file that is not a database fails here.
      db.exec("PRAGMA busy_timeout = 5000")
      db.exec("PRAGMA journal_mode = WAL")
      db.exec("PRAGMA foreign_keys = ON")
    },
    catch: openError
  })

const maxCachedStatements = 100

const makeConnection = (db: DatabaseSync): SqlConnection.Connection => {
  // Prepared statements are reused; the oldest is dropped past the limit.
  const cache = new Map<string, StatementSync>()
  const prepared = (sql: string) =>
    Effect.try({
      try: () => {
        const cached = cache.get(sql)
        if (cached) return cached
        const statement = db.prepare(sql)
        if (cache.size >= maxCachedStatements) cache.delete(cache.keys().next().value ?? sql)
        cache.set(sql, statement)
        return statement
      },
      catch: queryError("prepare", "Failed to prepare statement")
    })
  const unprepared = (sql: string) =>
    Effect.try({ try: () => db.prepare(sql), catch: queryError("prepare", "Failed to prepare statement") })

  // A statement without result columns (INSERT, DDL) is run: it has no rows, and
  // its raw result is the change count and last row id.
  const run = <A>(statement: StatementSync, params: ReadonlyArray<unknown>, ran: (changes: StatementResultingChanges) => A) =>
    Effect.withFiber((fiber) =>
      Effect.try({
        try: () => {
          statement.setReadBigInts(fiber.getRef(SqlClient.SafeIntegers))
          const values = params as ReadonlyArray<SQLInputValue>
          return statement.columns().length > 0 ? statement.all(...values) : ran(statement.run(...values))
        },
        catch: queryError("execute", "Failed to execute statement")
      })
    )
  const noRows = () => []
  const rows = (statement: Effect.Effect<StatementSync, SqlError.SqlError>, params: ReadonlyArray<unknown>) =>
    Effect.flatMap(statement, (s) => run(s, params, noRows))
  // Array rows come from a statement of their own, so a cached one keeps returning objects.
  const values = (sql: string, params: ReadonlyArray<unknown>) =>
    Effect.flatMap(unprepared(sql), (s) => {
      s.setReturnArrays(true)
      // The driver's types do not follow setReturnArrays.
      return run(s, params, noRows) as Effect.Effect<ReadonlyArray<ReadonlyArray<unknown>>, SqlError.SqlError>
    })
  const transformed = <A extends object>(
    effect: Effect.Effect<ReadonlyArray<A>, SqlError.SqlError>,
    transformRows: (<B extends object>(rows: ReadonlyArray<B>) => ReadonlyArray<B>) | undefined
  ) => (transformRows ? Effect.map(effect, transformRows) : effect)

  return {
    execute: (sql, params, transformRows) => transformed(rows(prepared(sql), params), transformRows),
    executeRaw: (sql, params) => Effect.flatMap(prepared(sql), (s) => run(s, params, (changes) => changes)),
    executeUnprepared: (sql, params, transformRows) => transformed(rows(unprepared(sql), params), transformRows),
    executeValues: values,
    executeValuesUnprepared: values,
    // Buffered: a lazy iterate() would keep a statement open between pulls, and
    // the results this client serves are small.
    executeStream: (sql, params, transformRows) => Stream.fromIterableEffect(transformed(rows(prepared(sql), params), transformRows))
  }
}

/**
 * Opens the database and builds a client on it; the database is closed with the scope.
 * @category constructors
 */
export const make = (config: SqliteClientConfig): Effect.Effect<SqlClient.SqlClient, SqlError.SqlError, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const db = yield* Effect.acquireRelease(open(config.filename), (db) => Effect.sync(() => db.close()))
    yield* configure(db)
    const connection = makeConnection(db)
    const acquirers = SqlClient.makeSqliteAcquirers({
      connection: Effect.succeed(connection),
      semaphore: yield* Semaphore.make(1),
      isTransaction: () => db.isTransaction
    })
    return yield* SqlClient.make({
      ...acquirers,
      compiler: Statement.makeCompilerSqlite(),
      driver: "node-sqlite",
      spanAttributes: [["db.system.name", "sqlite"]],
      // IMMEDIATE takes the write lock when the transaction starts, where the busy
      // timeout applies. A deferred transaction that reads and then writes can fail
      // at once with SQLITE_BUSY when another process committed in between.
      beginTransaction: "BEGIN IMMEDIATE"
    })
  })

/**
 * A SqlClient on the database file `filename`, closed when the layer's scope closes.
 * @category layers
 */
export const layer = (config: SqliteClientConfig): Layer.Layer<SqlClient.SqlClient, SqlError.SqlError> =>
  Layer.effect(SqlClient.SqlClient, make(config)).pipe(Layer.provide(Reactivity.layer))
