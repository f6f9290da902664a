/**
 * `Server.layer(config)`: the whole server from one validated configuration.
 *
 * It builds one instance of each service (Sessions, Events, Jail, PasswordHasher,
 * UserRegistry, ConnectionGuard) and the listeners of the enabled protocols on top of them, and
 * provides all of them, so an Effect application can manage users or subscribe
 * to events next to the running server. The listeners stop and every session is
 * interrupted when the layer's scope closes; use `Server.shutdown` first for a
 * graceful stop.
 */
import { Effect, Layer } from "effect"
import * as fs from "node:fs/promises"
import * as tls from "node:tls"
import ssh2 from "ssh2"
import { parseAddress } from "../config/Address.js"
import { durationOf, type ServerConfig } from "../config/Config.js"
import { ConfigFileError } from "../config/ConfigFileError.js"

export { ConfigFileError } from "../config/ConfigFileError.js"
import * as FtpServer from "../protocols/ftp/Server.js"
import * as SftpServer from "../protocols/sftp/Server.js"
import type { Events } from "../services/Events.js"
import type { Jail, JailUnavailable } from "../services/Jail.js"
import type { ConnectionGuard } from "../services/ConnectionGuard.js"
import { Server } from "../services/Server.js"

export { Server } from "../services/Server.js"
export type { Addresses } from "../services/Server.js"
import type { PasswordHasher } from "../services/PasswordHasher.js"
import { Sessions } from "../services/Sessions.js"
import { type UserError, UserRegistry, type UserSpec } from "../services/UserRegistry.js"
import * as ConnectionGuardMemory from "./ConnectionGuardMemory.js"
import * as EventsHub from "./EventsHub.js"
import * as JailNative from "./JailNative.js"
import * as PasswordHash from "./PasswordHash.js"
import * as SessionsFiberSet from "./SessionsFiberSet.js"
import { generateSshKeyPair } from "./SshKeys.js"
import * as UserRecord from "./UserRecord.js"
import * as UserRegistryMemory from "./UserRegistryMemory.js"
import * as UserRegistrySqlite from "./UserRegistrySqlite.js"

/**
 * Everything building the server can fail with.
 * @category errors
 */
export type ServerError = SftpServer.ListenError | ConfigFileError | JailUnavailable | UserError | UserRegistrySqlite.UserStoreError

/**
 * The services `Server.layer` provides.
 * @category models
 */
export type ServerServices = Server | Sessions | Events | UserRegistry | Jail | ConnectionGuard

const readConfigFile = (field: string, file: string) =>
  Effect.tryPromise({
    try: () => fs.readFile(file),
    catch: (cause) => new ConfigFileError({ field, problem: `cannot read ${file} (${(cause as NodeJS.ErrnoException).code ?? "error"})` })
  })

const readHostKey = (file: string, index: number) =>
  Effect.gen(function*() {
    const field = `sftp.hostKeyFiles[${index}]`
    const data = yield* readConfigFile(field, file)
    const key = ssh2.utils.parseKey(data)
    if (key instanceof Error || !key.isPrivateKey()) {
      return yield* new ConfigFileError({ field, problem: `${file} is not an unencrypted private key in PEM or OpenSSH format` })
    }
    return data
  })

const hostKeys = (files: ReadonlyArray<string> | undefined) =>
  files && files.length > 0
    ? Effect.forEach(files, readHostKey)
    : Effect.logWarning("no sftp.hostKeyFiles configured: using an ephemeral ed25519 host key; clients will see a new host key after every restart").pipe(
      Effect.as([Buffer.from(generateSshKeyPair("ed25519").private)])
    )

/**
 * Reads every file the config names (host keys, TLS certificate and key) the way
 * the server will, without binding anything: `portcullis check-config`.
 * @category constructors
 */
export const checkFiles = (config: ServerConfig): Effect.Effect<void, ConfigFileError> =>
  Effect.gen(function*() {
    if (config.sftp?.hostKeyFiles) yield* Effect.forEach(config.sftp.hostKeyFiles, readHostKey, { discard: true })
    if (config.ftp?.tls) yield* readTls(config.ftp.tls)
    // The users of an inline list, checked by the same rules the registry applies.
    yield* Effect.forEach(Array.isArray(config.users) ? config.users : [], (user: UserSpec, index: number) =>
      UserRecord.toStored(PasswordHash.hasher, user).pipe(
        Effect.mapError((error) => new ConfigFileError({ field: `users[${index}]`, problem: `${error.reason} (${error.detail})` }))
      ), { discard: true })
  })

const sftpLayer = (config: ServerConfig) => {
  const sftp = config.sftp
  if (!sftp) return Layer.empty
  return Layer.unwrap(Effect.map(hostKeys(sftp.hostKeyFiles), (keys) =>
    SftpServer.layer({
      address: parseAddress(sftp.address)!,
      hostKeys: keys,
      algorithms: { kex: sftp.kex, ciphers: sftp.ciphers, macs: sftp.macs, publicKeyAlgorithms: sftp.publicKeyAlgorithms },
      handshakeTimeout: durationOf(sftp.handshakeTimeout),
      policy: { allowChown: config.allowChown, allowChtimes: config.allowChtimes },
      tempExtensions: config.tempExtensions
    })))
}

