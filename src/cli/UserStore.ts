/**
 * The SQLite user store as the command line uses it: opened for one command,
 * closed after it. The server may have the same file open; SQLite's WAL mode and
 * locking let both work, and the server sees a change at the next login.
 */
import { Effect, Layer } from "effect"
import * as PasswordHash from "../layers/PasswordHash.js"
import * as SessionsFiberSet from "../layers/SessionsFiberSet.js"
import * as UserRegistrySqlite from "../layers/UserRegistrySqlite.js"
import { UserRegistry } from "../services/UserRegistry.js"

/**
 * The store could not be opened or migrated.
 * @category errors
 */
export type UserStoreFailure = UserRegistrySqlite.UserStoreError

/**
 * Runs `use` with the registry of the store at `database`, then closes it.
 * @category constructors
 */
export const withUserStore = <A, E>(
  database: string,
  use: (registry: UserRegistry["Service"]) => Effect.Effect<A, E>
): Effect.Effect<A, E | UserStoreFailure> =>
  Effect.scoped(
    Layer.build(
      UserRegistrySqlite.layer(database).pipe(Layer.provide(Layer.merge(SessionsFiberSet.layer(), PasswordHash.layer)))
    ).pipe(Effect.flatMap((context) => UserRegistry.use(use).pipe(Effect.provide(context))))
  )
