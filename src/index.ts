/**
 * Portcullis: an embeddable, security-first SFTP and FTP/FTPS server.
 *
 * This is the Effect API: the services a server is made of, the layers that
 * implement them, and their models and errors. Plain-Promise users start from
 * `portcullis/promise` instead.
 */
export * as EventsHub from "./layers/EventsHub.js"
export * as JailNative from "./layers/JailNative.js"
export * as PasswordHash from "./layers/PasswordHash.js"
export * as SessionsFiberSet from "./layers/SessionsFiberSet.js"
export * as UserRegistryMemory from "./layers/UserRegistryMemory.js"
export * from "./services/Events.js"
export * from "./services/Jail.js"
export * from "./services/PasswordHasher.js"
export type * from "./services/Principal.js"
export type * from "./services/Protocol.js"
export * from "./services/Sessions.js"
export * from "./services/UserRegistry.js"
export * as Username from "./services/Username.js"
export * as VirtualPath from "./services/VirtualPath.js"