/** Reads and checks the FTPS certificate and key (a mismatch or bad PEM is a config error). */
const readTls = (files: { readonly certFile: string; readonly keyFile: string }) =>
  Effect.gen(function*() {
    const cert = yield* readConfigFile("ftp.tls.certFile", files.certFile)
    const key = yield* readConfigFile("ftp.tls.keyFile", files.keyFile)
    yield* Effect.try({
      try: () => tls.createSecureContext({ cert, key }),
      catch: () => new ConfigFileError({ field: "ftp.tls", problem: "the certificate and key are not a matching PEM pair" })
    })
    return { cert, key }
  })

const ftpLayer = (config: ServerConfig) => {
  const ftp = config.ftp
  if (!ftp) return Layer.empty
  return Layer.unwrap(Effect.map(ftp.tls ? readTls(ftp.tls) : Effect.succeed(undefined), (tlsFiles) =>
    FtpServer.layer({
      address: parseAddress(ftp.address)!,
      implicitTlsAddress: ftp.implicitTLSAddress === undefined ? undefined : parseAddress(ftp.implicitTLSAddress)!,
      tls: tlsFiles,
      passivePorts: ftp.passivePorts,
      passiveAddress: ftp.passiveAddress,
      dataAcceptTimeout: durationOf(ftp.dataAcceptTimeout),
      allowActiveMode: ftp.allowActiveMode,
      requireTls: ftp.requireTLS,
      requireSessionReuse: ftp.requireSessionReuse,
      policy: { allowChown: config.allowChown, allowChtimes: config.allowChtimes },
      tempExtensions: config.tempExtensions
    })))
}

/** Makes the registry hold exactly `users` (SIGHUP with an inline list); live sessions stay. */
const syncUsers = (registry: UserRegistry["Service"], users: ReadonlyArray<UserSpec>) =>
  Effect.gen(function*() {
    const before = new Set((yield* registry.list).map((u) => u.username))
    for (const user of users) {
      if (!before.has(user.username)) {
        yield* registry.addUser(user)
        continue
      }
      yield* registry.updateUser(user.username, {
        root: user.root,
        canRead: user.canRead,
        canWrite: user.canWrite,
        authorizedKeys: user.authorizedKeys ?? [],
        disabled: user.disabled ?? false,
        ...(user.password !== undefined
          ? { password: user.password }
          : user.passwordHash !== undefined
          ? { passwordHash: user.passwordHash }
          : { password: null })
      })
    }
    const kept = new Set(users.map((u) => u.username))
    yield* Effect.forEach([...before].filter((name) => !kept.has(name)), (name) => registry.removeUser(name), { discard: true })
  })

const serverService = Layer.effect(
  Server,
  Effect.gen(function*() {
    const sessions = yield* Sessions
    const registry = yield* UserRegistry
    const sftp = yield* Effect.serviceOption(SftpServer.SftpServer)
    const ftp = yield* Effect.serviceOption(FtpServer.FtpServer)
    return Server.of({
      addresses: {
        ...(sftp._tag === "Some" ? { sftp: sftp.value.address } : {}),
        ...(ftp._tag === "Some" ? { ftp: ftp.value.address } : {}),
        ...(ftp._tag === "Some" && ftp.value.implicitTlsAddress ? { ftps: ftp.value.implicitTlsAddress } : {})
      },
      close: sessions.close,
      shutdown: sessions.shutdown,
      reload: (config) =>
        Effect.gen(function*() {
          if (config.ftp?.tls && ftp._tag === "Some") yield* ftp.value.reloadTls(yield* readTls(config.ftp.tls))
          if (Array.isArray(config.users)) yield* syncUsers(registry, config.users)
        })
    })
  })
)

/**
 * The whole server for `config` (decode it with `decodeConfig` first).
 * @category layers
 */
export const layer = (config: ServerConfig): Layer.Layer<ServerServices, ServerError> => layerWithJail(config, JailNative.layer())

/**
 * `layer` on another Jail layer: fault-injection tests pass the real one wrapped
 * (test/utils/FaultyJail.ts), so every byte still goes through openat2.
 * @category testing
 */
export const layerWithJail = (
  config: ServerConfig,
  jail: Layer.Layer<Jail, JailUnavailable>
): Layer.Layer<ServerServices, ServerError> => {
  const core = Layer.mergeAll(
    SessionsFiberSet.layer({ idleTimeout: durationOf(config.idleTimeout) }),
    EventsHub.layer(),
    ConnectionGuardMemory.layer({
      maxPreAuthConnections: config.maxPreAuthConnections,
      maxPreAuthConnectionsPerIp: config.maxPreAuthConnectionsPerIp,
      bans: { maxFailures: config.bans.maxFailures, window: durationOf(config.bans.window), duration: durationOf(config.bans.duration) }
    }),
    jail,
    PasswordHash.layer
  )
  const users: Layer.Layer<UserRegistry, UserError | UserRegistrySqlite.UserStoreError, Sessions | PasswordHasher> = "sqlite" in config.users
    ? UserRegistrySqlite.layer(config.users.sqlite)
    : UserRegistryMemory.layer(config.users)
  const withUsers = users.pipe(Layer.provideMerge(core))
  const listeners = Layer.merge(sftpLayer(config), ftpLayer(config)).pipe(Layer.provideMerge(withUsers))
  return serverService.pipe(Layer.provideMerge(listeners))
}
