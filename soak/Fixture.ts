/**
 * Everything the soak's server needs on disk, in one temp directory removed at
 * the end: an ed25519 host key (ssh-keygen), a self-signed certificate for
 * explicit FTPS (openssl), and one root per user: users for the idle sessions,
 * users for the transfers (each root holds the file downloads read), and one
 * for the latency prober.
 */
import { execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { Login } from "./Messages.ts"
import type { Settings } from "./Settings.ts"

export interface User extends Login {
  readonly root: string
}

export interface Fixture {
  readonly base: string
  readonly hostKeyFile: string
  readonly certFile: string
  readonly keyFile: string
  readonly idleUsers: ReadonlyArray<User>
  readonly transferUsers: ReadonlyArray<User>
  readonly prober: User
  /** Name of the file every transfer user's root holds, and its sha256. */
  readonly downloadPath: string
  readonly downloadSha256: string
  readonly statPath: string
  readonly remove: () => void
}

const makeUser = (base: string, username: string): User => {
  const root = path.join(base, "home", username)
  fs.mkdirSync(root, { recursive: true })
  return { username, password: crypto.randomBytes(12).toString("hex"), root }
}

export const makeFixture = (settings: Settings): Fixture => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-soak-"))
  const remove = () => fs.rmSync(base, { recursive: true, force: true })
  try {
    const hostKeyFile = path.join(base, "host_ed25519")
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "portcullis-soak", "-f", hostKeyFile], { stdio: "ignore" })
    const certFile = path.join(base, "ftps.crt")
    const keyFile = path.join(base, "ftps.key")
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "-keyout", keyFile, "-out", certFile
    ], { stdio: "ignore" })
    const idleUsers = Array.from({ length: settings.users }, (_, i) => makeUser(base, `soak-idle-${i}`))
    const transferUsers = Array.from({ length: settings.users }, (_, i) => makeUser(base, `soak-xfer-${i}`))
    const prober = makeUser(base, "soak-probe")
    const downloadPath = "download.bin"
    const content = crypto.randomBytes(settings.fileBytes)
    for (const user of transferUsers) fs.writeFileSync(path.join(user.root, downloadPath), content)
    const statPath = "probe.txt"
    fs.writeFileSync(path.join(prober.root, statPath), "stat me\n")
    return {
      base,
      hostKeyFile,
      certFile,
      keyFile,
      idleUsers,
      transferUsers,
      prober,
      downloadPath,
      downloadSha256: crypto.createHash("sha256").update(content).digest("hex"),
      statPath,
      remove
    }
  } catch (error) {
    remove()
    throw error
  }
}
