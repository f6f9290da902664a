/**
 * Paramiko (python3-paramiko, another independent SFTP v3 client) against a
 * real server: posix-rename, stat/lstat/chmod/truncate, a 1000-entry listing,
 * seek and read, putfo/getfo and a prefetched download with sha256, public-key
 * authentication, and every error path mapped to the exception paramiko raises.
 *
 * Each scenario is a small Python script (inline, data through argv and the
 * environment) that prints one JSON object on stdout.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { describeResult, runOk, sshKeygen } from "../utils/Processes.js"
import { tempDir } from "../utils/TempDir.js"
import { testServer } from "../utils/TestServer.js"

const MiB = 1024 * 1024

// Debian's python3-paramiko lives in the system interpreter; a pyenv shim earlier in PATH may lack it.
const python = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3"

const sha256 = (bytes: Buffer) => crypto.createHash("sha256").update(bytes).digest("hex")

/** Shared by every script: connect with a password or a key file, and describe an exception. */
const prelude = String.raw`
import errno, hashlib, io, json, os, stat, sys
import paramiko

PORT = int(os.environ["PORTCULLIS_PORT"])

def connect(username, password=None, keyfile=None):
    transport = paramiko.Transport(("127.0.0.1", PORT))
    transport.banner_timeout = 30
    transport.auth_timeout = 30
    if keyfile is not None:
        transport.connect(username=username, pkey=paramiko.Ed25519Key.from_private_key_file(keyfile))
    else:
        transport.connect(username=username, password=password)
    return transport, paramiko.SFTPClient.from_transport(transport)

def describe(error):
    return {
        "type": type(error).__name__,
        "ioerror": isinstance(error, IOError),
        "errno": getattr(error, "errno", None),
        "message": str(error.args[-1]) if error.args else "",
    }

def attempt(action):
    try:
        action()
        return {"type": None}
    except Exception as error:
        return describe(error)

def digest(data):
    return hashlib.sha256(data).hexdigest()
`

/** Runs `body` after the prelude with `args` as sys.argv[1:]; parses the JSON it prints. */
const paramiko = <A>(port: number, body: string, args: ReadonlyArray<string> = []) =>
  runOk(python, ["-W", "ignore", "-c", `${prelude}\n${body}`, ...args], { env: { PORTCULLIS_PORT: String(port) }, timeoutMs: 45_000 }).pipe(
    Effect.map((result) => {
      try {
        return JSON.parse(result.stdout) as A
      } catch {
        throw new Error(`not JSON: ${describeResult(result)}`)
      }
    })
  )

interface Described {
  readonly type: string | null
  readonly ioerror?: boolean
  readonly errno?: number | null
  readonly message?: string
}

