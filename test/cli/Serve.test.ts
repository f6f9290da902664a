/**
 * The `portcullis serve` contract of design.md, on the real command
 * (./bin/portcullis over the compiled dist/): the listening line, event lines,
 * graceful SIGTERM/SIGINT with exit 0, and exit 2 with one line naming the
 * field for every kind of bad config.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as crypto from "node:crypto"
import * as net from "node:net"
import * as tls from "node:tls"
import * as fs from "node:fs"
import * as path from "node:path"
import * as JsonLines from "../utils/JsonLines.js"
import { run as runProcess } from "../utils/Processes.js"
import { call, connect, login } from "../utils/SftpClient.js"
import { selfSignedCertificate } from "../utils/TestServer.js"
import { tempDir } from "../utils/TempDir.js"
import { generateSshKeyPair } from "../../src/layers/SshKeys.js"

const bin = path.resolve(import.meta.dirname, "../../bin/portcullis")

interface Running {
  readonly child: ChildProcess
  /** Resolves with the first stdout line whose JSON matches `predicate`. */
  readonly line: (predicate: (record: Record<string, unknown>) => boolean) => Effect.Effect<Record<string, unknown>>
  readonly exit: Effect.Effect<{ readonly code: number | null; readonly stderr: string }>
}

/** Starts the command; it is killed when the scope closes if still running. */
const start = (args: ReadonlyArray<string>, cwd: string, env: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const child = spawn(bin, [...args], { cwd, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } })
      const { line } = JsonLines.watch(child.stdout!)
      let stderr = ""
      child.stderr!.on("data", (chunk: Buffer) => void (stderr += chunk.toString()))
      const exited = yield* Deferred.make<{ code: number | null; stderr: string }>()
      child.on("exit", (code) => setImmediate(() => Deferred.doneUnsafe(exited, Effect.succeed({ code, stderr }))))
      return { child, line, exit: Deferred.await(exited) } satisfies Running
    }),
    ({ child }) => Effect.sync(() => void (child.exitCode === null && child.kill("SIGKILL")))
  )

const fingerprintOf = (certFile: string) => new crypto.X509Certificate(fs.readFileSync(certFile)).fingerprint256

/** The certificate an FTPS client is shown after AUTH TLS on `port`. */
const ftpsFingerprint = (port: number) =>
  Effect.callback<string, Error>((resume) => {
    const socket = net.connect(port, "127.0.0.1")
    let buffered = ""
    socket.on("error", (e) => resume(Effect.fail(e)))
    socket.on("data", (chunk: Buffer) => {
      buffered += chunk.toString()
      if (buffered.startsWith("220") && buffered.endsWith("\r\n") && !buffered.includes("234")) {
        if (!buffered.includes("AUTH")) socket.write("AUTH TLS\r\n")
        buffered += "AUTH"
      }
      if (buffered.includes("234 ")) {
        socket.removeAllListeners("data")
        const secure = tls.connect({ socket, rejectUnauthorized: false, servername: "localhost" }, () => {
          const fingerprint = secure.getPeerCertificate().fingerprint256
          secure.destroy()
          resume(Effect.succeed(fingerprint))
        })
        secure.on("error", (e) => resume(Effect.fail(e)))
      }
    })
  })

const writeConfig = (dir: string, config: unknown) => {
  const file = path.join(dir, "config.json")
  fs.writeFileSync(file, typeof config === "string" ? config : JSON.stringify(config))
  return file
}

