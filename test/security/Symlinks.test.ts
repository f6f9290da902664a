/**
 * Checklist A, symlinks planted from outside (a local user with write access to
 * a root), exercised through both protocols of a real server: links as the
 * final component and as a middle component, pointing outside, inside, to the
 * sibling user's root, to "/", dangling; and a user whose root itself is a
 * symlink. Every operation that would follow a link is refused, operations that
 * act on a name act on the link itself, no byte of the secret reaches a client
 * and nothing outside changes.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type ssh2 from "ssh2"
import { connect as ftpConnect, ftpTestServer } from "../utils/FtpRawClient.js"
import { call, connect as sftpConnect } from "../utils/SftpClient.js"
import { bothSessions, ftpDo, ftpList, ftpRead, ftpTransfer, ftpWrite, sftpDo, sftpList, sftpRead, sftpWrite } from "./BothProtocols.js"
import { digest, SECRET, world } from "./World.js"

/** Links to a file (or to something that is not a directory), used as the final component. */
const finalLinks = ["link-out", "link-out-rel", "link-in", "link-sibling-file", "dangling", "slash", "dir/up"]
/** Links to directories, used as a middle component. */
const middleLinks = ["link-out-dir", "link-in-dir", "link-sibling", "slash", "dir/up"]

const plant = (w: Effect.Success<ReturnType<typeof world>>) => {
  const at = (name: string) => path.join(w.root, name)
  fs.symlinkSync(path.join(w.outside, "secret.txt"), at("link-out"))
  fs.symlinkSync(path.relative(w.root, path.join(w.outside, "secret.txt")), at("link-out-rel"))
  fs.symlinkSync("a.txt", at("link-in"))
  fs.symlinkSync(path.join(w.sibling, "theirs.txt"), at("link-sibling-file"))
  fs.symlinkSync("nowhere", at("dangling"))
  fs.symlinkSync("/", at("slash"))
  fs.symlinkSync(w.outside, at("link-out-dir"))
  fs.symlinkSync("dir", at("link-in-dir"))
  fs.symlinkSync(w.sibling, at("link-sibling"))
  fs.symlinkSync(path.relative(path.join(w.root, "dir"), w.outside), at("dir/up"))
  // What a middle-component attack would aim at, behind each directory link.
  fs.mkdirSync(path.join(w.outside, "victim"))
  fs.writeFileSync(path.join(w.sibling, "secret.txt"), SECRET)
  fs.mkdirSync(path.join(w.sibling, "victim"))
  fs.writeFileSync(path.join(w.root, "dir", "secret.txt"), "inside")
  fs.mkdirSync(path.join(w.root, "dir", "victim"))
}

const sftpFinal = (sftp: ssh2.SFTPWrapper, link: string) =>
  Effect.gen(function*() {
    const p = `/${link}`
    return {
      read: yield* sftpRead(sftp, p),
      write: yield* sftpWrite(sftp, p, "overwritten"),
      append: yield* sftpDo(call<Buffer>((cb) => sftp.open(p, "a", cb))),
      stat: yield* sftpDo(call<ssh2.Stats>((cb) => sftp.stat(p, cb))),
      chmod: yield* sftpDo(call((cb) => sftp.chmod(p, 0o777, cb))),
      truncate: yield* sftpDo(call((cb) => sftp.setstat(p, { size: 0 }, cb))),
      readdir: yield* sftpList(sftp, p),
      hardlink: yield* sftpDo(call((cb) => sftp.ext_openssh_hardlink(p, `/hard-${link.replace("/", "-")}`, cb))),
      mkdir: yield* sftpDo(call((cb) => sftp.mkdir(p, cb))),
      rmdir: yield* sftpDo(call((cb) => sftp.rmdir(p, cb)))
    }
  })

const sftpMiddle = (sftp: ssh2.SFTPWrapper, link: string) =>
  Effect.gen(function*() {
    const p = `/${link}`
    return {
      read: yield* sftpRead(sftp, `${p}/secret.txt`),
      create: yield* sftpWrite(sftp, `${p}/created.txt`, "planted"),
      stat: yield* sftpDo(call<ssh2.Stats>((cb) => sftp.stat(`${p}/secret.txt`, cb))),
      lstat: yield* sftpDo(call<ssh2.Stats>((cb) => sftp.lstat(`${p}/secret.txt`, cb))),
      readdir: yield* sftpList(sftp, `${p}/`),
      readdirDot: yield* sftpList(sftp, `${p}/.`),
      mkdir: yield* sftpDo(call((cb) => sftp.mkdir(`${p}/made`, cb))),
      rmdir: yield* sftpDo(call((cb) => sftp.rmdir(`${p}/victim`, cb))),
      remove: yield* sftpDo(call((cb) => sftp.unlink(`${p}/secret.txt`, cb))),
      renameOut: yield* sftpDo(call((cb) => sftp.rename(`${p}/secret.txt`, "/stolen", cb))),
      renameIn: yield* sftpDo(call((cb) => sftp.ext_openssh_rename("/a.txt", `${p}/planted`, cb))),
      hardlinkOut: yield* sftpDo(call((cb) => sftp.ext_openssh_hardlink(`${p}/secret.txt`, "/hard", cb))),
      hardlinkIn: yield* sftpDo(call((cb) => sftp.ext_openssh_hardlink("/a.txt", `${p}/hard`, cb))),
      chmod: yield* sftpDo(call((cb) => sftp.chmod(`${p}/secret.txt`, 0o777, cb))),
      utimes: yield* sftpDo(call((cb) => sftp.utimes(`${p}/secret.txt`, 1, 1, cb)))
    }
  })

