/**
 * The real server the integration fuzzers attack: `Server.layer` with SFTP and
 * plain FTP on 127.0.0.1 port 0, one user `alice` whose root is a fresh temp
 * directory with canaries beside it (Canary.ts), chown and times allowed so
 * every setstat path runs, bans off.
 *
 * The password is stored as an argon2id hash with the smallest parameters the
 * registry accepts: the fuzzers log in once per case, and the OWASP-strength
 * default (19 MiB, 2 passes) would make a long run spend its time hashing.
 * `resetRoot` puts the root back to the same few entries before every case, so
 * a failing case replays the same way on its own.
 */
import { Context, Effect, Layer } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { decodeConfig } from "../../src/config/Config.js"
import * as ServerLayer from "../../src/layers/Server.js"
import { Server } from "../../src/services/Server.js"
import { validHostKey } from "../utils/FtpRawClient.js"
import { tempDir } from "../utils/TempDir.js"
import { selfSignedCertificate } from "../utils/TestServer.js"
import { outsideDigest, plantCanaries, plantEscapeLinks } from "./Canary.js"

/** alice's password. */
export const password = "alice-fuzz-password"

/** argon2id at the registry's floor (8 KiB, 1 pass): microseconds per login instead of tens of milliseconds. */
const cheapHash = (secret: string): string => {
  const salt = crypto.randomBytes(16)
  const tag = crypto.argon2Sync("argon2id", { message: secret, nonce: salt, memory: 8, passes: 1, parallelism: 1, tagLength: 32 })
  const b64 = (bytes: Buffer) => bytes.toString("base64").replace(/=+$/, "")
  return `$argon2id$v=19$m=8,t=1,p=1$${b64(salt)}$${b64(tag)}`
}

/**
 * Recreates the root's baseline: `f` ("hello"), `d/g` ("inner"), `d/e/` (empty),
 * `t.tmp` (a temp-extension name), and symlinks to the canaries (Canary.ts).
 * Anything a case left behind is removed.
 * @category testing
 */
export const resetRoot = (root: string): void => {
  // Requests of a session whose client left may still be running on the server
  // and create entries while this runs (ENOTEMPTY, EEXIST): start over then.
  for (let attempt = 1; ; attempt++) {
    try {
      for (const name of fs.readdirSync(root)) fs.rmSync(path.join(root, name), { recursive: true, force: true, maxRetries: 3 })
      fs.chmodSync(root, 0o755)
      fs.writeFileSync(path.join(root, "f"), "hello")
      fs.mkdirSync(path.join(root, "d", "e"), { recursive: true })
      fs.writeFileSync(path.join(root, "d", "g"), "inner")
      fs.writeFileSync(path.join(root, "t.tmp"), "temp")
      plantEscapeLinks(root)
      return
    } catch (error) {
      if (attempt >= 5) throw error
    }
  }
}

/**
 * Starts the server (released with the scope). `outside()` digests everything
 * under the temp base except alice's root.
 * @category testing
 */
export const fuzzServer = Effect.gen(function*() {
  const base = yield* tempDir("portcullis-fuzz-")
  const root = path.join(base, "home", "alice")
  fs.mkdirSync(root, { recursive: true })
  resetRoot(root)
  plantCanaries(root)
  const hostKeyFile = path.join(base, "host_ed25519")
  fs.writeFileSync(hostKeyFile, validHostKey())
  const tls = selfSignedCertificate(base)
  const config = yield* decodeConfig({
    sftp: { address: "127.0.0.1:0", hostKeyFiles: [hostKeyFile] },
    ftp: { address: "127.0.0.1:0", passivePorts: "40000-49999", requireTLS: false, tls },
    allowChown: true,
    allowChtimes: true,
    // The fuzzers send wrong passwords on purpose, all from 127.0.0.1: bans would end the run (test/security/Bans.test.ts covers them).
    bans: { maxFailures: 0 },
    users: [{ username: "alice", passwordHash: cheapHash(password), root }]
  }).pipe(Effect.orDie)
  const context = yield* Layer.build(ServerLayer.layer(config)).pipe(Effect.orDie)
  const { ftp, sftp } = Context.get(context, Server).addresses
  return {
    sftpPort: sftp!.port,
    ftpPort: ftp!.port,
    base,
    root,
    context,
    outside: () => outsideDigest(base, [root])
  }
})
