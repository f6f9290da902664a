/**
 * Checklist A (rename semantics) and G (directory renames are not uploads),
 * through both protocols against a real server: the root can neither be
 * renamed nor be renamed onto, a directory never moves into its own subtree,
 * and renaming something that is not a regular file away from a temporary
 * extension never publishes UploadCompleted.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Option, Queue, Stream } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { Events, type UploadCompleted } from "../../src/services/Events.js"
import { call } from "../utils/SftpClient.js"
import { bothSessions, ftpDo, ftpWrite, type Outcome, sftpDo, sftpWrite } from "./BothProtocols.js"
import { digest, world } from "./World.js"

/** RNFR then RNTO: the first refusal, or the outcome of RNTO. */
const ftpRename = (ftp: Effect.Success<ReturnType<typeof bothSessions>>["ftp"], from: string, to: string) =>
  Effect.gen(function*() {
    const first = yield* ftpDo(ftp, `RNFR ${from}`)
    if (first !== "ok") return `RNFR:${first}`
    return yield* ftpDo(ftp, `RNTO ${to}`)
  })

const uploadsOf = (context: Context.Context<Events>) =>
  Effect.gen(function*() {
    const stream: Stream.Stream<UploadCompleted> = yield* Context.get(context, Events).subscribeUploads
    return yield* Stream.toQueue(stream, { capacity: "unbounded" })
  })

describe("A.rename (checklist A: rename semantics)", () => {
  it.effect("A.rename: the root (\"/\", \".\", \"\", \"/..\") is never renamed and nothing is renamed onto it (SFTP rename, posix-rename; FTP RNFR/RNTO)", () =>
    Effect.gen(function*() {
      const w = yield* world()
      const { ftp, sftp } = yield* bothSessions(w.server)
      const rootInode = fs.statSync(w.root).ino
      const before = digest(w.root)
      const canary = w.canary()
      const parentBefore = fs.readdirSync(path.dirname(w.root)).sort()

      const seen = new Set<string>()
      const attempt = (from: string, to: string) =>
        Effect.gen(function*() {
          const rename = yield* sftpDo(call((cb) => sftp.rename(from, to, cb)))
          const posix = yield* sftpDo(call((cb) => sftp.ext_openssh_rename(from, to, cb)))
          const rnto = yield* ftpRename(ftp, from, to)
          seen.add(`${rename} ${posix} ${rnto}`)
        })
      for (const from of ["/", ".", "", "/..", "//", "/./.", "dir/.."]) {
        for (const to of ["/moved", "dir/moved", "../moved"]) yield* attempt(from, to)
      }
      // Onto the root: a file, and a directory, given the root's name as the new one.
      for (const from of ["/a.txt", "/dir"]) {
        for (const to of ["/", ".", "/..", "dir/..", "//"]) yield* attempt(from, to)
      }
      // The name the kernel would act on is empty: an invalid name, in both protocols.
      assert.deepStrictEqual([...seen], ["refused:InvalidPath refused:InvalidPath refused:InvalidPath"])
      assert.strictEqual(fs.statSync(w.root).ino, rootInode, "the root is the same directory")
      assert.strictEqual(digest(w.root), before, "nothing inside the root moved")
      assert.deepStrictEqual(fs.readdirSync(path.dirname(w.root)).sort(), parentBefore, "nothing appeared beside the root")
      assert.strictEqual(w.canary(), canary)
      // Both sessions still work.
      assert.strictEqual(yield* ftpDo(ftp, "PWD"), "ok")
      assert.strictEqual(yield* sftpDo(call((cb) => sftp.rename("/a.txt", "/a2.txt", cb))), "ok")
    }))

  it.effect("A.rename: a directory into its own subtree is refused (SFTP rename, posix-rename; FTP RNFR/RNTO)", () =>
    Effect.gen(function*() {
      const w = yield* world()
      fs.mkdirSync(path.join(w.root, "d", "sub", "deeper"), { recursive: true })
      fs.writeFileSync(path.join(w.root, "d", "sub", "f"), "f")
      const { ftp, sftp } = yield* bothSessions(w.server)
      const before = digest(w.root)
      const cases: ReadonlyArray<readonly [string, string]> = [
        ["/d", "/d/x"],
        ["/d", "/d/sub/x"],
        ["/d", "/d/sub/deeper/x"],
        ["d", "d/./sub/../y"],
        ["/d/", "/d/sub/../../d/z"],
        ["/d/sub", "/d/sub/deeper/x"],
        // Onto its own parent or ancestor (which is not empty).
        ["/d/sub", "/d"],
        ["/d/sub/deeper", "/d"]
      ]
      const outcomes: Array<string> = []
      for (const [from, to] of cases) {
        const rename = yield* sftpDo(call((cb) => sftp.rename(from, to, cb)))
        const posix = yield* sftpDo(call((cb) => sftp.ext_openssh_rename(from, to, cb)))
        const rnto = yield* ftpRename(ftp, from, to)
        outcomes.push(`${from} → ${to}: ${rename} ${posix} ${rnto}`)
        for (const outcome of [rename, posix, rnto]) assert.match(outcome, /^refused:/, `${from} → ${to}: ${outcome}`)
      }
      // The kernel's answer (EINVAL) reads as an invalid name in both protocols.
      assert.deepStrictEqual(outcomes.slice(0, 6).map((o) => o.split(": ")[1]), Array(6).fill("refused:InvalidPath refused:InvalidPath refused:InvalidPath"))
      assert.strictEqual(digest(w.root), before, "the tree did not change")
      // A legitimate move of the same directory still works.
      assert.strictEqual(yield* ftpRename(ftp, "/d/sub/deeper", "/deeper"), "ok")
      assert.strictEqual(yield* sftpDo(call((cb) => sftp.ext_openssh_rename("/d", "/deeper/d", cb))), "ok")
      assert.isTrue(fs.existsSync(path.join(w.root, "deeper", "d", "sub", "f")))
    }))
})