const ftpFinal = (ftp: Effect.Success<ReturnType<typeof bothSessions>>["ftp"], link: string) =>
  Effect.gen(function*() {
    return {
      RETR: yield* ftpRead(ftp, link),
      STOR: yield* ftpWrite(ftp, link, "overwritten"),
      APPE: (yield* ftpTransfer(ftp, `APPE ${link}`, "appended")).refused ?? "ok",
      SIZE: yield* ftpDo(ftp, `SIZE ${link}`),
      MDTM: yield* ftpDo(ftp, `MDTM ${link}`),
      MFMT: yield* ftpDo(ftp, `MFMT 20000101000000 ${link}`),
      MLST: yield* ftpDo(ftp, `MLST ${link}`),
      CWD: yield* ftpDo(ftp, `CWD ${link}`),
      NLST: yield* ftpList(ftp, link),
      LIST: (yield* ftpTransfer(ftp, `LIST ${link}`)).refused ?? "ok",
      MLSD: (yield* ftpTransfer(ftp, `MLSD ${link}`)).refused ?? "ok",
      MKD: yield* ftpDo(ftp, `MKD ${link}`),
      RMD: yield* ftpDo(ftp, `RMD ${link}`)
    }
  })

const ftpMiddle = (ftp: Effect.Success<ReturnType<typeof bothSessions>>["ftp"], link: string) =>
  Effect.gen(function*() {
    const rnfr = yield* ftpDo(ftp, `RNFR ${link}/secret.txt`)
    const rnto = rnfr === "ok" ? yield* ftpDo(ftp, "RNTO stolen") : rnfr
    // RNTO must follow its RNFR directly.
    assert.strictEqual(yield* ftpDo(ftp, "RNFR a.txt"), "ok")
    const rntoIn = yield* ftpDo(ftp, `RNTO ${link}/planted`)
    return {
      RETR: yield* ftpRead(ftp, `${link}/secret.txt`),
      STOR: yield* ftpWrite(ftp, `${link}/created.txt`, "planted"),
      APPE: (yield* ftpTransfer(ftp, `APPE ${link}/secret.txt`, "appended")).refused ?? "ok",
      SIZE: yield* ftpDo(ftp, `SIZE ${link}/secret.txt`),
      MDTM: yield* ftpDo(ftp, `MDTM ${link}/secret.txt`),
      MFMT: yield* ftpDo(ftp, `MFMT 20000101000000 ${link}/secret.txt`),
      MLST: yield* ftpDo(ftp, `MLST ${link}/secret.txt`),
      CWD: yield* ftpDo(ftp, `CWD ${link}`),
      NLST: yield* ftpList(ftp, `${link}/`),
      LIST: (yield* ftpTransfer(ftp, `LIST ${link}/.`)).refused ?? "ok",
      MLSD: (yield* ftpTransfer(ftp, `MLSD ${link}`)).refused ?? "ok",
      MKD: yield* ftpDo(ftp, `MKD ${link}/made`),
      RMD: yield* ftpDo(ftp, `RMD ${link}/victim`),
      DELE: yield* ftpDo(ftp, `DELE ${link}/secret.txt`),
      "RNFR/RNTO out": rnto,
      "RNTO in": rntoIn
    }
  })

/** The operations whose outcome is not a refusal, as "op → outcome". */
const notRefused = (outcomes: Readonly<Record<string, string>>) =>
  Object.entries(outcomes).filter(([, o]) => !o.startsWith("refused:")).map(([op, o]) => `${op} → ${o}`)

