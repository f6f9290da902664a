/**
 * Who is logged in: the value `UserRegistry.authenticate` returns and a session
 * keeps for its lifetime. It is data, not a service: holding one is the proof of
 * a successful login, and the session opens its jail from `root`.
 */

/**
 * An authenticated user, as the session sees it after login.
 * @category models
 */
export interface Principal {
  readonly username: string
  /** Absolute host directory that becomes "/" for this user. */
  readonly root: string
  /** May read file contents and list directories. */
  readonly canRead: boolean
  /** May create, change, rename and remove anything. */
  readonly canWrite: boolean
}
