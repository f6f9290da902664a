/**
 * Python's ftplib (the standard library client) against a real server: FTP in
 * clear (requireTLS false) and FTP_TLS with prot_p() (requireSessionReuse false,
 * since ftplib never resumes the control connection's TLS session on a data
 * connection). Transfers are checked with sha256, listings with MLSD and NLST,
 * and every error path with the reply code ftplib raises. Against the default
 * server (session reuse required) ftplib's data connections are refused while
 * its control connection stays usable.
 *
 * Each test runs one Python script that prints a JSON object of observations;
 * the assertions are made here.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { describeResult, run } from "../utils/Processes.js"
import { tempDir } from "../utils/TempDir.js"
import { testServer } from "../utils/TestServer.js"

const MiB = 1024 * 1024

const sha256 = (bytes: Buffer) => crypto.createHash("sha256").update(bytes).digest("hex")
const sha256File = (file: string) => sha256(fs.readFileSync(file))

/**
 * Shared by every script: `connect(user, password)` in the mode given by the
 * environment (FTP_MODE "plain" or "tls"; with "tls", prot_p() unless told not
 * to), and `attempt(f)`, which turns an ftplib error into {"error", "message"}.
 * When a failure leaves a reply unread on the control connection (a data
 * connection that broke at the TLS layer), `attempt` reads it, so the script
 * stays in step with the server.
 */
const prelude = String.raw`
import ftplib, hashlib, io, json, os, socket, ssl, sys
HOST = "127.0.0.1"
PORT = int(os.environ["FTP_PORT"])
MODE = os.environ["FTP_MODE"]
CA = os.environ.get("FTP_CA")

def connect(user="alice", password="alice-password", prot=True):
    if MODE == "tls":
        context = ssl.create_default_context(cafile=CA)
        ftp = ftplib.FTP_TLS(context=context, timeout=30)
    else:
        ftp = ftplib.FTP(timeout=30)
    ftp.connect(HOST, PORT)
    ftp.login(user, password)
    if MODE == "tls" and prot:
        ftp.prot_p()
    return ftp

def attempt(ftp, f, *args):
    try:
        result = f(*args)
        return {"ok": result if isinstance(result, (str, int, list)) or result is None else repr(result)}
    except (ftplib.error_reply, ftplib.error_temp, ftplib.error_perm, ftplib.error_proto) as e:
        return {"error": type(e).__name__, "message": str(e)}
    except (OSError, EOFError) as e:
        # The data connection broke below FTP: the transfer's final reply is still to be read.
        pending = None
        if ftp is not None:
            try:
                pending = ftp.getresp()
            except Exception as r:
                pending = str(r)
        return {"error": type(e).__name__, "message": str(e), "pending": pending}

def sha256_of(ftp, name):
    digest = hashlib.sha256()
    ftp.retrbinary("RETR " + name, digest.update, blocksize=65536)
    return digest.hexdigest()

out = {}
`

/** Runs `prelude + body` with python3; returns the JSON it printed last. */
const python = (body: string, env: Record<string, string>) =>
  run("/usr/bin/python3", ["-c", prelude + body], { env, timeoutMs: 50_000 }).pipe(
    Effect.orDie,
    Effect.map((result) => {
      assert.strictEqual(result.code, 0, describeResult(result))
      const last = result.stdout.trim().split("\n").at(-1) ?? ""
      return JSON.parse(last) as Record<string, unknown>
    })
  )

type Mode = "plain" | "tls"

/** A server for `mode`, and the environment that points the scripts at it. */
const setup = (mode: Mode) =>
  Effect.gen(function*() {
    const server = yield* testServer({ ftp: mode === "plain" ? { requireTLS: false } : { requireSessionReuse: false } })
    const env = { FTP_PORT: String(server.ftpPort), FTP_MODE: mode, FTP_CA: server.certFile }
    return { server, env }
  })

interface Attempt {
  readonly ok?: unknown
  readonly error?: string
  readonly message?: string
  readonly pending?: string | null
}