describe("A.symlinks (checklist A: planted symlinks through both protocols)", () => {
  it.effect("A.symlinks: a planted link as the final component (outside, inside, sibling root, dangling, \"/\") is never followed by any SFTP or FTP operation", () =>
    Effect.gen(function*() {
      const w = yield* world({ config: { allowChtimes: true } })
      plant(w)
      const { ftp, sftp } = yield* bothSessions(w.server)
      const canary = w.canary()
      const inside = digest(path.join(w.root, "dir")) + fs.readFileSync(path.join(w.root, "a.txt"), "utf8")
      const failures: Array<string> = []
      for (const link of finalLinks) {
        const viaSftp = yield* sftpFinal(sftp, link)
        const viaFtp = yield* ftpFinal(ftp, link)
        failures.push(...notRefused(viaSftp).map((f) => `SFTP ${link}: ${f}`), ...notRefused(viaFtp).map((f) => `FTP ${link}: ${f}`))
        // Where a link is followed, the answer says so.
        for (const [op, outcome] of Object.entries({ read: viaSftp.read, stat: viaSftp.stat, chmod: viaSftp.chmod, RETR: viaFtp.RETR, SIZE: viaFtp.SIZE, CWD: viaFtp.CWD, STOR: viaFtp.STOR })) {
          if (outcome !== "refused:SymlinkRefused") failures.push(`${link}: ${op} → ${outcome}`)
        }
      }
      assert.deepStrictEqual(failures, [])
      // The links are still there, listed as links (lstat), and what they point to is untouched.
      for (const link of finalLinks) assert.isTrue(fs.lstatSync(path.join(w.root, link)).isSymbolicLink(), link)
      const lstat = yield* call<ssh2.Stats>((cb) => sftp.lstat("/link-out", cb))
      assert.isTrue(lstat.isSymbolicLink())
      assert.strictEqual(w.canary(), canary)
      assert.strictEqual(digest(path.join(w.root, "dir")) + fs.readFileSync(path.join(w.root, "a.txt"), "utf8"), inside)
      assert.notInclude(ftp.transcript(), SECRET)

      // Operations that take the final name as a name act on the link itself: it goes, its target stays.
      assert.strictEqual(yield* ftpDo(ftp, "DELE link-out"), "ok")
      assert.strictEqual(yield* sftpDo(call((cb) => sftp.unlink("/link-in", cb))), "ok")
      assert.strictEqual(yield* sftpDo(call((cb) => sftp.rename("/link-sibling-file", "/renamed-link", cb))), "ok")
      assert.isTrue(fs.lstatSync(path.join(w.root, "renamed-link")).isSymbolicLink())
      assert.strictEqual(fs.readFileSync(path.join(w.outside, "secret.txt"), "utf8"), SECRET)
      assert.strictEqual(fs.readFileSync(path.join(w.root, "a.txt"), "utf8"), "A")
      assert.strictEqual(w.canary(), canary)
    }), 120_000)

  it.effect("A.symlinks: a planted link as a middle component (outside, inside, sibling root, \"/\", relative climb) refuses every SFTP and FTP operation beneath it", () =>
    Effect.gen(function*() {
      const w = yield* world({ config: { allowChtimes: true } })
      plant(w)
      const { ftp, sftp } = yield* bothSessions(w.server)
      const canary = w.canary()
      const rootBefore = digest(w.root)
      const failures: Array<string> = []
      for (const link of middleLinks) {
        const viaSftp = yield* sftpMiddle(sftp, link)
        const viaFtp = yield* ftpMiddle(ftp, link)
        failures.push(...notRefused(viaSftp).map((f) => `SFTP ${link}: ${f}`), ...notRefused(viaFtp).map((f) => `FTP ${link}: ${f}`))
        for (const [op, outcome] of [...Object.entries(viaSftp).map(([k, v]) => [`SFTP ${k}`, v]), ...Object.entries(viaFtp).map(([k, v]) => [`FTP ${k}`, v])]) {
          if (outcome !== "refused:SymlinkRefused") failures.push(`${link}: ${op} → ${outcome}`)
        }
      }
      assert.deepStrictEqual(failures, [])
      assert.strictEqual(w.canary(), canary)
      assert.strictEqual(digest(w.root), rootBefore, "nothing inside the root changed either (the inside link is refused too)")
      assert.notInclude(ftp.transcript(), SECRET)
    }), 120_000)

  it.effect("A.symlinks: a user whose root is itself a symlink gets no session through SFTP or FTP, and nothing behind it is touched", () =>
    Effect.gen(function*() {
      const server = yield* ftpTestServer({ users: [{ username: "linked", password: "linked-password" }], ftp: { requireTLS: false } })
      const root = server.roots["linked"]!
      // The root is replaced by a link to a directory with a file in it (say, another user's home).
      const target = path.join(server.base, "target")
      fs.mkdirSync(target)
      fs.writeFileSync(path.join(target, "file.txt"), SECRET)
      fs.rmdirSync(root)
      fs.symlinkSync(target, root)
      const before = digest(target)

      const sftpSession = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
        const { sftp } = yield* sftpConnect(server.port, "linked", { password: "linked-password" })
        return yield* sftpRead(sftp, "/file.txt")
      })))
      assert.isTrue(sftpSession._tag === "Failure" || !sftpSession.value.startsWith("file:"), `SFTP: ${JSON.stringify(sftpSession)}`)

      const ftp = yield* ftpConnect(server.ftpPort)
      yield* ftp.expect("USER linked", 331)
      const pass = yield* ftp.command("PASS linked-password")
      assert.isAtLeast(pass.code, 500, pass.text)
      assert.strictEqual((yield* ftp.command("PASV")).code, 530)
      assert.strictEqual((yield* ftp.command("RETR file.txt")).code, 530)
      assert.strictEqual((yield* ftp.command("STOR new.txt")).code, 530)
      assert.notInclude(ftp.transcript(), SECRET)
      assert.notInclude(ftp.transcript(), server.base)
      assert.strictEqual(digest(target), before)
    }))
})
