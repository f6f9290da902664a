/**
 * A real Portcullis server for integration tests: `Server.layer` on 127.0.0.1
 * port 0, an ephemeral host key, and users whose roots are fresh temp
 * directories. Everything is released with the test's scope.
 */
import { Context, Effect, Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import ssh2 from "ssh2"
import { decodeConfig, type ServerConfigInput } from "../../src/config/Config.js"
import * as ServerLayer from "../../src/layers/Server.js"
import { Server } from "../../src/services/Server.js"
import { tempDir } from "./TempDir.js"

export interface TestUser {
  readonly username: string
  readonly password?: string
  readonly canRead?: boolean
  readonly canWrite?: boolean
  readonly authorizedKeys?: ReadonlyArray<string>
}

export interface TestServerOptions {
  readonly users?: ReadonlyArray<TestUser>
  readonly config?: Omit<ServerConfigInput, "users">
  readonly sftp?: NonNullable<ServerConfigInput["sftp"]>
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
    fs.writeFileSync(hostKeyFile, ssh2.utils.generateKeyPairSync("ed25519", {}).private)
    const config = yield* decodeConfig({
      ...options.config,
      sftp: { address: "127.0.0.1:0", hostKeyFiles: [hostKeyFile], ...options.sftp },
      users: users.map((u) => ({
        username: u.username,
        root: roots[u.username]!,
        canRead: u.canRead ?? true,
        canWrite: u.canWrite ?? true,
        ...(u.password !== undefined ? { password: u.password } : {}),
        ...(u.authorizedKeys ? { authorizedKeys: u.authorizedKeys } : {})
      }))
    }).pipe(Effect.orDie)
    const context = yield* Layer.build(ServerLayer.layer(config)).pipe(Effect.orDie)
    const port = Context.get(context, Server).addresses.sftp!.port
    return { port, roots, base, context, hostKeyFile }
  })
