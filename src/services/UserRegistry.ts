/**
 * The UserRegistry service: who may log in, with which credentials, into which root.
 *
 * Both protocols log in only through `authenticate` (ssh2's authentication hook,
 * FTP's PASS), which returns a `Principal`. Users can be added, changed and
 * removed while the server runs; a change applies from the next login, and
 * `removeUser` can also end the user's live sessions.
 *
 * Backends are layers: in memory (from config) first, SQLite and PostgreSQL later.
 */
import { Context, Data, type Effect } from "effect"
import type { Principal } from "./Principal.js"

/**
 * A user as given by configuration or the management API.
 *
 * Give `password` (plaintext, hashed with argon2id when loaded, never stored) or
 * `passwordHash` (argon2id, bcrypt `$2a$/$2b$/$2y$`, or sha512-crypt `$6$`), or
 * neither for a key-only user. Empty passwords are refused.
 * @category models
 */
export interface UserSpec {
  /** 1 to 64 bytes of UTF-8; no "/", "\\", "..", or control characters. */
  readonly username: string
  /** Absolute host directory that becomes the user's "/". Checked at every login. */
  readonly root: string
  readonly canRead: boolean
  readonly canWrite: boolean
  readonly password?: string
  readonly passwordHash?: string
  /** OpenSSH public keys, one per entry ("ssh-ed25519 AAAA… comment"); options are refused. */
  readonly authorizedKeys?: ReadonlyArray<string>
  /** A disabled user cannot log in (default false). */
  readonly disabled?: boolean
}

/**
 * Changes to an existing user; fields left out stay as they are. A `password`
 * or `passwordHash` replaces the current one; `null` removes it (key-only user).
 * @category models
 */
export interface UserChanges {
  readonly root?: string
  readonly canRead?: boolean
  readonly canWrite?: boolean
  readonly password?: string | null
  readonly passwordHash?: string | null
  readonly authorizedKeys?: ReadonlyArray<string>
  readonly disabled?: boolean
}

/**
 * What the registry tells about a user. Never contains a password or its hash.
 * @category models
 */
export interface UserInfo {
  readonly username: string
  readonly root: string
  readonly canRead: boolean
  readonly canWrite: boolean
  readonly hasPassword: boolean
  /** The keys in canonical form ("type base64 comment"). */
  readonly authorizedKeys: ReadonlyArray<string>
  readonly disabled: boolean
}

/**
 * Credentials presented by a client. For `PublicKey`, the protocol must already
 * have verified the client's signature with this key: the registry only decides
 * whether the key belongs to the user.
 * @category models
 */
export type Credentials =
  | { readonly _tag: "Password"; readonly username: string; readonly password: string }
  | { readonly _tag: "PublicKey"; readonly username: string; readonly algorithm: string; readonly key: Uint8Array }

/**
 * A refused login. Unknown user, wrong password, unknown key and disabled user
 * are one reason, `InvalidCredentials`, so nothing tells a client which usernames
 * exist or which are disabled.
 * `RootUnavailable` means the credentials were right but the user's root is
 * missing or not a directory (an operator problem; the client sees the same refusal).
 * @category errors
 */
export class AuthError extends Data.TaggedError("AuthError")<{
  readonly username: string
  readonly reason: "InvalidCredentials" | "RootUnavailable"
}> {
  override get message(): string {
    return `login refused for ${JSON.stringify(this.username)}: ${this.reason}`
  }
}

/**
 * A refused management call.
 * @category errors
 */
export class UserError extends Data.TaggedError("UserError")<{
  readonly username: string
  readonly reason:
    | "NotFound"
    | "AlreadyExists"
    | "InvalidUsername"
    | "InvalidRoot"
    | "InvalidPassword"
    | "InvalidPasswordHash"
    | "InvalidKey"
    | "KeyNotFound"
  /** Human-readable detail for operators (never shown to protocol clients). */
  readonly detail: string
}> {
  override get message(): string {
    return `user ${JSON.stringify(this.username)}: ${this.reason} (${this.detail})`
  }
}

/**
 * Users and their credentials.
 * @category services
 */
export class UserRegistry extends Context.Service<UserRegistry, {
  /**
   * Checks credentials. Reached by SSH password/publickey authentication and FTP PASS;
   * on failure the client sees a plain authentication failure (SSH) or 530 (FTP).
   * Costs the same password-hash work whether or not the user exists.
   */
  authenticate(credentials: Credentials): Effect.Effect<Principal, AuthError>
  get(username: string): Effect.Effect<UserInfo, UserError>
  readonly list: Effect.Effect<ReadonlyArray<UserInfo>>
  addUser(user: UserSpec): Effect.Effect<void, UserError>
  updateUser(username: string, changes: UserChanges): Effect.Effect<void, UserError>
  /** Removes a user; with `endSessions`, that user's live sessions are ended too. */
  removeUser(username: string, options?: { readonly endSessions?: boolean }): Effect.Effect<void, UserError>
  /** Removes every user; returns how many there were. */
  removeAllUsers(options?: { readonly endSessions?: boolean }): Effect.Effect<number>
  addUserKey(username: string, key: string): Effect.Effect<void, UserError>
  /** Removes the key with the same type and key data (the comment does not matter). */
  removeUserKey(username: string, key: string): Effect.Effect<void, UserError>
}>()("portcullis/services/UserRegistry") {}
