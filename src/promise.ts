/**
 * The Promise facade, for applications that do not use Effect.
 *
 * `new Server(config)` validates nothing until `listen()`, which decodes the
 * config and builds one ManagedRuntime over `Server.layer(config)`. Each method
 * is one `runPromise` of a service call; rejections are the same tagged errors
 * the Effect API fails with, so callers can switch on `error._tag`. No logic
 * lives here: if something seems to need logic, it belongs in a service.
 *
 * @example
 * ```ts
 * import { Server } from "portcullis/promise"
 * const server = new Server({ sftp: { address: "127.0.0.1:0" }, users: [...] })
 * const { sftp } = await server.listen()
 * for await (const upload of server.completedUploads()) await pickUp(upload.fullPath)
 * ```
 */
import { Data, Duration, Effect, type Layer, ManagedRuntime, Stream } from "effect"
import { decodeConfig, type ServerConfigInput } from "./config/Config.js"
import * as ServerLayer from "./layers/Server.js"
import { type Ban, ConnectionGuard } from "./services/ConnectionGuard.js"
import { type AuthEvent, Events, type UploadCompleted } from "./services/Events.js"
import { type Addresses, Server as ServerService } from "./services/Server.js"
import { Sessions } from "./services/Sessions.js"
import { type UserChanges, type UserInfo, UserRegistry, type UserSpec } from "./services/UserRegistry.js"

export type { Addresses } from "./services/Server.js"
export type { Ban } from "./services/ConnectionGuard.js"
export type { AuthEvent, LoginFailed, LoginSucceeded, Logout, UploadCompleted } from "./services/Events.js"
export type { UserChanges, UserInfo, UserSpec } from "./services/UserRegistry.js"
export type { ServerConfigInput } from "./config/Config.js"

/**
 * A call that needs a listening server was made before `listen()` or after `close()`.
 * @category errors
 */
export class NotListening extends Data.TaggedError("NotListening")<{}> {
  override get message(): string {
    return "the server is not listening"
  }
}

type Runtime = ManagedRuntime.ManagedRuntime<
  Layer.Success<ReturnType<typeof ServerLayer.layer>>,
  Layer.Error<ReturnType<typeof ServerLayer.layer>>
>

/**
 * An SFTP (and later FTP/FTPS) server.
 * @category constructors
 */
export class Server {
  readonly #config: ServerConfigInput
  #runtime: Runtime | undefined

  constructor(config: ServerConfigInput) {
    this.#config = config
  }

  /**
   * Validates the config, binds every configured protocol and starts serving.
   * Rejects with ConfigError, ConfigFileError, ListenError, JailUnavailable or UserError.
   * Users changed at runtime are reset to the config's list when listening again.
   */
  async listen(): Promise<Addresses> {
    if (this.#runtime) throw new Error("the server is already listening")
    const config = await Effect.runPromise(decodeConfig(this.#config))
    const runtime = ManagedRuntime.make(ServerLayer.layer(config))
    try {
      await runtime.runPromise(Effect.void)
    } catch (error) {
      await runtime.dispose()
      throw error
    }
    this.#runtime = runtime
    return this.addresses
  }

  /** Where each protocol listens; empty when not listening. */
  get addresses(): Addresses {
    return this.#runtime?.runSync(ServerService.use((s) => Effect.succeed(s.addresses))) ?? {}
  }

  /**
   * Stops accepting connections. Live sessions run on until they end; the server's
   * resources are released then. Management calls need `listen()` again.
   */
  async close(): Promise<void> {
    const runtime = this.#take()
    if (!runtime) return
    await runtime.runPromise(ServerService.use((s) => s.close))
    // Release the server's resources once its last session has ended.
    const dispose = () => runtime.dispose()
    void runtime.runPromise(Sessions.use((s) => s.awaitEmpty)).then(dispose, dispose)
  }

  /**
   * Stops accepting, lets sessions finish for up to `timeoutMs`, interrupts the rest,
   * and releases everything. Resolves with how many sessions had to be interrupted.
   */
  async shutdown({ timeoutMs }: { readonly timeoutMs: number }): Promise<{ readonly forced: number }> {
    const runtime = this.#take()
    if (!runtime) return { forced: 0 }
    try {
      return await runtime.runPromise(ServerService.use((s) => s.shutdown(Duration.millis(timeoutMs))))
    } finally {
      await runtime.dispose()
    }
  }

  addUser(user: UserSpec): Promise<void> {
    return this.#users((r) => r.addUser(user))
  }
  updateUser(username: string, changes: UserChanges): Promise<void> {
    return this.#users((r) => r.updateUser(username, changes))
  }
  removeUser(username: string, options?: { readonly endSessions?: boolean }): Promise<void> {
    return this.#users((r) => r.removeUser(username, options))
  }
  removeAllUsers(options?: { readonly endSessions?: boolean }): Promise<number> {
    return this.#users((r) => r.removeAllUsers(options))
  }
  addUserKey(username: string, key: string): Promise<void> {
    return this.#users((r) => r.addUserKey(username, key))
  }
  removeUserKey(username: string, key: string): Promise<void> {
    return this.#users((r) => r.removeUserKey(username, key))
  }
  getUser(username: string): Promise<UserInfo> {
    return this.#users((r) => r.get(username))
  }
  listUsers(): Promise<ReadonlyArray<UserInfo>> {
    return this.#users((r) => r.list)
  }

  /** Client IPs banned after repeated login failures (config `bans`), with when each ban ends. */
  bans(): Promise<ReadonlyArray<Ban>> {
    return this.#guard((g) => g.bans)
  }
  /** Lifts the ban on `clientIp` and forgets its failures; false when it was not banned. */
  unban(clientIp: string): Promise<boolean> {
    return this.#guard((g) => g.unban(clientIp))
  }

  /** Completed uploads from the moment iteration starts until the server stops. */
  completedUploads(): AsyncIterable<UploadCompleted> {
    return Stream.toAsyncIterable(this.#events((e) => e.uploads))
  }

  /** Login successes, failures and logouts from the moment iteration starts. */
  authEvents(): AsyncIterable<AuthEvent> {
    return Stream.toAsyncIterable(this.#events((e) => e.authEvents))
  }

  #take(): Runtime | undefined {
    const runtime = this.#runtime
    this.#runtime = undefined
    return runtime
  }

  #users<A, E>(f: (registry: UserRegistry["Service"]) => Effect.Effect<A, E>): Promise<A> {
    const runtime = this.#runtime
    return runtime ? runtime.runPromise(UserRegistry.use(f)) : Promise.reject(new NotListening())
  }

  #guard<A>(f: (guard: ConnectionGuard["Service"]) => Effect.Effect<A>): Promise<A> {
    const runtime = this.#runtime
    return runtime ? runtime.runPromise(ConnectionGuard.use(f)) : Promise.reject(new NotListening())
  }

  #events<A>(f: (events: Events["Service"]) => Stream.Stream<A>): Stream.Stream<A> {
    const runtime = this.#runtime
    if (!runtime) return Stream.die(new NotListening())
    return f(runtime.runSync(Events.use((e) => Effect.succeed(e))))
  }
}
