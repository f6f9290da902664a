/**
 * curl, the FTP client of libcurl, against a real server: plain FTP (downloads,
 * uploads with -T, LIST and NLST, quote commands before and after a transfer,
 * resumed downloads and uploads with -C -), explicit FTPS (AUTH TLS, PROT P,
 * 20 MiB both ways with sha256) against the default TLS-required server, and
 * implicit FTPS on its own port. A plaintext login is refused when TLS is required.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { describeResult, run, type RunResult } from "../utils/Processes.js"
import { tempDir } from "../utils/TempDir.js"
import { testServer } from "../utils/TestServer.js"

const MiB = 1024 * 1024

const sha256 = (bytes: Buffer) => crypto.createHash("sha256").update(bytes).digest("hex")
const sha256File = (file: string) => sha256(fs.readFileSync(file))

/** curl, silent but for errors, with its own time limits under the process timeout. */
const curl = (args: ReadonlyArray<string>) =>
  run("curl", ["-q", "-sS", "--connect-timeout", "20", "--max-time", "45", "--user", "alice:alice-password", ...args], {
    timeoutMs: 50_000,
    // No proxy or .netrc from the environment may get in the way.
    env: { ftp_proxy: undefined, FTP_PROXY: undefined, all_proxy: undefined, ALL_PROXY: undefined, CURL_HOME: "/nonexistent" }
  }).pipe(Effect.orDie)

const curlOk = (args: ReadonlyArray<string>) =>
  curl(args).pipe(Effect.tap((result) => Effect.sync(() => assert.strictEqual(result.code, 0, describeResult(result)))))

const lines = (result: RunResult) => result.stdout.split(/\r?\n/).filter((line) => line.length > 0)

