/**
 * The working default of `portcullis serve` without `--config`: state under
 * `./var` (mode 0700), a persistent ed25519 host key, a self-signed certificate
 * for FTPS, and a `demo` user jailed in `./var/home/demo` whose generated
 * password is printed once, at first start. Later starts reuse all of it. Users
 * live in the SQLite store `./var/portcullis.db` (hashes only), which the
 * `portcullis user` commands manage. SFTP listens on 127.0.0.1:2022 and FTP
 * (TLS required) on 127.0.0.1:2121; the environment overrides of Environment.ts
 * apply here as to a config file.
 */
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { generateSshKeyPair } from "../layers/SshKeys.js"
import type { ServerConfigInput } from "../config/Config.js"
import type { UserStoreFailure } from "./UserStore.js"
import { generateSelfSigned } from "./SelfSignedCertificate.js"
import { withUserStore } from "./UserStore.js"

/**
 * The default config, and the demo password when it was just created.
 * @category models
 */
export interface DefaultState {
  readonly config: ServerConfigInput
  readonly createdDemoPassword: string | undefined
}

const ensureDirectory = (dir: string) => {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
  fs.chmodSync(dir, 0o700)
}

/** Writes a new file readable by the owner only; never overwrites. */
const writePrivate = (file: string, data: string) => fs.writeFileSync(file, data, { mode: 0o600, flag: "wx" })

/**
 * Loads (or creates on first start) the default state under `stateDir`.
 * @category constructors
 */
export const loadDefaultState = (stateDir: string): Effect.Effect<DefaultState, UserStoreFailure> =>
  Effect.gen(function*() {
    const dir = path.resolve(stateDir)
    ensureDirectory(dir)
    const hostKey = path.join(dir, "host_ed25519")
    if (!fs.existsSync(hostKey)) writePrivate(hostKey, generateSshKeyPair("ed25519").private)
    const certFile = path.join(dir, "ftps.crt")
    const keyFile = path.join(dir, "ftps.key")
    if (!fs.existsSync(certFile) || !fs.existsSync(keyFile)) {
      const pair = yield* generateSelfSigned()
      fs.rmSync(certFile, { force: true })
      fs.rmSync(keyFile, { force: true })
      writePrivate(keyFile, pair.key)
      writePrivate(certFile, pair.cert)
    }
    const database = path.join(dir, "portcullis.db")
    // The demo user is created only when the store has no user at all.
    const createdDemoPassword = yield* withUserStore(database, (registry) =>
      Effect.gen(function*() {
        if ((yield* registry.list).length > 0) return undefined
        const root = path.join(dir, "home", "demo")
        ensureDirectory(path.dirname(root))
        ensureDirectory(root)
        const password = crypto.randomBytes(18).toString("base64url")
        yield* registry.addUser({ username: "demo", root, canRead: true, canWrite: true, password }).pipe(Effect.orDie)
        return password
      })
    )
    const config: ServerConfigInput = {
      sftp: { address: "127.0.0.1:2022", hostKeyFiles: [hostKey] },
      ftp: { address: "127.0.0.1:2121", tls: { certFile, keyFile } },
      users: { sqlite: database }
    }
    return { config, createdDemoPassword } satisfies DefaultState
  })
