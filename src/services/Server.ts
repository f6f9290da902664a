/**
 * The Server service: one running Portcullis server, with every protocol its
 * configuration enabled. `Server.layer(config)` (layers/Server.ts) builds it
 * together with the services it is made of (UserRegistry, Events, Sessions, Jail).
 */
import { Context, type Duration, type Effect } from "effect"
import type { Address } from "../config/Address.js"
import type { ServerConfig } from "../config/Config.js"
import type { ConfigFileError } from "../config/ConfigFileError.js"
import type { UserError } from "./UserRegistry.js"

/**
 * Where each enabled protocol listens.
 * @category models
 */
export interface Addresses {
  readonly sftp?: Address
  /** Plain FTP with explicit TLS (AUTH TLS). */
  readonly ftp?: Address
  /** Implicit FTPS, when configured. */
  readonly ftps?: Address
}

/**
 * A running server.
 * @category services
 */
export class Server extends Context.Service<Server, {
  /** The bound addresses (real ports when the config asked for port 0). */
  readonly addresses: Addresses
  /** Stops accepting connections; live sessions run on. */
  readonly close: Effect.Effect<void>
  /**
   * Stops accepting, lets sessions finish until `deadline`, then interrupts the
   * rest (their partial uploads are never announced). Returns how many were interrupted.
   */
  shutdown(deadline: Duration.Input): Effect.Effect<{ readonly forced: number }>
  /**
   * Applies what can change without a restart (SIGHUP): the FTPS certificate and
   * key, and the users of an inline list (added, changed, removed; live sessions
   * are not dropped). Listeners, protocols and timeouts need a restart.
   */
  reload(config: ServerConfig): Effect.Effect<void, ConfigFileError | UserError>
}>()("portcullis/services/Server") {}
