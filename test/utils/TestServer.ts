/**
 * A real Portcullis server for integration tests: `Server.layer` on 127.0.0.1
 * port 0, an ephemeral host key, and users whose roots are fresh temp
 * directories. Everything is released with the test's scope.
 */
import { Context, Effect, Layer } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { decodeConfig, type ServerConfigInput } from "../../src/config/Config.js"
import * as ServerLayer from "../../src/layers/Server.js"
import type { Jail, JailUnavailable } from "../../src/services/Jail.js"
import { Server } from "../../src/services/Server.js"
import { tempDir } from "./TempDir.js"
import { generateSshKeyPair } from "../../src/layers/SshKeys.js"

export interface TestUser {
  readonly username: string
  readonly password?: string
  readonly canRead?: boolean
  readonly canWrite?: boolean
  readonly authorizedKeys?: ReadonlyArray<string>
}

export interface TestServerOptions {
  readonly users?: ReadonlyArray<TestUser>
  readonly config?: Omit<ServerConfigInput, "users" | "sftp" | "ftp">
  readonly sftp?: NonNullable<ServerConfigInput["sftp"]>
  /** Turns FTP on (127.0.0.1:0, a self-signed certificate, implicit FTPS too); fields override. */
  readonly ftp?: Partial<NonNullable<ServerConfigInput["ftp"]>>
  /** Another Jail layer than the native one (test/utils/FaultyJail.ts wraps it to inject faults). */
  readonly jail?: Layer.Layer<Jail, JailUnavailable>
}

/** A self-signed P-256 certificate for localhost, made with openssl at test time. */
export const selfSignedCertificate = (dir: string) => {
  const certFile = path.join(dir, "ftps.crt")
  const keyFile = path.join(dir, "ftps.key")
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-keyout", keyFile, "-out", certFile
  ], { stdio: "ignore" })
  return { certFile, keyFile }
}

export const defaultUsers: ReadonlyArray<TestUser> = [
  { username: "alice", password: "alice-password" },
  { username: "reader", password: "reader-password", canWrite: false },
  { username: "writer", password: "writer-password", canRead: false }
]

/** Starts a server; returns its port, each user's root, the temp base dir and the service context. */
export const testServer = (options: TestServerOptions = {}) =>
  Effect.gen(function*() {
    const base = yield* tempDir("portcullis-srv-")
    const users = options.users ?? defaultUsers
    const roots: Record<string, string> = {}
    for (const user of users) {
      roots[user.username] = path.join(base, "home", user.username)
      fs.mkdirSync(roots[user.username]!, { recursive: true })
    }
    const hostKeyFile = path.join(base, "host_ed25519")
    fs.writeFileSync(hostKeyFile, generateSshKeyPair("ed25519").private)
    const tls = options.ftp ? selfSignedCertificate(base) : undefined
    const config = yield* decodeConfig({
      ...options.config,
      sftp: { address: "127.0.0.1:0", hostKeyFiles: [hostKeyFile], ...options.sftp },
      ...(options.ftp
        ? { ftp: { address: "127.0.0.1:0", implicitTLSAddress: "127.0.0.1:0", passivePorts: "40000-49999", tls, ...options.ftp } }
        : {}),
      users: users.map((u) => ({
        username: u.username,
        root: roots[u.username]!,
        canRead: u.canRead ?? true,
        canWrite: u.canWrite ?? true,
        ...(u.password !== undefined ? { password: u.password } : {}),
        ...(u.authorizedKeys ? { authorizedKeys: u.authorizedKeys } : {})
      }))
    }).pipe(Effect.orDie)
    const serverLayer = options.jail ? ServerLayer.layerWithJail(config, options.jail) : ServerLayer.layer(config)
    const context = yield* Layer.build(serverLayer).pipe(Effect.orDie)
    const addresses = Context.get(context, Server).addresses
    return {
      port: addresses.sftp!.port,
      ftpPort: addresses.ftp?.port ?? 0,
      ftpsPort: addresses.ftps?.port ?? 0,
      certFile: tls?.certFile ?? "",
      roots,
      base,
      context,
      hostKeyFile
    }
  })
