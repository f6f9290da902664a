/**
 * Checklist A, attributes through both protocols of a real server: setuid,
 * setgid and sticky bits never survive an SFTP SETSTAT, FSETSTAT, LSETSTAT, or
 * the attributes of OPEN and MKDIR, and FTP has no way to change a mode at all
 * (SITE CHMOD is 502); ownership changes only with `allowChown` and times only
 * with `allowChtimes` (SFTP SETSTAT/FSETSTAT/LSETSTAT times, FTP MFMT), and FEAT
 * announces MFMT only when it is allowed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { call } from "../utils/SftpClient.js"
import { bothSessions, ftpDo, ftpWrite, sftpDo } from "./BothProtocols.js"
import { world } from "./World.js"

const special = 0o7000

describe("A.attributes (checklist A: modes, ownership and times)", () => {
  it.effect("A.setstat: setuid, setgid and sticky are stripped from SFTP SETSTAT, FSETSTAT, LSETSTAT and OPEN/MKDIR attributes; FTP SITE CHMOD is 502 and uploads are created without them", () =>
    Effect.gen(function*() {
      const w = yield* world()
      const { ftp, sftp } = yield* bothSessions(w.server)
      const mode = (name: string) => fs.statSync(path.join(w.root, name)).mode & 0o7777
      fs.mkdirSync(path.join(w.root, "shared"))

      for (const [requested, kept] of [[0o4777, 0o777], [0o2755, 0o755], [0o1777, 0o777], [0o7777, 0o777], [0o6711, 0o711]] as const) {
        assert.strictEqual(yield* sftpDo(call((cb) => sftp.chmod("/a.txt", requested, cb))), "ok")
        assert.strictEqual(mode("a.txt"), kept, `SETSTAT ${requested.toString(8)}`)
        assert.strictEqual(yield* sftpDo(call((cb) => sftp.ext_openssh_lsetstat("/dir/b.txt", { mode: requested }, cb))), "ok")
        assert.strictEqual(mode("dir/b.txt"), kept, `LSETSTAT ${requested.toString(8)}`)
        assert.strictEqual(yield* sftpDo(call((cb) => sftp.chmod("/shared", requested, cb))), "ok")
        assert.strictEqual(mode("shared"), kept, `SETSTAT on a directory ${requested.toString(8)}`)
      }
      const handle = yield* call<Buffer>((cb) => sftp.open("/a.txt", "r+", cb))
      assert.strictEqual(yield* sftpDo(call((cb) => sftp.fchmod(handle, 0o6755, cb))), "ok")
      assert.strictEqual(mode("a.txt"), 0o755, "FSETSTAT")
      // Mode and size in one SETSTAT: the size applies, the special bits do not.
      assert.strictEqual(yield* sftpDo(call((cb) => sftp.fsetstat(handle, { mode: 0o4700, size: 0 }, cb))), "ok")
      assert.strictEqual(mode("a.txt"), 0o700)
      assert.strictEqual(fs.statSync(path.join(w.root, "a.txt")).size, 0)
      yield* call((cb) => sftp.close(handle, cb))

      // Attributes sent with OPEN (create) and MKDIR never set special bits.
      const created = yield* call<Buffer>((cb) => sftp.open("/created.bin", "w", { mode: 0o4777 }, cb))
      yield* call((cb) => sftp.close(created, cb))
      assert.strictEqual(mode("created.bin") & special, 0, `OPEN created ${mode("created.bin").toString(8)}`)
      assert.strictEqual(yield* sftpDo(call((cb) => sftp.mkdir("/made", { mode: 0o3777 }, cb))), "ok")
      assert.strictEqual(mode("made") & special, 0, `MKDIR created ${mode("made").toString(8)}`)

      // FTP: no command changes a mode; what FTP creates has no special bit either.
      fs.chmodSync(path.join(w.root, "dir", "b.txt"), 0o640)
      for (const line of ["SITE CHMOD 4777 dir/b.txt", "SITE CHMOD 777 dir/b.txt", "SITE UMASK 000", "SITE CHOWN 0 dir/b.txt", "SITE SETUID dir/b.txt"]) {
        const reply = yield* ftp.command(line)
        assert.strictEqual(reply.code, 502, `${line} → ${reply.text}`)
      }
      assert.strictEqual(mode("dir/b.txt"), 0o640)
      assert.strictEqual(yield* ftpWrite(ftp, "ftp-upload.bin", "data"), "ok")
      assert.strictEqual(yield* ftpDo(ftp, "MKD ftp-made"), "ok")
      assert.strictEqual(mode("ftp-upload.bin") & special, 0)
      assert.strictEqual(mode("ftp-made") & special, 0)
    }))

  it.effect("A.setstat: ownership changes are refused unless allowChown (SFTP SETSTAT, FSETSTAT, LSETSTAT uid/gid); with allowChown they apply", () =>
    Effect.gen(function*() {
      const denied = yield* world()
      const owner = (root: string, name: string) => {
        const s = fs.statSync(path.join(root, name))
        return `${s.uid}:${s.gid}`
      }
      const { sftp } = yield* bothSessions(denied.server)
      const before = owner(denied.root, "a.txt")
      const modeBefore = fs.statSync(path.join(denied.root, "a.txt")).mode
      const handle = yield* call<Buffer>((cb) => sftp.open("/a.txt", "r+", cb))
      assert.strictEqual(yield* sftpDo(call((cb) => sftp.fchown(handle, 1234, 1234, cb))), "refused:ChownNotAllowed")
      assert.strictEqual(yield* sftpDo(call((cb) => sftp.ext_openssh_lsetstat("/a.txt", { uid: 1234, gid: 1234 }, cb))), "refused:ChownNotAllowed")
      assert.strictEqual(yield* sftpDo(call((cb) => sftp.setstat("/dir", { uid: 0, gid: 0 }, cb))), "refused:ChownNotAllowed")
      // A refused SETSTAT changes nothing, not even the fields that would have been allowed.
      assert.strictEqual(yield* sftpDo(call((cb) => sftp.fsetstat(handle, { uid: 1234, gid: 1234, mode: 0o777, size: 0 }, cb))), "refused:ChownNotAllowed")
      assert.strictEqual(owner(denied.root, "a.txt"), before)
      assert.strictEqual(fs.statSync(path.join(denied.root, "a.txt")).mode, modeBefore)
      assert.strictEqual(fs.readFileSync(path.join(denied.root, "a.txt"), "utf8"), "A")
      yield* call((cb) => sftp.close(handle, cb))

      const allowed = yield* world({ config: { allowChown: true } })
      const permitted = (yield* bothSessions(allowed.server)).sftp
      if (process.getuid?.() !== 0) return
      // Only root can give a file away: this part runs as root.
      assert.strictEqual(yield* sftpDo(call((cb) => permitted.chown("/a.txt", 1234, 4321, cb))), "ok")
      assert.strictEqual(owner(allowed.root, "a.txt"), "1234:4321")
      const other = yield* call<Buffer>((cb) => permitted.open("/dir/b.txt", "r", cb))
      assert.strictEqual(yield* sftpDo(call((cb) => permitted.fchown(other, 2345, 2345, cb))), "ok")
      assert.strictEqual(owner(allowed.root, "dir/b.txt"), "2345:2345")
    }))

  it.effect("A.setstat: times are refused unless allowChtimes (SFTP SETSTAT/FSETSTAT/LSETSTAT times, FTP MFMT), and FEAT announces MFMT only when allowed", () =>
    Effect.gen(function*() {
      const denied = yield* world()
      const mtime = (root: string, name: string) => fs.statSync(path.join(root, name)).mtimeMs
      const sessions = yield* bothSessions(denied.server)
      const before = mtime(denied.root, "a.txt")
      const handle = yield* call<Buffer>((cb) => sessions.sftp.open("/a.txt", "r", cb))
      assert.strictEqual(yield* sftpDo(call((cb) => sessions.sftp.futimes(handle, 1, 1, cb))), "refused:ChtimesNotAllowed")
      assert.strictEqual(yield* sftpDo(call((cb) => sessions.sftp.ext_openssh_lsetstat("/a.txt", { atime: 1, mtime: 1 }, cb))), "refused:ChtimesNotAllowed")
      assert.strictEqual(yield* sftpDo(call((cb) => sessions.sftp.setstat("/dir", { atime: 1, mtime: 1 }, cb))), "refused:ChtimesNotAllowed")
      yield* call((cb) => sessions.sftp.close(handle, cb))
      assert.strictEqual(yield* ftpDo(sessions.ftp, "MFMT 20000101000000 a.txt"), "refused:ChtimesNotAllowed")
      assert.strictEqual(mtime(denied.root, "a.txt"), before)
      assert.notInclude((yield* sessions.ftp.expect("FEAT", 211)).text, "MFMT")

      const allowed = yield* world({ config: { allowChtimes: true } })
      const permitted = yield* bothSessions(allowed.server)
      assert.strictEqual(yield* ftpDo(permitted.ftp, "MFMT 20000101000000 a.txt"), "ok")
      assert.strictEqual(mtime(allowed.root, "a.txt"), Date.UTC(2000, 0, 1))
      assert.strictEqual(yield* sftpDo(call((cb) => permitted.sftp.utimes("/dir/b.txt", 1_000_000, 1_000_000, cb))), "ok")
      assert.strictEqual(mtime(allowed.root, "dir/b.txt"), 1_000_000_000)
      assert.include((yield* permitted.ftp.expect("FEAT", 211)).text, "MFMT")
    }))
})
