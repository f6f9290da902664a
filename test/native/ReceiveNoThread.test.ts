/**
 * The addon's `receive` when its thread cannot start: the final callback says
 * so (EAGAIN from pthread_create, no byte written) and every fd it duplicated
 * is closed again. The failure is real: a child Node process is moved into a
 * pids cgroup whose limit is the number of threads it already runs, so the
 * kernel refuses the next one. (JailNative turns any failure to start into a
 * JailError of the upload, as it does for a failed `dup`.)
 */
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import * as readline from "node:readline"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const nativeDir = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "native", "build")
const addon = ["Release", "Debug"].map((build) => path.join(nativeDir, build, "jail.node")).find((file) => fs.existsSync(file))

/**
 * A pids cgroup to put the child in: cgroup v1's pids hierarchy, or cgroup v2
 * with the pids controller enabled for the root's children.
 */
const makePidsGroup = (name: string): string => {
  const v1 = "/sys/fs/cgroup/pids"
  if (fs.existsSync(path.join(v1, "cgroup.procs"))) {
    const group = path.join(v1, name)
    fs.mkdirSync(group)
    return group
  }
  const v2 = "/sys/fs/cgroup"
  const controllers = fs.readFileSync(path.join(v2, "cgroup.controllers"), "utf8").split(/\s+/)
  if (!controllers.includes("pids")) throw new Error("this machine has no pids cgroup controller")
  fs.writeFileSync(path.join(v2, "cgroup.subtree_control"), "+pids")
  const group = path.join(v2, name)
  fs.mkdirSync(group)
  return group
}

/**
 * The child: opens a file and a listening socket, warms the thread pool, says
 * how many threads it runs, waits for "go", then calls `receive` and prints
 * the final callback and its open fd counts before and after.
 */
const childScript = `
import * as fs from "node:fs"
import * as net from "node:net"
import * as readline from "node:readline"
const module = { exports: {} }
process.dlopen(module, process.env.ADDON)
const jail = module.exports
const server = net.createServer()
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve))
const socketFd = server._handle.fd
const fileFd = fs.openSync(process.env.TARGET, "w")
await fs.promises.stat(process.env.TARGET) // starts the thread pool's threads
const openFds = () => fs.readdirSync("/proc/self/fd").length
const lines = readline.createInterface({ input: process.stdin })
console.log(JSON.stringify({ threads: fs.readdirSync("/proc/self/task").length }))
for await (const line of lines) {
  if (line !== "go") continue
  const before = openFds()
  const final = await new Promise((resolve) => {
    jail.receive(socketFd, fileFd, 0, (bytes, done, code, syscall) => { if (done) resolve({ bytes, code, syscall }) })
  })
  console.log(JSON.stringify({ final, before, after: openFds() }))
  process.exit(0)
}
`

describe("native receive without a thread", () => {
  let dir = ""
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-nothread-"))
  })
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  it("reports EAGAIN from pthread_create through the callback and closes every duplicated fd", async () => {
    expect(addon, "the addon is built").toBeDefined()
    const script = path.join(dir, "child.mjs")
    const target = path.join(dir, "upload.bin")
    fs.writeFileSync(script, childScript)
    const child = spawn(process.execPath, [script], {
      env: { ...process.env, ADDON: addon!, TARGET: target },
      stdio: ["pipe", "pipe", "inherit"]
    })
    const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]()
    const nextLine = async (): Promise<string> => {
      const line = await lines.next()
      if (line.done === true) throw new Error("the child ended its output early")
      return line.value
    }
    const group = makePidsGroup(`portcullis-test-${process.pid}-${Date.now()}`)
    try {
      const { threads } = JSON.parse(await nextLine()) as { threads: number }
      fs.writeFileSync(path.join(group, "cgroup.procs"), String(child.pid))
      // Not one thread more than it has.
      fs.writeFileSync(path.join(group, "pids.max"), String(threads))
      expect(Number(fs.readFileSync(path.join(group, "pids.current"), "utf8"))).toBe(threads)
      child.stdin.write("go\n")
      const report = JSON.parse(await nextLine()) as {
        final: { bytes: number; code: string | undefined; syscall: string | undefined }
        before: number
        after: number
      }
      expect(report.final).toEqual({ bytes: 0, code: "EAGAIN", syscall: "pthread_create" })
      expect(report.after).toBe(report.before)
      expect(fs.statSync(target).size).toBe(0)
    } finally {
      child.kill()
      await new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(undefined) : child.once("exit", resolve)))
      fs.rmdirSync(group)
    }
  })
})