describe("paramiko", () => {
  it.effect("posix_rename, stat, lstat, chmod, truncate, seek and read", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const root = server.roots["alice"]!
      const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
      fs.writeFileSync(path.join(root, "a.txt"), alphabet)
      fs.writeFileSync(path.join(root, "b.txt"), "replaced")
      fs.writeFileSync(path.join(root, "c.txt"), "kept")
      fs.writeFileSync(path.join(server.base, "outside.txt"), "outside")
      fs.symlinkSync(path.join(server.base, "outside.txt"), path.join(root, "link"))
      const got = yield* paramiko<{
        plainRename: Described
        stat: { size: number; mode: number; isFile: boolean }
        chmodded: number
        truncated: number
        lstatLink: { isLink: boolean }
        statLink: Described
        reads: Array<string>
        tell: number
        fstat: number
        names: Array<string>
      }>(server.port, String.raw`
transport, sftp = connect("alice", password="alice-password")
out = {}
# RENAME never replaces; posix-rename does.
out["plainRename"] = attempt(lambda: sftp.rename("/c.txt", "/b.txt"))
sftp.posix_rename("/a.txt", "/b.txt")
st = sftp.stat("/b.txt")
out["stat"] = {"size": st.st_size, "mode": st.st_mode, "isFile": stat.S_ISREG(st.st_mode)}
sftp.chmod("/b.txt", 0o640)
out["chmodded"] = stat.S_IMODE(sftp.stat("/b.txt").st_mode)
sftp.truncate("/b.txt", 20)
out["truncated"] = sftp.lstat("/b.txt").st_size
out["lstatLink"] = {"isLink": stat.S_ISLNK(sftp.lstat("/link").st_mode)}
out["statLink"] = attempt(lambda: sftp.stat("/link"))
with sftp.open("/b.txt", "r") as f:
    reads = []
    f.seek(4)
    reads.append(f.read(3).decode())
    f.seek(2, 1)
    reads.append(f.read(4).decode())
    f.seek(-5, 2)
    reads.append(f.read().decode())
    f.seek(18)
    reads.append(f.read(100).decode())
    reads.append(f.read(100).decode())
    out["reads"] = reads
    out["tell"] = f.tell()
    out["fstat"] = f.stat().st_size
out["names"] = sorted(sftp.listdir("/"))
sftp.close()
transport.close()
print(json.dumps(out))
`)
      assert.deepStrictEqual(got.plainRename, { type: "OSError", ioerror: true, errno: null, message: "File exists" })
      assert.deepStrictEqual(got.stat, { size: alphabet.length, mode: got.stat.mode, isFile: true })
      assert.strictEqual(got.chmodded, 0o640)
      assert.strictEqual(got.truncated, 20)
      assert.isTrue(got.lstatLink.isLink)
      assert.deepStrictEqual(got.statLink, { type: "PermissionError", ioerror: true, errno: 13, message: "Symbolic links are not followed" })
      assert.deepStrictEqual(got.reads, ["456", "9abc", "fghij", "ij", ""])
      assert.strictEqual(got.tell, 20)
      assert.strictEqual(got.fstat, 20)
      assert.deepStrictEqual(got.names, ["b.txt", "c.txt", "link"])
      assert.strictEqual(fs.readFileSync(path.join(root, "b.txt"), "utf8"), alphabet.slice(0, 20))
      assert.strictEqual(fs.statSync(path.join(root, "b.txt")).mode & 0o777, 0o640)
      assert.strictEqual(fs.readFileSync(path.join(root, "c.txt"), "utf8"), "kept")
      assert.isFalse(fs.existsSync(path.join(root, "a.txt")))
      assert.strictEqual(fs.readFileSync(path.join(server.base, "outside.txt"), "utf8"), "outside")
    }))

  it.effect("listdir_attr on a 1000-entry directory", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const dir = path.join(server.roots["alice"]!, "many")
      fs.mkdirSync(dir)
      const expected: Record<string, number> = {}
      for (let i = 0; i < 1000; i++) {
        const name = `entry-${String(i).padStart(4, "0")}${i % 10 === 0 ? ".d" : ".txt"}`
        if (i % 10 === 0) fs.mkdirSync(path.join(dir, name))
        else {
          fs.writeFileSync(path.join(dir, name), "x".repeat(i % 97))
          expected[name] = i % 97
        }
      }
      const got = yield* paramiko<{ entries: Array<[string, number, boolean]>; names: number }>(server.port, String.raw`
transport, sftp = connect("alice", password="alice-password")
entries = [[a.filename, a.st_size, stat.S_ISDIR(a.st_mode)] for a in sftp.listdir_attr(sys.argv[1])]
names = len(sftp.listdir(sys.argv[1]))
transport.close()
print(json.dumps({"entries": entries, "names": names}))
`, ["/many"])
      assert.strictEqual(got.entries.length, 1000)
      assert.strictEqual(got.names, 1000)
      assert.strictEqual(new Set(got.entries.map(([name]) => name)).size, 1000)
      for (const [name, size, isDir] of got.entries) {
        if (name.endsWith(".d")) assert.isTrue(isDir, name)
        else {
          assert.isFalse(isDir, name)
          assert.strictEqual(size, expected[name], name)
        }
      }
    }))

  it.effect("getfo, get and a prefetched read of a 30 MiB file, sha256", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const local = yield* tempDir("portcullis-paramiko-")
      const big = crypto.randomBytes(30 * MiB)
      fs.writeFileSync(path.join(server.roots["alice"]!, "big.bin"), big)
      const got = yield* paramiko<{ getfo: string; prefetched: string; got: string; gotSize: number }>(server.port, String.raw`
transport, sftp = connect("alice", password="alice-password")
buffer = io.BytesIO()
sftp.getfo("/big.bin", buffer)
with sftp.open("/big.bin", "rb") as f:
    f.prefetch()
    prefetched = f.read()
sftp.get("/big.bin", sys.argv[1])
with open(sys.argv[1], "rb") as f:
    got = f.read()
transport.close()
print(json.dumps({"getfo": digest(buffer.getvalue()), "prefetched": digest(prefetched), "got": digest(got), "gotSize": len(got)}))
`, [path.join(local, "copy.bin")])
      assert.strictEqual(got.getfo, sha256(big), "getfo")
      assert.strictEqual(got.prefetched, sha256(big), "prefetch")
      assert.strictEqual(got.gotSize, big.length)
      assert.strictEqual(got.got, sha256(big), "get")
    }))

  // paramiko's pipelined writer (putfo, put) drains replies oldest first and drops any other reply it
  // reads meanwhile: a reply that overtakes an older one leaves it waiting forever. The channel
  // timeout turns that hang into an exception.
  it.effect("putfo of 16 MiB (pipelined writes), sha256", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const local = yield* tempDir("portcullis-paramiko-")
      const upload = crypto.randomBytes(16 * MiB + 5)
      fs.writeFileSync(path.join(local, "upload.bin"), upload)
      const got = yield* paramiko<{ putSize: number; error: Described | null }>(server.port, String.raw`
transport, sftp = connect("alice", password="alice-password")
sftp.get_channel().settimeout(10)
try:
    with open(sys.argv[1], "rb") as f:
        attrs = sftp.putfo(f, "/put.bin", confirm=True)
    print(json.dumps({"putSize": attrs.st_size, "error": None}))
except Exception as error:
    print(json.dumps({"putSize": -1, "error": describe(error)}))
transport.close()
`, [path.join(local, "upload.bin")])
      assert.isNull(got.error, "putfo waited for a WRITE reply that arrived out of order")
      assert.strictEqual(got.putSize, upload.length)
      assert.strictEqual(sha256(fs.readFileSync(path.join(server.roots["alice"]!, "put.bin"))), sha256(upload), "putfo")
    }))

  // OpenSSH's scp (in-place downloads) and paramiko's writer rely on replies in request order, as
  // OpenSSH's sftp-server and pkg/sftp (its packet manager) send them.
  it.effect("replies to pipelined READs and WRITEs on one handle come back in request order", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      fs.writeFileSync(path.join(server.roots["alice"]!, "data.bin"), crypto.randomBytes(4 * MiB))
      const got = yield* paramiko<Record<string, Array<number>>>(server.port, String.raw`
from paramiko.message import Message
from paramiko.sftp import CMD_READ, CMD_WRITE
transport, sftp = connect("alice", password="alice-password")
sftp.get_channel().settimeout(10)
out = {}
for kind, command, mode in [("read", CMD_READ, "rb"), ("write", CMD_WRITE, "r+b")]:
    f = sftp.open("/data.bin", mode)
    ids = list(range(100000, 100128))
    for i, request_id in enumerate(ids):
        message = Message()
        message.add_int(request_id)
        message.add_string(f.handle)
        message.add_int64(i * 32768)
        if command == CMD_READ:
            message.add_int(32768)
        else:
            message.add_string(b"w" * 32768)
        sftp._send_packet(command, message)
    out[kind] = [Message(sftp._read_packet()[1]).get_int() - 100000 for _ in ids]
    f.close()
transport.close()
print(json.dumps(out))
`)
      const inOrder = Array.from({ length: 128 }, (_, i) => i)
      assert.deepStrictEqual(got, { read: inOrder, write: inOrder })
    }))

  it.effect("errors map to paramiko's exceptions: permission, no such file, exists, not empty, unsupported", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      fs.mkdirSync(path.join(server.roots["alice"]!, "full"))
      fs.writeFileSync(path.join(server.roots["alice"]!, "full", "f.txt"), "f")
      fs.writeFileSync(path.join(server.roots["reader"]!, "r.txt"), "r")
      fs.writeFileSync(path.join(server.roots["writer"]!, "w.txt"), "w")
      const got = yield* paramiko<Record<string, Described>>(server.port, String.raw`
out = {}
transport, sftp = connect("alice", password="alice-password")
out["stat missing"] = attempt(lambda: sftp.stat("/nope"))
out["open missing"] = attempt(lambda: sftp.open("/nope", "r"))
out["open in missing dir"] = attempt(lambda: sftp.open("/nope/f", "w"))
out["remove missing"] = attempt(lambda: sftp.remove("/nope"))
out["escape"] = attempt(lambda: sftp.open("/../../../etc/passwd", "r"))
sftp.mkdir("/made")
out["mkdir exists"] = attempt(lambda: sftp.mkdir("/made"))
out["rmdir not empty"] = attempt(lambda: sftp.rmdir("/full"))
out["symlink"] = attempt(lambda: sftp.symlink("/etc/passwd", "/link"))
out["readlink"] = attempt(lambda: sftp.readlink("/full/f.txt"))
out["exclusive create"] = attempt(lambda: sftp.open("/full/f.txt", "x"))
transport.close()

transport, sftp = connect("reader", password="reader-password")
out["reader write"] = attempt(lambda: sftp.open("/new.txt", "w"))
out["reader mkdir"] = attempt(lambda: sftp.mkdir("/d"))
out["reader remove"] = attempt(lambda: sftp.remove("/r.txt"))
out["reader read"] = attempt(lambda: sftp.open("/r.txt", "r").read())
transport.close()

transport, sftp = connect("writer", password="writer-password")
out["writer read"] = attempt(lambda: sftp.open("/w.txt", "r"))
out["writer listdir"] = attempt(lambda: sftp.listdir("/"))
out["writer stat"] = attempt(lambda: sftp.stat("/w.txt"))
transport.close()
print(json.dumps(out))
`)
      const noSuchFile = { type: "FileNotFoundError", ioerror: true, errno: 2, message: "No such file" }
      const denied = { type: "PermissionError", ioerror: true, errno: 13, message: "Permission denied" }
      const failure = (message: string) => ({ type: "OSError", ioerror: true, errno: null, message })
      const ok = { type: null }
      assert.deepStrictEqual(got, {
        "stat missing": noSuchFile,
        "open missing": noSuchFile,
        "open in missing dir": noSuchFile,
        "remove missing": noSuchFile,
        "escape": noSuchFile,
        "mkdir exists": failure("File exists"),
        "rmdir not empty": failure("Directory not empty"),
        "symlink": failure("Operation unsupported"),
        "readlink": failure("Operation unsupported"),
        "exclusive create": failure("File exists"),
        "reader write": denied,
        "reader mkdir": denied,
        "reader remove": denied,
        "reader read": ok,
        "writer read": denied,
        "writer listdir": denied,
        "writer stat": ok
      })
      assert.isFalse(fs.existsSync(path.join(server.roots["alice"]!, "link")))
      assert.deepStrictEqual(fs.readdirSync(server.roots["reader"]!), ["r.txt"])
    }))

  it.effect("authentication: a wrong password or an unknown user raises AuthenticationException", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const got = yield* paramiko<Record<string, { type: string | null; auth: boolean }>>(server.port, String.raw`
out = {}
for label, user, password in [("wrong password", "alice", "wrong"), ("unknown user", "mallory", "alice-password")]:
    try:
        connect(user, password=password)
        out[label] = {"type": None, "auth": False}
    except Exception as error:
        out[label] = {"type": type(error).__name__, "auth": isinstance(error, paramiko.AuthenticationException)}
transport, sftp = connect("alice", password="alice-password")
out["right password"] = {"type": None, "auth": sftp.normalize(".") == "/"}
transport.close()
print(json.dumps(out))
`)
      assert.deepStrictEqual(got, {
        "wrong password": { type: "AuthenticationException", auth: true },
        "unknown user": { type: "AuthenticationException", auth: true },
        "right password": { type: null, auth: true }
      })
    }))

  it.effect("public-key authentication with an ed25519 key from ssh-keygen", () =>
    Effect.gen(function*() {
      const local = yield* tempDir("portcullis-paramiko-")
      const key = yield* sshKeygen(local, "ed25519", "listed")
      const stranger = yield* sshKeygen(local, "ed25519", "stranger")
      const server = yield* testServer({ users: [{ username: "keyed", authorizedKeys: [key.publicKey] }] })
      const got = yield* paramiko<{ cwd: string; read: string; stranger: Described; password: Described }>(server.port, String.raw`
transport, sftp = connect("keyed", keyfile=sys.argv[1])
with sftp.open("/hello.txt", "w") as f:
    f.write(b"hello from paramiko")
with sftp.open("/hello.txt", "r") as f:
    read = f.read().decode()
cwd = sftp.normalize(".")
transport.close()
print(json.dumps({
    "cwd": cwd,
    "read": read,
    "stranger": attempt(lambda: connect("keyed", keyfile=sys.argv[2])),
    "password": attempt(lambda: connect("keyed", password="anything")),
}))
`, [key.privateKey, stranger.privateKey])
      assert.strictEqual(got.cwd, "/")
      assert.strictEqual(got.read, "hello from paramiko")
      assert.strictEqual(got.stranger.type, "AuthenticationException")
      // The user has no password: the server does not even offer the method.
      assert.include(["AuthenticationException", "BadAuthenticationType"], got.password.type)
      assert.strictEqual(fs.readFileSync(path.join(server.roots["keyed"]!, "hello.txt"), "utf8"), "hello from paramiko")
    }))
})
