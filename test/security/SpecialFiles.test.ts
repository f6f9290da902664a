/**
 * Checklist A, non-regular files planted out-of-band (a FIFO, a unix socket,
 * character and block device nodes) opened through both protocols of a real
 * server: every read, write, append, truncate and upload is refused at once
 * (O_NONBLOCK, then S_ISREG), nothing blocks, no byte of /dev/zero or
 * /dev/urandom reaches a client, and the nodes stay what they were. Device
 * nodes need mknod (root, CAP_MKNOD): that test is skipped elsewhere.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type ssh2 from "ssh2"
import { call } from "../utils/SftpClient.js"
import { bothSessions, ftpDo, ftpList, ftpRead, ftpTransfer, ftpWrite, sftpDo, sftpList, sftpRead, sftpWrite } from "./BothProtocols.js"
import { world } from "./World.js"

/** Whether this process may create device nodes (it must be root, outside a restricted container). */
const mknodWorks = (() => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-mknod-"))
  try {
    execFileSync("mknod", [path.join(dir, "null"), "c", "1", "3"], { stdio: "ignore" })
    return true
  } catch {
    return false
  } finally {
    fs.rmSync(dir, { recursive: true, force: true })
  }
})()

/** A unix socket listening at `file` until the scope closes. */
const unixSocket = (file: string) =>
  Effect.acquireRelease(
    Effect.callback<net.Server>((resume) => {
      const server = net.createServer((socket) => socket.end("SOCKET-BYTES"))
      server.listen(file, () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.sync(() => void server.close())
  )

/** Every data operation on `name` through both protocols; all must be refused. */
const everyOperation = (sessions: Effect.Success<ReturnType<typeof bothSessions>>, name: string) =>
  Effect.gen(function*() {
    const { ftp, sftp } = sessions
    const p = `/${name}`
    return {
      "SFTP read": yield* sftpRead(sftp, p),
      "SFTP write": yield* sftpWrite(sftp, p, "overwritten"),
      "SFTP append": yield* sftpDo(call<Buffer>((cb) => sftp.open(p, "a", cb))),
      "SFTP r+": yield* sftpDo(call<Buffer>((cb) => sftp.open(p, "r+", cb))),
      "SFTP truncate": yield* sftpDo(call((cb) => sftp.setstat(p, { size: 0 }, cb))),
      "SFTP hardlink": yield* sftpDo(call((cb) => sftp.ext_openssh_hardlink(p, `${p}-hard`, cb))),
      "SFTP readdir": yield* sftpList(sftp, p),
      "FTP RETR": yield* ftpRead(ftp, name),
      "FTP STOR": yield* ftpWrite(ftp, name, "overwritten"),
      "FTP APPE": (yield* ftpTransfer(ftp, `APPE ${name}`, "appended")).refused ?? "ok",
      "FTP SIZE": yield* ftpDo(ftp, `SIZE ${name}`),
      "FTP CWD": yield* ftpDo(ftp, `CWD ${name}`)
    }
  })

const notRefused = (outcomes: Readonly<Record<string, string>>) =>
  Object.entries(outcomes).filter(([, o]) => !o.startsWith("refused:")).map(([op, o]) => `${op} → ${o}`)

const modeOf = (file: string) => {
  const s = fs.lstatSync(file)
  return `${s.mode}:${s.rdev}:${s.size}`
}

describe("A.special (checklist A: FIFOs, sockets and devices planted out-of-band)", () => {
  it.effect("A.special: a FIFO and a unix socket planted in the root are refused by every SFTP and FTP read, write and upload, without blocking", () =>
    Effect.gen(function*() {
      const w = yield* world()
      const fifo = path.join(w.root, "fifo")
      execFileSync("mkfifo", [fifo])
      yield* unixSocket(path.join(w.root, "sock"))
      const sessions = yield* bothSessions(w.server)
      const before = [modeOf(fifo), modeOf(path.join(w.root, "sock"))]
      const failures: Array<string> = []
      for (const name of ["fifo", "sock"]) {
        const outcomes = yield* everyOperation(sessions, name)
        failures.push(...notRefused(outcomes).map((f) => `${name}: ${f}`))
        for (const op of ["SFTP read", "SFTP write", "FTP RETR", "FTP STOR", "FTP APPE"] as const) {
          if (outcomes[op] !== "refused:Unsupported") failures.push(`${name}: ${op} → ${outcomes[op]}`)
        }
      }
      assert.deepStrictEqual(failures, [])
      assert.deepStrictEqual([modeOf(fifo), modeOf(path.join(w.root, "sock"))], before)
      assert.notInclude(sessions.ftp.transcript(), "SOCKET-BYTES")
      // They are listed and can be looked at, just not opened; the sessions go on.
      assert.strictEqual(yield* sftpList(sessions.sftp, "/"), "listed:a.txt,dir,fifo,sock")
      assert.strictEqual(yield* ftpList(sessions.ftp, "/"), "listed:a.txt,dir,fifo,sock")
      const stat = yield* call<ssh2.Stats>((cb) => sessions.sftp.stat("/fifo", cb))
      assert.isTrue(stat.isFIFO())
      assert.strictEqual(yield* sftpRead(sessions.sftp, "/a.txt"), "file:A")
      assert.strictEqual(yield* ftpRead(sessions.ftp, "a.txt"), "file:A")
    }))

  it.effect.skipIf(!mknodWorks)("A.special: character and block device nodes (/dev/null, /dev/zero, /dev/urandom, a loop device) are refused by every SFTP and FTP operation; no device byte reaches a client (needs mknod: runs as root only)", () =>
    Effect.gen(function*() {
      const w = yield* world()
      const devices = { null: ["c", "1", "3"], zero: ["c", "1", "5"], urandom: ["c", "1", "9"], loop: ["b", "7", "200"] } as const
      for (const [name, [kind, major, minor]] of Object.entries(devices)) {
        execFileSync("mknod", [path.join(w.root, name), kind, major, minor])
      }
      const sessions = yield* bothSessions(w.server)
      const before = Object.keys(devices).map((name) => modeOf(path.join(w.root, name)))
      const failures: Array<string> = []
      for (const name of Object.keys(devices)) {
        const outcomes = yield* everyOperation(sessions, name)
        failures.push(...notRefused(outcomes).map((f) => `${name}: ${f}`))
      }
      assert.deepStrictEqual(failures, [])
      assert.deepStrictEqual(Object.keys(devices).map((name) => modeOf(path.join(w.root, name))), before)
      // Nothing was created beside them (no "-hard" links, no replaced nodes).
      assert.deepStrictEqual(fs.readdirSync(w.root).sort(), ["a.txt", "dir", ...Object.keys(devices)].sort())
    }))
})