/** The attempt failed with `code` (the message starts with it), raised as `kind` when given. */
const assertCode = (value: unknown, code: number, kind?: string) => {
  const a = value as Attempt
  assert.isDefined(a.message, `expected ${code}, got ${JSON.stringify(value)}`)
  assert.match(a.message!, new RegExp(`^${code} `), JSON.stringify(value))
  if (kind !== undefined) assert.strictEqual(a.error, kind, JSON.stringify(value))
}

describe("Python ftplib", () => {
  for (const mode of ["plain", "tls"] as const) {
    const label = mode === "plain" ? "FTP" : "FTP_TLS with prot_p()"

    it.effect(`${label}: storbinary and retrbinary of 5 MiB, sha256 both ways; REST`, () =>
      Effect.gen(function*() {
        const { server, env } = yield* setup(mode)
        const local = yield* tempDir("portcullis-ftplib-")
        const root = server.roots["alice"]!
        const data = crypto.randomBytes(5 * MiB + 99)
        fs.writeFileSync(path.join(local, "up.bin"), data)
        const out = yield* python(
          String.raw`
ftp = connect()
with open(os.environ["LOCAL_FILE"], "rb") as f:
    out["stor"] = ftp.storbinary("STOR big.bin", f, blocksize=65536)
out["size"] = ftp.size("big.bin")
out["sha"] = sha256_of(ftp, "big.bin")
with open(os.environ["LOCAL_DOWN"], "wb") as f:
    out["retr"] = ftp.retrbinary("RETR big.bin", f.write, blocksize=65536)
# REST: the tail of the file from an offset.
tail = io.BytesIO()
out["rest"] = ftp.retrbinary("RETR big.bin", tail.write, rest=5 * 1024 * 1024)
out["tail"] = tail.getvalue().hex()
out["quit"] = ftp.quit()
print(json.dumps(out))
`,
          { ...env, LOCAL_FILE: path.join(local, "up.bin"), LOCAL_DOWN: path.join(local, "down.bin") }
        )
        assert.match(String(out["stor"]), /^226 /)
        assert.match(String(out["retr"]), /^226 /)
        assert.match(String(out["rest"]), /^226 /)
        assert.strictEqual(out["size"], data.length)
        assert.strictEqual(sha256File(path.join(root, "big.bin")), sha256(data), "upload")
        assert.strictEqual(out["sha"], sha256(data), "download")
        assert.strictEqual(sha256File(path.join(local, "down.bin")), sha256(data), "download to a file")
        assert.strictEqual(out["tail"], data.subarray(5 * MiB).toString("hex"), "REST")
        assert.match(String(out["quit"]), /^221 /)
      }))

    it.effect(`${label}: mlsd, nlst, size, rename, delete, mkd/rmd, cwd/pwd`, () =>
      Effect.gen(function*() {
        const { server, env } = yield* setup(mode)
        const root = server.roots["alice"]!
        fs.writeFileSync(path.join(root, "a.txt"), "alpha\n")
        fs.mkdirSync(path.join(root, "docs"))
        fs.writeFileSync(path.join(root, "docs", "b.txt"), "bravo!\n")
        const out = yield* python(
          String.raw`
ftp = connect()
out["welcome"] = ftp.getwelcome()
out["pwd0"] = ftp.pwd()
out["mlsd"] = sorted([[name, facts] for name, facts in ftp.mlsd("/", facts=["type", "size", "perm", "modify"])])
out["nlst"] = sorted(ftp.nlst())
out["mkd"] = ftp.mkd("new dir")
out["cwd"] = ftp.cwd("new dir")
out["pwd1"] = ftp.pwd()
ftp.storbinary("STOR inside.txt", io.BytesIO(b"inside\n"))
out["nlst_here"] = ftp.nlst()
out["cdup"] = ftp.sendcmd("CDUP")
out["pwd2"] = ftp.pwd()
out["size"] = ftp.size("docs/b.txt")
out["rename"] = ftp.rename("a.txt", "docs/c.txt")
out["nlst_docs"] = sorted(ftp.nlst("docs"))
out["delete"] = ftp.delete("docs/c.txt")
out["rmd_full"] = attempt(ftp, ftp.rmd, "new dir")
out["delete_inside"] = ftp.delete("/new dir/inside.txt")
out["rmd"] = ftp.rmd("new dir")
out["mdtm"] = ftp.sendcmd("MDTM docs/b.txt")
lines = []
ftp.retrlines("LIST docs", lines.append)
out["list"] = lines
out["quit"] = ftp.quit()
print(json.dumps(out))
`,
          env
        )
        assert.match(String(out["welcome"]), /^220 /)
        assert.strictEqual(out["pwd0"], "/")
        const mlsd = out["mlsd"] as Array<[string, Record<string, string>]>
        assert.deepStrictEqual(mlsd.map(([name, facts]) => [name, facts["type"], facts["size"]]), [
          ["a.txt", "file", "6"],
          ["docs", "dir", undefined]
        ])
        for (const [, facts] of mlsd) assert.match(facts["modify"] ?? "", /^\d{14}(\.\d+)?$/)
        const [filePerm, dirPerm] = mlsd.map(([, facts]) => facts["perm"] ?? "")
        // RFC 3659 §7.5.5: a read/write user may read, write, append, delete and rename files, and
        // list, enter, create in, delete and rename directories.
        for (const letter of "rwadf") assert.include(filePerm!, letter, `file perm ${filePerm}`)
        for (const letter of "elcdfm") assert.include(dirPerm!, letter, `dir perm ${dirPerm}`)
        assert.deepStrictEqual(out["nlst"], ["a.txt", "docs"])
        assert.strictEqual(out["mkd"], "/new dir")
        assert.match(String(out["cwd"]), /^250 /)
        assert.strictEqual(out["pwd1"], "/new dir")
        assert.deepStrictEqual(out["nlst_here"], ["inside.txt"])
        assert.match(String(out["cdup"]), /^250 /)
        assert.strictEqual(out["pwd2"], "/")
        assert.strictEqual(out["size"], 7)
        assert.match(String(out["rename"]), /^250 /)
        // NLST of a directory gives bare names (RFC 959 leaves the form open; clients accept both).
        assert.deepStrictEqual(out["nlst_docs"], ["b.txt", "c.txt"])
        assert.match(String(out["delete"]), /^250 /)
        assertCode(out["rmd_full"], 550, "error_perm")
        assert.match(String(out["rmd"]), /^250 /)
        assert.match(String(out["mdtm"]), /^213 \d{14}$/)
        const list = out["list"] as Array<string>
        assert.strictEqual(list.length, 1, JSON.stringify(list))
        assert.match(list[0]!, /^-rw-r--r-- +1 .* 7 .* b\.txt$/)
        assert.match(String(out["quit"]), /^221 /)
        assert.deepStrictEqual(fs.readdirSync(root).sort(), ["docs"])
        assert.deepStrictEqual(fs.readdirSync(path.join(root, "docs")).sort(), ["b.txt"])
      }))

    it.effect(`${label}: error replies (550, 553, 503, 530) and permissions of read-only and write-only users`, () =>
      Effect.gen(function*() {
        const { server, env } = yield* setup(mode)
        fs.writeFileSync(path.join(server.roots["alice"]!, "here.txt"), "here\n")
        fs.writeFileSync(path.join(server.roots["reader"]!, "r.txt"), "readable\n")
        fs.writeFileSync(path.join(server.roots["writer"]!, "w.txt"), "hidden\n")
        const out = yield* python(
          String.raw`
sink = io.BytesIO()
ftp = connect()
out["retr_missing"] = attempt(ftp, ftp.retrbinary, "RETR nope.bin", sink.write)
out["size_missing"] = attempt(ftp, ftp.size, "nope.bin")
out["cwd_missing"] = attempt(ftp, ftp.cwd, "nope")
out["cwd_file"] = attempt(ftp, ftp.cwd, "here.txt")
out["delete_missing"] = attempt(ftp, ftp.delete, "nope.bin")
out["rmd_missing"] = attempt(ftp, ftp.rmd, "nope")
out["mkd_exists"] = attempt(ftp, ftp.mkd, "here.txt")
out["mkd_root"] = attempt(ftp, ftp.mkd, "/")
out["stor_missing_dir"] = attempt(ftp, ftp.storbinary, "STOR nope/x.bin", io.BytesIO(b"x"))
out["rnfr_missing"] = attempt(ftp, ftp.sendcmd, "RNFR nope.bin")
out["rnto_alone"] = attempt(ftp, ftp.sendcmd, "RNTO other.bin")
out["rnfr"] = attempt(ftp, ftp.sendcmd, "RNFR here.txt")
out["rnfr_forgotten"] = attempt(ftp, ftp.sendcmd, "NOOP")
out["rnto_after_noop"] = attempt(ftp, ftp.sendcmd, "RNTO there.txt")
out["escape"] = attempt(ftp, ftp.size, "../../../../etc/passwd")
out["unknown"] = attempt(ftp, ftp.sendcmd, "XYZW")
out["not_a_verb"] = attempt(ftp, ftp.sendcmd, "XYZZY")
out["pwd"] = ftp.pwd()
ftp.quit()

reader = connect("reader", "reader-password")
out["reader_retr"] = sha256_of(reader, "r.txt")
out["reader_nlst"] = reader.nlst()
out["reader_stor"] = attempt(reader, reader.storbinary, "STOR up.txt", io.BytesIO(b"nope"))
out["reader_appe"] = attempt(reader, reader.storbinary, "APPE r.txt", io.BytesIO(b"nope"))
out["reader_dele"] = attempt(reader, reader.delete, "r.txt")
out["reader_mkd"] = attempt(reader, reader.mkd, "d")
out["reader_rnfr"] = attempt(reader, reader.sendcmd, "RNFR r.txt")
reader.quit()

writer = connect("writer", "writer-password")
out["writer_retr"] = attempt(writer, writer.retrbinary, "RETR w.txt", sink.write)
out["writer_list"] = attempt(writer, writer.retrlines, "LIST", sink.write)
out["writer_nlst"] = attempt(writer, writer.nlst)
out["writer_mlsd"] = attempt(writer, lambda: list(writer.mlsd()))
out["writer_stor"] = attempt(writer, writer.storbinary, "STOR up.txt", io.BytesIO(b"from the writer\n"))
writer.quit()
out["sink"] = sink.getvalue().decode("latin-1")

out["bad_password"] = attempt(None, connect, "alice", "wrong-password")
out["unknown_user"] = attempt(None, connect, "mallory", "alice-password")
print(json.dumps(out))
`,
          env
        )
        assertCode(out["retr_missing"], 550, "error_perm")
        assertCode(out["size_missing"], 550, "error_perm")
        assertCode(out["cwd_missing"], 550, "error_perm")
        assertCode(out["cwd_file"], 550, "error_perm")
        assertCode(out["delete_missing"], 550, "error_perm")
        assertCode(out["rmd_missing"], 550, "error_perm")
        assertCode(out["mkd_exists"], 550, "error_perm")
        // The root cannot be created: a name that is not allowed (RFC 959 lists 553 for MKD).
        assertCode(out["mkd_root"], 553, "error_perm")
        assertCode(out["stor_missing_dir"], 550, "error_perm")
        assertCode(out["rnfr_missing"], 550, "error_perm")
        assertCode(out["rnto_alone"], 503, "error_perm")
        assert.match(String((out["rnfr"] as Attempt).ok), /^350 /)
        assertCode(out["rnto_after_noop"], 503, "error_perm")
        assertCode(out["escape"], 550, "error_perm")
        assertCode(out["unknown"], 502, "error_perm")
        assertCode(out["not_a_verb"], 500, "error_perm")
        assert.strictEqual(out["pwd"], "/")
        assert.deepStrictEqual(fs.readdirSync(server.roots["alice"]!), ["here.txt"])

        assert.strictEqual(out["reader_retr"], sha256(Buffer.from("readable\n")))
        assert.deepStrictEqual(out["reader_nlst"], ["r.txt"])
        for (const key of ["reader_stor", "reader_appe", "reader_dele", "reader_mkd", "reader_rnfr"]) {
          assertCode(out[key], 550, "error_perm")
          assert.notInclude(String((out[key] as Attempt).message), server.base)
        }
        assert.deepStrictEqual(fs.readdirSync(server.roots["reader"]!), ["r.txt"])
        assert.strictEqual(fs.readFileSync(path.join(server.roots["reader"]!, "r.txt"), "utf8"), "readable\n")

        for (const key of ["writer_retr", "writer_list", "writer_nlst", "writer_mlsd"]) assertCode(out[key], 550, "error_perm")
        assert.strictEqual(out["sink"], "", "nothing of the write-only user's files leaked")
        assert.match(String((out["writer_stor"] as Attempt).ok), /^226 /)
        assert.strictEqual(fs.readFileSync(path.join(server.roots["writer"]!, "up.txt"), "utf8"), "from the writer\n")

        assertCode(out["bad_password"], 530, "error_perm")
        assertCode(out["unknown_user"], 530, "error_perm")
      }))
  }

  it.effect("FTP: three failed logins on one connection close it with 421", () =>
    Effect.gen(function*() {
      const { env } = yield* setup("plain")
      const out = yield* python(
        String.raw`
ftp = ftplib.FTP(timeout=30)
ftp.connect(HOST, PORT)
out["tries"] = [attempt(ftp, ftp.login, "alice", "wrong-%d" % i) for i in range(3)]
out["after"] = attempt(ftp, ftp.sendcmd, "NOOP")
print(json.dumps(out))
`,
        env
      )
      const tries = out["tries"] as Array<Attempt>
      assertCode(tries[0], 530, "error_perm")
      assertCode(tries[1], 530, "error_perm")
      assertCode(tries[2], 421, "error_temp")
      // The server closed the connection after 421: ftplib sees EOF.
      assert.isDefined((out["after"] as Attempt).error, JSON.stringify(out["after"]))
    }))

  it.effect("FTP_TLS against the default server: data connections that do not resume the TLS session are refused, the control connection stays usable", () =>
    Effect.gen(function*() {
      const server = yield* testServer({ ftp: {} })
      fs.writeFileSync(path.join(server.roots["alice"]!, "f.txt"), "protected\n")
      const env = { FTP_PORT: String(server.ftpPort), FTP_MODE: "tls", FTP_CA: server.certFile }
      const out = yield* python(
        String.raw`
ftp = connect()
sink = io.BytesIO()
out["retr"] = attempt(ftp, ftp.retrbinary, "RETR f.txt", sink.write)
out["nlst"] = attempt(ftp, ftp.nlst)
out["stor"] = attempt(ftp, ftp.storbinary, "STOR up.txt", io.BytesIO(b"must not arrive\n"))
out["pwd"] = ftp.pwd()
out["size"] = ftp.size("f.txt")
out["noop"] = ftp.voidcmd("NOOP")
out["mkd"] = ftp.mkd("still-works")
out["quit"] = ftp.quit()
out["sink"] = sink.getvalue().decode("latin-1")
print(json.dumps(out))
`,
        env
      )
      // The refusal reaches ftplib either as the transfer's final reply (425 or 522), or, when the
      // data socket broke first, as an SSL/socket error with that reply still pending on the control
      // connection.
      for (const key of ["retr", "nlst", "stor"]) {
        const a = out[key] as Attempt
        const reply = a.pending ?? a.message ?? ""
        assert.isDefined(a.error, `${key}: ${JSON.stringify(a)}`)
        assert.match(String(reply), /^(425|522) /, `${key}: ${JSON.stringify(a)}`)
      }
      assert.strictEqual(out["sink"], "", "no data reached the client")
      // STOR opens (creates) the file before the data connection: an empty file may remain, but no byte arrived.
      const up = path.join(server.roots["alice"]!, "up.txt")
      assert.strictEqual(fs.existsSync(up) ? fs.statSync(up).size : 0, 0, "nothing was stored")
      assert.strictEqual(out["pwd"], "/")
      assert.strictEqual(out["size"], 10)
      assert.match(String(out["noop"]), /^200 /)
      assert.strictEqual(out["mkd"], "/still-works")
      assert.match(String(out["quit"]), /^221 /)
      assert.isTrue(fs.statSync(path.join(server.roots["alice"]!, "still-works")).isDirectory())
    }))

  it.effect("FTP_TLS against the default server: a STOR whose data connection is refused leaves the existing file intact", () =>
    Effect.gen(function*() {
      const server = yield* testServer({ ftp: {} })
      const keep = path.join(server.roots["alice"]!, "keep.txt")
      fs.writeFileSync(keep, "keep me\n")
      const env = { FTP_PORT: String(server.ftpPort), FTP_MODE: "tls", FTP_CA: server.certFile }
      const out = yield* python(
        String.raw`
ftp = connect()
out["stor"] = attempt(ftp, ftp.storbinary, "STOR keep.txt", io.BytesIO(b"replacement\n"))
out["size"] = ftp.size("keep.txt")
ftp.quit()
print(json.dumps(out))
`,
        env
      )
      const stor = out["stor"] as Attempt
      assert.match(String(stor.pending ?? stor.message), /^(425|522) /, JSON.stringify(stor))
      // Not a byte of the new content arrived, so the old content must still be there: truncating at
      // STOR, before the data connection exists, loses the file whenever that connection then fails.
      assert.strictEqual(fs.readFileSync(keep, "utf8"), "keep me\n", "the existing file was truncated")
      assert.strictEqual(out["size"], 8)
    }))

  it.effect("FTP_TLS without prot_p() against a TLS-required server: no data crosses in clear", () =>
    Effect.gen(function*() {
      const { server, env } = yield* setup("tls")
      fs.writeFileSync(path.join(server.roots["alice"]!, "f.txt"), "protected\n")
      const out = yield* python(
        String.raw`
ftp = connect(prot=False)
sink = io.BytesIO()
out["pbsz"] = ftp.voidcmd("PBSZ 0")
out["prot_c"] = attempt(ftp, ftp.prot_c)
out["retr"] = attempt(ftp, ftp.retrbinary, "RETR f.txt", sink.write)
out["list"] = attempt(ftp, ftp.retrlines, "LIST", lambda line: sink.write(line.encode()))
out["stor"] = attempt(ftp, ftp.storbinary, "STOR clear.txt", io.BytesIO(b"sent in clear\n"))
out["sink"] = sink.getvalue().decode("latin-1")
out["pwd"] = ftp.pwd()
ftp.quit()
print(json.dumps(out))
`,
        env
      )
      assertCode(out["prot_c"], 534, "error_perm")
      assert.strictEqual(out["sink"], "", `data was sent in clear: ${JSON.stringify(out)}`)
      for (const key of ["retr", "list", "stor"]) assert.isDefined((out[key] as Attempt).error, `${key}: ${JSON.stringify(out[key])}`)
      // STOR creates the file before the data connection is refused: at most an empty file remains.
      const stored = path.join(server.roots["alice"]!, "clear.txt")
      assert.strictEqual(fs.existsSync(stored) ? fs.statSync(stored).size : 0, 0, "an upload in clear was stored")
      assert.strictEqual(out["pwd"], "/")
    }))
})
