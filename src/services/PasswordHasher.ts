/**
 * The PasswordHasher service: how registries hash new passwords and check
 * presented ones. A service (rather than plain functions) so that tests can wrap
 * the real implementation and observe that unknown users still cost a hash.
 */
import { Context, type Effect } from "effect"

/**
 * Hashes and verifies passwords.
 * @category services
 */
export class PasswordHasher extends Context.Service<PasswordHasher, {
  /** A new hash (argon2id, PHC string format) with a fresh random salt. */
  hash(password: string): Effect.Effect<string>
  /** Whether `password` matches `hash`; a hash in an unknown format never matches. */
  verify(password: string, hash: string): Effect.Effect<boolean>
  /** Whether `hash` is in a format `verify` understands. */
  isSupported(hash: string): boolean
}>()("portcullis/services/PasswordHasher") {}
