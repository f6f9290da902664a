/**
 * Checklist A, the symlink-swap race (ProFTPD CVE-2012-6095, Syncthing
 * CVE-2017-1000420) through protocol sessions: another process keeps swapping
 * a directory of the user's root with a symlink to a directory outside, while
 * one SFTP and one FTP session loop over reads, listings, stats and uploads
 * beneath it. Whatever each request meets (the directory, the link, nothing),
 * no byte and no name from outside is ever returned and nothing is written
 * outside. The loop is bounded by a number of rounds, never by time; it only
 * goes on (up to a cap) until the race has been seen from both protocols.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import type ssh2 from "ssh2"
import { call } from "../utils/SftpClient.js"
import { bothSessions, ftpDo, ftpList, ftpRead, ftpWrite, sftpDo, sftpList, sftpRead, sftpWrite } from "./BothProtocols.js"
import { SECRET, world } from "./World.js"

// Swaps root/d between the real directory and a link to outside/d, four renames a
// round, until its stdin closes; then prints the number of rounds and exits 0.
const swapperScript = `
import os, select, sys
root, target = sys.argv[1], sys.argv[2]
d, real, evil = (os.path.join(root, n) for n in ("d", "real", "evil"))
os.symlink(target, evil)
print("ready", flush=True)
rounds = 0
while True:
    if rounds % 32 == 0 and select.select([sys.stdin], [], [], 0)[0]:
        break
    os.rename(d, real)
    os.rename(evil, d)
    os.rename(d, evil)
    os.rename(real, d)
    rounds += 1
print(rounds, flush=True)
`

interface Swapper {
  readonly child: ChildProcess
  /** Closes its stdin and waits for it: its exit code and how many rounds of swaps it made. */
  readonly stop: Effect.Effect<{ readonly code: number | null; readonly rounds: number }>
}

/** Starts the swapper and resolves once it runs; it is killed when the scope closes. */
const startSwapper = (root: string, target: string) =>
  Effect.acquireRelease(
    Effect.callback<Swapper>((resume) => {
      const child = spawn("python3", ["-c", swapperScript, root, target], { stdio: ["pipe", "pipe", "inherit"] })
      let output = ""
      const exited = Deferred.makeUnsafe<number | null>()
      child.on("exit", (code) => Deferred.doneUnsafe(exited, Effect.succeed(code)))
      child.stdout.on("data", (chunk: Buffer) => {
        const first = output === ""
        output += chunk.toString("utf8")
        if (!first) return
        resume(Effect.succeed({
          child,
          stop: Effect.sync(() => child.stdin.end()).pipe(
            Effect.andThen(Deferred.await(exited)),
            Effect.map((code) => ({ code, rounds: Number(output.split("\n")[1] ?? "0") }))
          )
        }))
      })
    }),
    (swapper) => Effect.sync(() => void swapper.child.kill("SIGKILL"))
  )

describe("A.race (checklist A: symlink-swap TOCTOU through protocol sessions)", () => {
  it.live("A.race: a directory swapped with a symlink to outside while SFTP and FTP loop over reads, listings, stats and uploads never yields an outside byte or name, and nothing is written outside", () =>
    Effect.gen(function*() {
      const w = yield* world()
      const d = path.join(w.root, "d")
      fs.mkdirSync(d)
      fs.writeFileSync(path.join(d, "f"), "inside")
      fs.writeFileSync(path.join(w.outside, "d", "OUTSIDE-MARKER"), SECRET)
      const { ftp, sftp } = yield* bothSessions(w.server)
      const canary = w.canary()
      const swapper = yield* startSwapper(w.root, path.join(w.outside, "d"))

      const seen = new Map<string, number>()
      const leaks: Array<string> = []
      const note = (what: string, outcome: string) => {
        const key = `${what} ${outcome.startsWith("listed:") ? "listed" : outcome}`
        seen.set(key, (seen.get(key) ?? 0) + 1)
        if (outcome.includes(SECRET) || outcome.includes("OUTSIDE-MARKER")) leaks.push(`${what}: ${outcome}`)
      }
      const metLink = (protocol: string) => [...seen.keys()].some((k) => k.startsWith(protocol) && k.endsWith("refused:SymlinkRefused"))
      const metDirectory = () => seen.has("SFTP read file:inside") || seen.has("FTP RETR file:inside")
      const raceSeen = () => metLink("SFTP") && metLink("FTP") && metDirectory()
      const rounds = 150
      const cap = 1500
      let round = 0
      while (round < cap && (round < rounds || !raceSeen())) {
        note("SFTP read", yield* sftpRead(sftp, "/d/f"))
        note("SFTP readdir", yield* sftpList(sftp, "/d"))
        note("SFTP stat", yield* sftpDo(call<ssh2.Stats>((cb) => sftp.stat("/d/f", cb))))
        note("SFTP upload", yield* sftpWrite(sftp, `/d/s-${round}`, "uploaded"))
        note("FTP RETR", yield* ftpRead(ftp, "d/f"))
        note("FTP NLST", yield* ftpList(ftp, "d"))
        note("FTP SIZE", yield* ftpDo(ftp, "SIZE d/f"))
        note("FTP STOR", yield* ftpWrite(ftp, `d/f-${round}`, "uploaded"))
        round++
      }
      const { code, rounds: swaps } = yield* swapper.stop
      const summary = [...seen.entries()].map(([k, n]) => `${k}: ${n}`).sort().join("\n")

      assert.strictEqual(code, 0, "the swapper ran to its end")
      assert.deepStrictEqual(leaks, [], summary)
      assert.strictEqual(w.canary(), canary, "nothing outside changed, nothing was uploaded there")
      assert.deepStrictEqual(fs.readdirSync(path.join(w.outside, "d")).sort(), ["OUTSIDE-MARKER", "f"])
      // The race was real: some requests met the link, some the directory, in both protocols.
      assert.isAbove(swaps, 0)
      assert.isTrue(raceSeen(), summary)
      // Every upload that succeeded is inside the root, in the real directory.
      const uploaded = fs.readdirSync(d).filter((n) => n !== "f")
      const succeeded = (seen.get("SFTP upload ok") ?? 0) + (seen.get("FTP STOR ok") ?? 0)
      assert.strictEqual(uploaded.length, succeeded, summary)
    }), 180_000)
})