describe("portcullis serve", () => {
  it.live("prints listening and event lines, and exits 0 after a graceful SIGTERM", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const root = path.join(dir, "alice")
      fs.mkdirSync(root)
      const hostKey = path.join(dir, "host_key")
      fs.writeFileSync(hostKey, generateSshKeyPair("ed25519").private)
      const config = writeConfig(dir, {
        sftp: { address: "127.0.0.1:0", hostKeyFiles: [hostKey] },
        users: [{ username: "alice", password: "pw-alice", root }]
      })
      const server = yield* start(["serve", "--config", config], dir)
      const listening = yield* server.line((r) => r["event"] === "listening")
      assert.strictEqual(listening["protocol"], "sftp")
      const port = Number(String(listening["address"]).split(":").pop())
      assert.match(String(listening["address"]), /^127\.0\.0\.1:\d+$/)
      assert.notStrictEqual(port, 0)

      yield* Effect.scoped(Effect.gen(function*() {
        const { sftp } = yield* connect(port, "alice", { password: "pw-alice" })
        yield* call((cb) => sftp.writeFile("/report.csv", "a,b\n", cb))
      }))
      yield* Effect.flip(Effect.scoped(connect(port, "alice", { password: "wrong" })))
      const upload = yield* server.line((r) => r["event"] === "upload_completed")
      assert.deepStrictEqual(upload, {
        event: "upload_completed",
        protocol: "sftp",
        username: "alice",
        path: "/report.csv",
        fullPath: path.join(root, "report.csv"),
        clientIp: "127.0.0.1",
        size: 4
      })
      for (const event of ["login_success", "logout", "login_failed"]) {
        const record = yield* server.line((r) => r["event"] === event)
        assert.deepStrictEqual(record, { event, protocol: "sftp", username: "alice", clientIp: "127.0.0.1" })
      }
      server.child.kill("SIGTERM")
      const exit = yield* server.exit
      assert.strictEqual(exit.code, 0, exit.stderr)
      const shutdown = yield* server.line((r) => r["event"] === "shutdown")
      assert.strictEqual(shutdown["forced"], 0)
    }))

  it.live("SIGINT during a session shuts down within shutdownTimeout and exits 0", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      fs.mkdirSync(path.join(dir, "alice"))
      const config = writeConfig(dir, {
        sftp: { address: "127.0.0.1:0" },
        shutdownTimeout: "200 millis",
        users: [{ username: "alice", password: "pw-alice", root: path.join(dir, "alice") }]
      })
      const server = yield* start(["serve", "--config", config], dir)
      const port = Number(String((yield* server.line((r) => r["event"] === "listening"))["address"]).split(":").pop())
      const { client, sftp } = yield* connect(port, "alice", { password: "pw-alice" })
      // An open upload keeps the session busy, so shutdown has to force it at the deadline.
      yield* call<Buffer>((cb) => sftp.open("/busy", "w", cb))
      const closed = yield* Deferred.make<void>()
      client.once("close", () => Deferred.doneUnsafe(closed, Effect.void))
      server.child.kill("SIGINT")
      const exit = yield* server.exit
      assert.strictEqual(exit.code, 0, exit.stderr)
      assert.strictEqual((yield* server.line((r) => r["event"] === "shutdown"))["forced"], 1)
      yield* Deferred.await(closed)
      // The command has exited: every line it printed is in; none announces the interrupted upload.
      const announced = yield* server.line((r) => r["event"] === "upload_completed").pipe(Effect.timeoutOption(0))
      assert.strictEqual(announced._tag, "None")
    }))

  it.live("without --config: state under ./var, a demo user printed once; OpenSSH sftp and curl FTPS log in, and again after a restart with the same host key", () =>
    Effect.gen(function*() {
      const cwd = yield* tempDir()
      const env = { PORTCULLIS_SFTP_ADDRESS: "127.0.0.1:0", PORTCULLIS_FTP_ADDRESS: "127.0.0.1:0" }
      const knownHosts = path.join(cwd, "known_hosts")
      let recordedKey = ""
      let password = ""
      for (let run = 0; run < 2; run++) {
        const server = yield* start(["serve"], cwd, env)
        const port = Number(String((yield* server.line((r) => r["event"] === "listening" && r["protocol"] === "sftp"))["address"]).split(":").pop())
        const ftpPort = Number(String((yield* server.line((r) => r["event"] === "listening" && r["protocol"] === "ftp"))["address"]).split(":").pop())
        if (run === 0) password = String((yield* server.line((r) => r["event"] === "demo_user_created"))["password"])
        // OpenSSH's sftp, strict about the host key: the first start's key is recorded
        // with ssh-keyscan, and the second start must present the same key.
        if (run === 0) {
          const scan = yield* runProcess("ssh-keyscan", ["-p", String(port), "-t", "ed25519", "127.0.0.1"])
          assert.strictEqual(scan.code, 0, scan.stderr)
          recordedKey = scan.stdout.trim().split(/\s+/).slice(1).join(" ")
        }
        // The port changes between starts (port 0); the key must not.
        fs.writeFileSync(knownHosts, `[127.0.0.1]:${port} ${recordedKey}\n`)
        fs.writeFileSync(path.join(cwd, "batch"), `put ${bin} /run-${run}.txt\n`)
        const sftp = yield* runProcess("sshpass", [
          "-e", "sftp", "-o", "BatchMode=no", "-b", path.join(cwd, "batch"), "-P", String(port),
          "-o", `UserKnownHostsFile=${knownHosts}`, "-o", "StrictHostKeyChecking=yes", "-o", "PubkeyAuthentication=no",
          "-o", "PreferredAuthentications=password", "demo@127.0.0.1"
        ], { env: { SSHPASS: password } })
        assert.strictEqual(sftp.code, 0, `OpenSSH sftp (run ${run}): ${sftp.stderr}`)
        // FTPS with TLS required, trusting the certificate the first start generated.
        const curl = yield* Effect.promise(() => new Promise<number | null>((resolve) => {
          const child = spawn("curl", ["-s", "--max-time", "20", "--ssl-reqd", "--cacert", path.join(cwd, "var", "ftps.crt"),
            "-T", bin, `ftp://demo:${password}@127.0.0.1:${ftpPort}/ftps-${run}.bin`], { stdio: "ignore" })
          child.on("exit", resolve)
        }))
        assert.strictEqual(curl, 0, "curl FTPS upload")
        server.child.kill("SIGTERM")
        assert.strictEqual((yield* server.exit).code, 0)
        if (run === 1) {
          const second = yield* server.line(() => true)
          assert.notStrictEqual(second["event"], "demo_user_created", "the password is printed only once")
        }
      }
      assert.strictEqual(fs.statSync(path.join(cwd, "var")).mode & 0o777, 0o700)
      assert.isTrue(fs.existsSync(path.join(cwd, "var", "home", "demo", "run-1.txt")))
      assert.isTrue(fs.readFileSync(path.join(cwd, "var", "home", "demo", "ftps-1.bin")).equals(fs.readFileSync(bin)))
      assert.notInclude(fs.readFileSync(path.join(cwd, "var", "portcullis.db")).toString("latin1"), password, "only the hash is stored")
      assert.strictEqual(fs.statSync(path.join(cwd, "var", "portcullis.db")).mode & 0o777, 0o600)
    }))

  it.live("SIGHUP reloads inline users and the FTPS certificate without dropping sessions", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      fs.mkdirSync(path.join(dir, "a"))
      fs.mkdirSync(path.join(dir, "b"))
      fs.mkdirSync(path.join(dir, "home"))
      const first = selfSignedCertificate(path.join(dir, "a"))
      const second = selfSignedCertificate(path.join(dir, "b"))
      const configFor = (tls: { certFile: string; keyFile: string }, users: ReadonlyArray<Record<string, unknown>>) => ({
        sftp: { address: "127.0.0.1:0" },
        ftp: { address: "127.0.0.1:0", tls },
        users
      })
      const alice = (password: string) => ({ username: "alice", password, root: path.join(dir, "home") })
      const config = writeConfig(dir, configFor(first, [alice("old-pw")]))
      const server = yield* start(["serve", "--config", config], dir)
      const sftpPort = Number(String((yield* server.line((r) => r["event"] === "listening" && r["protocol"] === "sftp"))["address"]).split(":").pop())
      const ftpPort = Number(String((yield* server.line((r) => r["event"] === "listening" && r["protocol"] === "ftp"))["address"]).split(":").pop())
      const live = yield* connect(sftpPort, "alice", { password: "old-pw" })
      assert.strictEqual(yield* ftpsFingerprint(ftpPort), fingerprintOf(first.certFile))

      writeConfig(dir, configFor(second, [alice("new-pw"), { username: "bob", password: "bob-pw", root: path.join(dir, "home") }]))
      server.child.kill("SIGHUP")
      yield* server.line((r) => r["event"] === "reloaded")
      assert.strictEqual(yield* call<string>((cb) => live.sftp.realpath(".", cb)), "/", "the open session survived")
      yield* Effect.scoped(login(sftpPort, "bob", { password: "bob-pw" }))
      yield* Effect.scoped(login(sftpPort, "alice", { password: "new-pw" }))
      yield* Effect.flip(Effect.scoped(login(sftpPort, "alice", { password: "old-pw" })))
      assert.strictEqual(yield* ftpsFingerprint(ftpPort), fingerprintOf(second.certFile))

      // A broken config on SIGHUP is reported and the running configuration stays.
      fs.writeFileSync(config, "{ broken")
      server.child.kill("SIGHUP")
      yield* server.line((r) => r["level"] === "error" && String(r["message"]).includes("reload failed"))
      yield* Effect.scoped(login(sftpPort, "bob", { password: "bob-pw" }))
    }))

  const badConfigs: ReadonlyArray<readonly [string, unknown, string]> = [
    ["address", { sftp: { address: "nope" } }, "sftp.address:"],
    ["port out of range", { sftp: { address: "127.0.0.1:70000" } }, "sftp.address:"],
    ["duration", { idleTimeout: "3 parsecs" }, "idleTimeout:"],
    ["algorithm", { sftp: { kex: ["curve25519-sha256", "foo"] } }, "sftp.kex[1]:"],
    ["cipher", { sftp: { ciphers: ["rot13"] } }, "sftp.ciphers[0]:"],
    ["unknown key", { sftp: {}, bogus: 1 }, "bogus:"],
    ["missing username", { users: [{ root: "/tmp" }] }, "users[0].username:"],
    ["wrong type", { users: [{ username: "u", root: "/tmp", canRead: "yes" }] }, "users[0].canRead:"],
    ["bad username", { users: [{ username: "a/b", root: "/tmp", password: "x" }] }, "users[0]:"],
    ["empty password", { users: [{ username: "ok", root: "/tmp" }, { username: "u", root: "/tmp", password: "" }] }, "users[1]:"],
    ["unknown hash", { users: [{ username: "u", root: "/tmp", passwordHash: "$1$x$y" }] }, "users[0]:"],
    ["relative root", { users: [{ username: "u", root: "tmp", password: "x" }] }, "users[0]:"],
    ["missing host key", { sftp: { hostKeyFiles: ["/nonexistent/key"] } }, "sftp.hostKeyFiles[0]:"],
    ["not JSON", "{ not json", "is not valid JSON"]
  ]

  it.live("an invalid config exits 2 with one line naming the field", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      for (const [name, config, field] of badConfigs) {
        const server = yield* start(["serve", "--config", writeConfig(dir, config)], dir)
        const exit = yield* server.exit
        assert.strictEqual(exit.code, 2, `${name}: ${exit.stderr}`)
        const lines = exit.stderr.trimEnd().split("\n")
        assert.strictEqual(lines.length, 1, `${name}: ${exit.stderr}`)
        assert.include(lines[0], field, name)
      }
      const unreadable = yield* (yield* start(["serve", "--config", path.join(dir, "absent.json")], dir)).exit
      assert.strictEqual(unreadable.code, 2)
      assert.include(unreadable.stderr, "--config")
    }))
})