describe("curl", () => {
  it.effect("plain FTP: download, upload with -T, LIST and NLST", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-curl-")
      const server = yield* testServer({ ftp: { requireTLS: false } })
      const root = server.roots["alice"]!
      const url = `ftp://127.0.0.1:${server.ftpPort}`
      const data = crypto.randomBytes(3 * MiB + 11)
      fs.writeFileSync(path.join(root, "remote.bin"), data)
      fs.mkdirSync(path.join(root, "sub"))
      fs.writeFileSync(path.join(root, "sub", "note.txt"), "note\n")

      yield* curlOk(["-o", path.join(local, "down.bin"), `${url}/remote.bin`])
      assert.strictEqual(sha256File(path.join(local, "down.bin")), sha256(data), "download")

      const upload = crypto.randomBytes(2 * MiB + 5)
      fs.writeFileSync(path.join(local, "up.bin"), upload)
      yield* curlOk(["-T", path.join(local, "up.bin"), `${url}/sub/up.bin`])
      assert.strictEqual(sha256File(path.join(root, "sub", "up.bin")), sha256(upload), "upload")
      // -T to a directory URL (trailing slash) appends the local file name.
      yield* curlOk(["-T", path.join(local, "up.bin"), `${url}/sub/`])
      assert.strictEqual(sha256File(path.join(root, "sub", "up.bin")), sha256(upload), "upload to a directory URL")

      const listing = yield* curlOk([`${url}/`])
      const entries = lines(listing)
      assert.strictEqual(entries.length, 2, describeResult(listing))
      const remoteLine = entries.find((line) => line.endsWith(" remote.bin"))
      assert.isDefined(remoteLine, describeResult(listing))
      assert.match(remoteLine!, new RegExp(`^-rw-r--r-- +1 +\\S+ +\\S+ +${data.length} .* remote\\.bin$`))
      assert.match(entries.find((line) => line.endsWith(" sub")) ?? "", /^d/, describeResult(listing))

      const names = yield* curlOk(["--list-only", `${url}/sub/`])
      assert.deepStrictEqual(lines(names).sort(), ["note.txt", "up.bin"], describeResult(names))
    }))

  it.effect("plain FTP: quote commands before (MKD) and after (-DELE) a transfer", () =>
    Effect.gen(function*() {
      const server = yield* testServer({ ftp: { requireTLS: false } })
      const root = server.roots["alice"]!
      const url = `ftp://127.0.0.1:${server.ftpPort}`
      fs.writeFileSync(path.join(root, "x"), "to be deleted\n")

      // The listing runs after MKD and before DELE: it shows both.
      const result = yield* curlOk(["--list-only", "-Q", "MKD d", "-Q", "-DELE x", `${url}/`])
      assert.deepStrictEqual(lines(result).sort(), ["d", "x"], describeResult(result))
      assert.deepStrictEqual(fs.readdirSync(root), ["d"])
      assert.isTrue(fs.statSync(path.join(root, "d")).isDirectory())

      // A failing quote command ends curl with an error (exit 21, "quote command returned error").
      const again = yield* curl(["--list-only", "-Q", "MKD d", `${url}/`])
      assert.strictEqual(again.code, 21, describeResult(again))
      assert.match(again.stderr, /550/, describeResult(again))
      const missing = yield* curl(["--list-only", "-Q", "-DELE nope", `${url}/`])
      assert.strictEqual(missing.code, 21, describeResult(missing))
      assert.deepStrictEqual(fs.readdirSync(root), ["d"])
    }))

  it.effect("plain FTP: a missing file is an error, and nothing is created locally", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-curl-")
      const server = yield* testServer({ ftp: { requireTLS: false } })
      const url = `ftp://127.0.0.1:${server.ftpPort}`
      const result = yield* curl(["-o", path.join(local, "nope.bin"), `${url}/nope.bin`])
      // CURLE_FTP_COULDNT_RETR_FILE: the server answered RETR (or SIZE) with 550.
      assert.strictEqual(result.code, 78, describeResult(result))
      assert.isFalse(fs.existsSync(path.join(local, "nope.bin")))
    }))

  it.effect("plain FTP: resume with -C - of a partial download and of a partial upload", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-curl-")
      const server = yield* testServer({ ftp: { requireTLS: false } })
      const root = server.roots["alice"]!
      const url = `ftp://127.0.0.1:${server.ftpPort}`
      const data = crypto.randomBytes(4 * MiB + 4321)
      const cut = MiB + 333
      // A prefix that differs from the source proves that only the rest was transferred.
      const marked = sha256(Buffer.concat([Buffer.alloc(cut, 0x5a), data.subarray(cut)]))
      fs.writeFileSync(path.join(root, "remote.bin"), data)
      fs.writeFileSync(path.join(local, "partial.bin"), data.subarray(0, cut))
      fs.writeFileSync(path.join(local, "marked.bin"), Buffer.alloc(cut, 0x5a))

      yield* curlOk(["-C", "-", "-o", path.join(local, "partial.bin"), `${url}/remote.bin`])
      assert.strictEqual(sha256File(path.join(local, "partial.bin")), sha256(data), "resumed download")
      yield* curlOk(["-C", "-", "-o", path.join(local, "marked.bin"), `${url}/remote.bin`])
      assert.strictEqual(sha256File(path.join(local, "marked.bin")), marked, "download resumed at the local size")

      fs.writeFileSync(path.join(local, "source.bin"), data)
      fs.writeFileSync(path.join(root, "partial-up.bin"), data.subarray(0, cut))
      fs.writeFileSync(path.join(root, "marked-up.bin"), Buffer.alloc(cut, 0x5a))
      // curl asks SIZE, skips that much of the local file and sends the rest with APPE.
      yield* curlOk(["-C", "-", "-T", path.join(local, "source.bin"), `${url}/partial-up.bin`])
      assert.strictEqual(sha256File(path.join(root, "partial-up.bin")), sha256(data), "resumed upload")
      yield* curlOk(["-C", "-", "-T", path.join(local, "source.bin"), `${url}/marked-up.bin`])
      assert.strictEqual(sha256File(path.join(root, "marked-up.bin")), marked, "upload resumed at the remote size")
      assert.strictEqual(sha256File(path.join(root, "remote.bin")), sha256(data), "the source is untouched")

      // Resuming a complete download transfers nothing and succeeds.
      yield* curlOk(["-C", "-", "-o", path.join(local, "partial.bin"), `${url}/remote.bin`])
      assert.strictEqual(sha256File(path.join(local, "partial.bin")), sha256(data))
    }))

  it.effect("explicit FTPS (AUTH TLS, PROT P): 20 MiB upload and download, sha256 both ways", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-curl-")
      const server = yield* testServer({ ftp: {} })
      const root = server.roots["alice"]!
      const url = `ftp://127.0.0.1:${server.ftpPort}`
      const tlsArgs = ["--ssl-reqd", "--cacert", server.certFile]
      const data = crypto.randomBytes(20 * MiB)
      const digest = sha256(data)
      fs.writeFileSync(path.join(local, "up.bin"), data)

      yield* curlOk([...tlsArgs, "-T", path.join(local, "up.bin"), `${url}/big.bin`])
      assert.strictEqual(sha256File(path.join(root, "big.bin")), digest, "upload")
      yield* curlOk([...tlsArgs, "-o", path.join(local, "down.bin"), `${url}/big.bin`])
      assert.strictEqual(sha256File(path.join(local, "down.bin")), digest, "download")

      const listing = yield* curlOk([...tlsArgs, "--list-only", `${url}/`])
      assert.deepStrictEqual(lines(listing), ["big.bin"], describeResult(listing))
    }))

  it.effect("explicit FTPS: the certificate is checked; a plaintext login is refused when TLS is required", () =>
    Effect.gen(function*() {
      const server = yield* testServer({ ftp: {} })
      const url = `ftp://127.0.0.1:${server.ftpPort}`
      fs.writeFileSync(path.join(server.roots["alice"]!, "f.txt"), "secret\n")

      // Without --ssl, curl sends USER in clear; the server answers 534 and curl gives up.
      const plain = yield* curl([`${url}/f.txt`])
      assert.strictEqual(plain.code, 67, describeResult(plain))
      assert.match(plain.stderr, /Access denied: 534/, describeResult(plain))
      assert.notInclude(plain.stdout, "secret")

      // Without the CA, the self-signed certificate does not verify (CURLE_PEER_FAILED_VERIFICATION).
      const untrusted = yield* curl(["--ssl-reqd", `${url}/f.txt`])
      assert.strictEqual(untrusted.code, 60, describeResult(untrusted))
      assert.notInclude(untrusted.stdout, "secret")

      const trusted = yield* curlOk(["--ssl-reqd", "--cacert", server.certFile, `${url}/f.txt`])
      assert.strictEqual(trusted.stdout, "secret\n")
    }))

  it.effect("explicit FTPS with TLS required: a client that keeps data in clear (PROT C refused) gets no data", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-curl-")
      const server = yield* testServer({ ftp: {} })
      const root = server.roots["alice"]!
      const url = `ftp://127.0.0.1:${server.ftpPort}`
      fs.writeFileSync(path.join(root, "f.txt"), "secret\n")
      fs.writeFileSync(path.join(local, "up.txt"), "clear upload\n")
      // --ftp-ssl-control protects the login only: curl sends PROT C, the server answers 534, and curl
      // carries on regardless. The protection level is then still Clear (RFC 4217 §8's default), so any
      // data connection must be refused: with TLS required, nothing may cross the network in clear.
      const download = yield* curl(["--ftp-ssl-control", "--cacert", server.certFile, `${url}/f.txt`])
      assert.notInclude(download.stdout, "secret", describeResult(download))
      assert.notStrictEqual(download.code, 0, describeResult(download))
      const upload = yield* curl(["--ftp-ssl-control", "--cacert", server.certFile, "-T", path.join(local, "up.txt"), `${url}/up.txt`])
      assert.notStrictEqual(upload.code, 0, describeResult(upload))
      // STOR creates the file before the data connection is refused: at most an empty file remains.
      const stored = path.join(root, "up.txt")
      assert.strictEqual(fs.existsSync(stored) ? fs.statSync(stored).size : 0, 0, "an upload in clear was stored")
      const listing = yield* curl(["--ftp-ssl-control", "--cacert", server.certFile, "--list-only", `${url}/`])
      assert.notInclude(listing.stdout, "f.txt", describeResult(listing))
      assert.notStrictEqual(listing.code, 0, describeResult(listing))
    }))

  it.effect("implicit FTPS on its own port: upload, download and listing", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-curl-")
      const server = yield* testServer({ ftp: {} })
      const root = server.roots["alice"]!
      const url = `ftps://127.0.0.1:${server.ftpsPort}`
      const data = crypto.randomBytes(3 * MiB + 1)
      fs.writeFileSync(path.join(local, "up.bin"), data)

      yield* curlOk(["--cacert", server.certFile, "--ftp-create-dirs", "-T", path.join(local, "up.bin"), `${url}/in/up.bin`])
      assert.strictEqual(sha256File(path.join(root, "in", "up.bin")), sha256(data), "upload")
      yield* curlOk(["--cacert", server.certFile, "-o", path.join(local, "down.bin"), `${url}/in/up.bin`])
      assert.strictEqual(sha256File(path.join(local, "down.bin")), sha256(data), "download")
      const listing = yield* curlOk(["--cacert", server.certFile, `${url}/in/`])
      assert.match(lines(listing)[0] ?? "", new RegExp(`^-.* ${data.length} .* up\\.bin$`), describeResult(listing))
    }))
})