describe("G.events (checklist G: temporary uploads and renames)", () => {
  it.effect("G.rename: a directory, symlink or FIFO renamed from x.tmp to x is never announced as an upload; a temp file is, once (SFTP rename, posix-rename; FTP RNFR/RNTO)", () =>
    Effect.gen(function*() {
      const w = yield* world({ config: { tempExtensions: [".tmp", ".writing"] } })
      const events = yield* uploadsOf(w.server.context)
      const { ftp, sftp } = yield* bothSessions(w.server)
      // Directories with a file inside (a rename must not be taken for the upload of that file).
      for (const name of ["s.tmp", "p.tmp", "f.tmp", "s.writing"]) {
        fs.mkdirSync(path.join(w.root, name))
        fs.writeFileSync(path.join(w.root, name, "inside.bin"), "data")
      }
      // Things a local user planted: a symlink to a file and a FIFO, both with a temporary name.
      fs.symlinkSync(path.join(w.outside, "secret.txt"), path.join(w.root, "link.tmp"))
      execFileSync("mkfifo", [path.join(w.root, "fifo.tmp")])

      const renamed: Array<Outcome> = [
        yield* sftpDo(call((cb) => sftp.rename("/s.tmp", "/s", cb))),
        yield* sftpDo(call((cb) => sftp.ext_openssh_rename("/p.tmp", "/p", cb))),
        yield* sftpDo(call((cb) => sftp.rename("/s.writing", "/w", cb))),
        yield* sftpDo(call((cb) => sftp.rename("/link.tmp", "/link", cb))),
        yield* ftpDo(ftp, "RNFR f.tmp"),
        yield* ftpDo(ftp, "RNTO f"),
        yield* ftpDo(ftp, "RNFR fifo.tmp"),
        yield* ftpDo(ftp, "RNTO fifo"),
        // A directory made by the client itself, under a temporary name.
        yield* sftpDo(call((cb) => sftp.mkdir("/made.tmp", cb))),
        yield* sftpDo(call((cb) => sftp.rename("/made.tmp", "/made", cb))),
        yield* ftpDo(ftp, "MKD ftp-made.tmp"),
        yield* ftpDo(ftp, "RNFR ftp-made.tmp"),
        yield* ftpDo(ftp, "RNTO ftp-made")
      ]
      assert.deepStrictEqual(renamed, Array(renamed.length).fill("ok"))
      assert.isTrue(fs.statSync(path.join(w.root, "f")).isDirectory())
      assert.isTrue(fs.lstatSync(path.join(w.root, "link")).isSymbolicLink())

      // Sentinels: a real temp upload through each protocol, then its rename. These are the only events.
      assert.strictEqual(yield* sftpWrite(sftp, "/upload.bin.tmp", "sftp-bytes"), "ok")
      assert.strictEqual(yield* sftpDo(call((cb) => sftp.rename("/upload.bin.tmp", "/upload.bin", cb))), "ok")
      assert.strictEqual(yield* ftpWrite(ftp, "ftp-upload.bin.tmp", "ftp-bytes"), "ok")
      assert.strictEqual(yield* ftpDo(ftp, "RNFR ftp-upload.bin.tmp"), "ok")
      assert.strictEqual(yield* ftpDo(ftp, "RNTO ftp-upload.bin"), "ok")
      const first = yield* Queue.take(events)
      const second = yield* Queue.take(events)
      assert.deepStrictEqual([first, second].map((e) => [e.protocol, e.path, e.size]), [
        ["sftp", "/upload.bin", 10],
        ["ftp", "/ftp-upload.bin", 9]
      ])
      assert.isTrue(Option.isNone(yield* Queue.poll(events)), "nothing else was announced")
    }))
})
