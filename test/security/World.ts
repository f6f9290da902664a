/**
 * The setting of the adversarial suite: one real server with SFTP and FTP on
 * (plain FTP control connections, since these tests are about paths and files,
 * not TLS), and around the attacked user's root the things an escape would
 * reach: an `outside` directory holding a secret (the canary), and the root of
 * a user whose name extends the attacked one (`alice` / `alicex`: a string-prefix
 * containment check would let one into the other).
 *
 * `canary()` hashes names, types, modes, sizes, times and contents of both, so a
 * test proves "nothing outside was read into a reply, written or changed" by
 * comparing it before and after, and by searching replies for `SECRET`.
 */
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { ftpTestServer } from "../utils/FtpRawClient.js"
import type { TestServerOptions } from "../utils/TestServer.js"

/** What every file outside the attacked root contains: it must never reach a client. */
export const SECRET = "SECRET-OUTSIDE-THE-JAIL-5f0c2b"

/** A digest of every name, type, mode, size, time and content under `dir` (symlinks by their target). */
export const digest = (dir: string): string => {
  const hash = crypto.createHash("sha256")
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      const p = path.join(d, name)
      const s = fs.lstatSync(p)
      hash.update(`${path.relative(dir, p)}:${s.mode}:${s.size}:${s.mtimeMs}:${s.nlink}\n`)
      if (s.isDirectory()) walk(p)
      else if (s.isFile()) hash.update(fs.readFileSync(p))
      else if (s.isSymbolicLink()) hash.update(fs.readlinkSync(p))
    }
  }
  walk(dir)
  return hash.digest("hex")
}

export interface WorldOptions {
  readonly config?: TestServerOptions["config"]
  readonly ftp?: TestServerOptions["ftp"]
  readonly sftp?: TestServerOptions["sftp"]
}

/**
 * A server whose user `alice` has a root with `a.txt` ("A") and `dir/b.txt`
 * ("B"); `outside/secret.txt`, `outside/d/f` and the sibling root's
 * `theirs.txt` hold SECRET. Users: alice, alicex (the sibling), reader (read-only).
 */
export const world = (options: WorldOptions = {}) =>
  Effect.gen(function*() {
    const server = yield* ftpTestServer({
      users: [
        { username: "alice", password: "alice-password" },
        { username: "alicex", password: "alicex-password" },
        { username: "reader", password: "reader-password", canWrite: false }
      ],
      ftp: { requireTLS: false, ...options.ftp },
      ...(options.sftp ? { sftp: options.sftp } : {}),
      ...(options.config ? { config: options.config } : {})
    })
    const root = server.roots["alice"]!
    const sibling = server.roots["alicex"]!
    const outside = path.join(server.base, "outside")
    fs.mkdirSync(path.join(outside, "d"), { recursive: true })
    fs.writeFileSync(path.join(outside, "secret.txt"), SECRET)
    fs.writeFileSync(path.join(outside, "d", "f"), SECRET)
    fs.writeFileSync(path.join(sibling, "theirs.txt"), SECRET)
    fs.writeFileSync(path.join(root, "a.txt"), "A")
    fs.mkdirSync(path.join(root, "dir"))
    fs.writeFileSync(path.join(root, "dir", "b.txt"), "B")
    return {
      server,
      root,
      sibling,
      outside,
      /** The digest of everything an escape could touch (outside and the sibling root). */
      canary: () => `${digest(outside)}|${digest(sibling)}`
    }
  })
