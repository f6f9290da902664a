/**
 * Portcullis: an embeddable, security-first SFTP and FTP/FTPS server.
 *
 * This is the Effect API: `Server.layer(config)` runs a whole server and provides
 * the services it is made of (UserRegistry, Events, Sessions, Jail,
 * ConnectionGuard), so an Effect application can manage users, consume events
 * and list or lift bans beside it. Plain-Promise users
 * start from `portcullis/promise` instead.
 */
export * from "./config/Config.js"
export type { Address } from "./config/Address.js"
export * as ConnectionGuardMemory from "./layers/ConnectionGuardMemory.js"
export * as EventsHub from "./layers/EventsHub.js"
export * as JailNative from "./layers/JailNative.js"
export * as PasswordHash from "./layers/PasswordHash.js"
export * as Server from "./layers/Server.js"
export * as SessionsFiberSet from "./layers/SessionsFiberSet.js"
export * as UserRegistryMemory from "./layers/UserRegistryMemory.js"
export { AccessDenied, type AccessPolicy } from "./protocols/common/Access.js"
export { FtpServer } from "./protocols/ftp/Server.js"
export { ListenError, SftpServer } from "./protocols/sftp/Server.js"
export * from "./services/ConnectionGuard.js"
export * from "./services/Events.js"
export * from "./services/Jail.js"
export * from "./services/PasswordHasher.js"
export type * from "./services/Principal.js"
export type * from "./services/Protocol.js"
export * from "./services/Sessions.js"
export * from "./services/UserRegistry.js"
export * as Username from "./services/Username.js"
export * as VirtualPath from "./services/VirtualPath.js"
