// The floor of an ssh2-based SFTP server: a measuring stick for bench/run.sh
// (BENCH_SSH2_FLOOR=async|sync), not a server to run. It answers each request
// with the least work ssh2 allows: ssh2's own SFTP parser, one node:fs call per
// request, no jail, no permission check, no event, no log. What it costs per
// request is what any server built on ssh2 pays before doing its own job, so
// its time on a case bounds from below what Portcullis can reach there.
//   async: each fs call goes through libuv's thread pool, as design.md requires
//          of Portcullis;
//   sync:  each fs call blocks the event loop, as OpenSSH's sftp-server does.
// It serves only what the bench's SFTP cases send (mkdir, realpath, stat,
// open/read/write/close, ls and ls -l), from 127.0.0.1 only.
// Usage: node bench/ssh2-floor.mjs PORT ROOT USER PASSWORD HOSTKEY async|sync
import fs from "node:fs"
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)
const ssh2 = require("ssh2")
const { STATUS_CODE, OPEN_MODE } = ssh2.utils.sftp
const [port, root, user, password, hostKey, mode] = process.argv.slice(2)
if (mode !== "async" && mode !== "sync") {
  console.error("usage: ssh2-floor.mjs PORT ROOT USER PASSWORD HOSTKEY async|sync")
  process.exit(2)
}

const hostPath = (path) => root + (path.startsWith("/") ? path : "/" + path)

const openFlags = (flags) => {
  const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_EXCL, O_APPEND } = fs.constants
  const read = (flags & OPEN_MODE.READ) !== 0
  const write = (flags & OPEN_MODE.WRITE) !== 0
  let result = read && write ? O_RDWR : write ? O_WRONLY : O_RDONLY
  if (flags & OPEN_MODE.CREAT) result |= O_CREAT
  if (flags & OPEN_MODE.TRUNC) result |= O_TRUNC
  if (flags & OPEN_MODE.EXCL) result |= O_EXCL
  if (flags & OPEN_MODE.APPEND) result |= O_APPEND
  return result
}

const attributes = (stat) => ({
  mode: stat.mode,
  uid: stat.uid,
  gid: stat.gid,
  size: stat.size,
  atime: Math.floor(stat.atimeMs / 1000),
  mtime: Math.floor(stat.mtimeMs / 1000)
})

/** One node:fs call, in the thread pool or on the event loop; `done(error, result)`. */
const call = (name, args, done) => {
  if (mode === "async") return fs[name](...args, done)
  let result
  try {
    result = fs[`${name}Sync`](...args)
  } catch (error) {
    return done(error)
  }
  done(undefined, result)
}

const serveSftp = (sftp) => {
  const handles = new Map()
  let nextHandle = 0
  const newHandle = (value) => {
    const handle = Buffer.alloc(4)
    handle.writeUInt32BE(nextHandle)
    handles.set(nextHandle++, value)
    return handle
  }
  const handleOf = (handle) => handles.get(handle.readUInt32BE(0))
  const reply = (id, onSuccess) => (error, result) =>
    error
      ? sftp.status(id, error.code === "ENOENT" ? STATUS_CODE.NO_SUCH_FILE : STATUS_CODE.FAILURE)
      : onSuccess(result)
  const ok = (id) => () => sftp.status(id, STATUS_CODE.OK)

  // OpenSSH's server ends an SFTP channel with exit-status 0, EOF and close; sftp waits for them.
  sftp.on("end", () => {
    sftp._protocol.exitStatus(sftp.outgoing.id, 0)
    sftp._protocol.channelEOF(sftp.outgoing.id)
    sftp.end()
  })
  sftp.on("REALPATH", (id, path) => {
    const parts = []
    for (const part of path.split("/")) {
      if (part === "..") parts.pop()
      else if (part !== "" && part !== ".") parts.push(part)
    }
    const absolute = "/" + parts.join("/")
    sftp.name(id, [{ filename: absolute, longname: absolute, attrs: {} }])
  })
  sftp.on("STAT", (id, path) => call("stat", [hostPath(path)], reply(id, (s) => sftp.attrs(id, attributes(s)))))
  sftp.on("LSTAT", (id, path) => call("lstat", [hostPath(path)], reply(id, (s) => sftp.attrs(id, attributes(s)))))
  sftp.on("MKDIR", (id, path) => call("mkdir", [hostPath(path), 0o755], reply(id, ok(id))))
  sftp.on("OPEN", (id, path, flags) =>
    call("open", [hostPath(path), openFlags(flags), 0o644], reply(id, (fd) => sftp.handle(id, newHandle({ fd })))))
  sftp.on("FSTAT", (id, handle) => call("fstat", [handleOf(handle).fd], reply(id, (s) => sftp.attrs(id, attributes(s)))))
  sftp.on("WRITE", (id, handle, offset, data) =>
    call("write", [handleOf(handle).fd, data, 0, data.length, offset], reply(id, ok(id))))
  sftp.on("READ", (id, handle, offset, length) => {
    const buffer = Buffer.allocUnsafe(length)
    call("read", [handleOf(handle).fd, buffer, 0, length, offset], reply(id, (bytes) =>
      bytes === 0 ? sftp.status(id, STATUS_CODE.EOF) : sftp.data(id, buffer.subarray(0, bytes))))
  })
  sftp.on("OPENDIR", (id, path) =>
    call("readdir", [hostPath(path)], reply(id, (names) => sftp.handle(id, newHandle({ directory: hostPath(path), names })))))
  sftp.on("READDIR", (id, handle) => {
    const directory = handleOf(handle)
    if (directory.names.length === 0) return sftp.status(id, STATUS_CODE.EOF)
    const names = directory.names.splice(0, 256)
    const entries = new Array(names.length)
    let left = names.length
    names.forEach((name, i) =>
      call("lstat", [`${directory.directory}/${name}`], (error, stat) => {
        if (left <= 0) return
        if (error) {
          left = 0
          return sftp.status(id, STATUS_CODE.FAILURE)
        }
        const longname = `-rw-r--r-- 1 ${user} ${user} ${stat.size} Jan  1 00:00 ${name}`
        entries[i] = { filename: name, longname, attrs: attributes(stat) }
        if (--left === 0) sftp.name(id, entries)
      }))
  })
  sftp.on("CLOSE", (id, handle) => {
    const key = handle.readUInt32BE(0)
    const value = handles.get(key)
    handles.delete(key)
    if (value === undefined || value.fd === undefined) return sftp.status(id, STATUS_CODE.OK)
    call("close", [value.fd], reply(id, ok(id)))
  })
}

const server = new ssh2.Server({ hostKeys: [fs.readFileSync(hostKey)] }, (client) => {
  client.on("error", () => {})
  client.on("authentication", (ctx) =>
    ctx.method === "password" && ctx.username === user && ctx.password === password ? ctx.accept() : ctx.reject(["password"]))
  client.on("ready", () =>
    client.on("session", (acceptSession) => acceptSession().on("sftp", (acceptSftp) => serveSftp(acceptSftp()))))
})
// Portcullis sets TCP_NODELAY too.
server._srv.on("connection", (socket) => socket.setNoDelay(true))
server.listen(Number(port), "127.0.0.1", () => console.log(JSON.stringify({ event: "listening", port: Number(port), mode })))
process.on("SIGTERM", () => process.exit(0))
