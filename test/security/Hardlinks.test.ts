/**
 * Checklist A, hard links through hardlink@openssh.com on a real server (FTP
 * has no command that creates links): a link may only join two names inside
 * the user's root, to a regular file owned by the server's own uid. Files
 * outside, in another user's root, behind a planted symlink, owned by another
 * uid, directories and special files are refused, and nothing outside gains a
 * link (the canary digest includes link counts).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { call, connect } from "../utils/SftpClient.js"
import { bothSessions, sftpDo } from "./BothProtocols.js"
import { world } from "./World.js"

describe("A.hardlink (checklist A: hard links)", () => {
  it.effect("A.hardlink: hardlink@openssh.com to a file outside the root, in another root, behind a symlink, of another owner, to a directory or a FIFO is refused; only own regular files inside the root are linked", () =>
    Effect.gen(function*() {
      const w = yield* world()
      fs.symlinkSync(path.join(w.outside, "secret.txt"), path.join(w.root, "link-out"))
      execFileSync("mkfifo", [path.join(w.root, "fifo")])
      fs.writeFileSync(path.join(w.root, "foreign.txt"), "someone else's")
      const asRoot = process.getuid?.() === 0
      if (asRoot) fs.chownSync(path.join(w.root, "foreign.txt"), 1234, 1234)
      const { ftp, sftp } = yield* bothSessions(w.server)
      const canary = w.canary()
      const link = (from: string, to: string) => sftpDo(call((cb) => sftp.ext_openssh_hardlink(from, to, cb)))

      const refused: ReadonlyArray<readonly [string, string, string]> = [
        // Sources outside the root are names inside it, which do not exist.
        ["../outside/secret.txt", "/l1", "refused:NotFound"],
        ["/../../outside/secret.txt", "/l2", "refused:NotFound"],
        [`${w.outside}/secret.txt`, "/l3", "refused:NotFound"],
        ["../alicex/theirs.txt", "/l4", "refused:NotFound"],
        [`${w.sibling}/theirs.txt`, "/l5", "refused:NotFound"],
        // A symlink is not followed, and is not a regular file to link either.
        ["/link-out", "/l6", "refused:Unsupported"],
        ["/link-out/", "/l7", "refused:Unsupported"],
        // Directories and special files.
        ["/dir", "/l8", "refused:Unsupported"],
        ["/", "/l9", "refused:InvalidPath"],
        ["/fifo", "/l10", "refused:Unsupported"],
        // Targets outside the root land inside it (whose /outside does not exist) or nowhere.
        ["/a.txt", "../../outside/stolen", "refused:NotFound"],
        ["/a.txt", `${w.outside}/stolen`, "refused:NotFound"],
        ["/a.txt", "../alicex/stolen", "refused:NotFound"],
        ["/a.txt", "/link-out", "refused:AlreadyExists"],
        ["/a.txt", "/", "refused:InvalidPath"],
        ...(asRoot ? [["/foreign.txt", "/l11", "refused:PermissionDenied"] as const] : [])
      ]
      const failures: Array<string> = []
      for (const [from, to, expected] of refused) {
        const outcome = yield* link(from, to)
        if (outcome !== expected) failures.push(`${from} → ${to}: ${outcome}, expected ${expected}`)
      }
      assert.deepStrictEqual(failures, [])
      assert.strictEqual(w.canary(), canary)
      assert.strictEqual(fs.statSync(path.join(w.root, "foreign.txt")).nlink, 1)
      assert.deepStrictEqual(fs.readdirSync(w.root).sort(), ["a.txt", "dir", "fifo", "foreign.txt", "link-out"])

      // Inside the root, an own regular file links fine, also under a climbing name.
      assert.strictEqual(yield* link("/a.txt", "../../a-link.txt"), "ok")
      assert.strictEqual(fs.statSync(path.join(w.root, "a-link.txt")).ino, fs.statSync(path.join(w.root, "a.txt")).ino)
      // FTP offers no way to make a link at all.
      for (const line of ["SITE LINK a.txt b.txt", "SITE SYMLINK a.txt b.txt", "LINK a.txt b.txt"]) {
        assert.include([500, 502], (yield* ftp.command(line)).code, line)
      }
      // A read-only user may not link, even inside its root.
      const reader = (yield* connect(w.server.port, "reader", { password: "reader-password" })).sftp
      fs.writeFileSync(path.join(w.server.roots["reader"]!, "r.txt"), "r")
      assert.strictEqual(yield* sftpDo(call((cb) => reader.ext_openssh_hardlink("/r.txt", "/r2.txt", cb))), "refused:PermissionDenied")
    }))
})
