/**
 * The addon's `receive` (an upload written by a thread of its own) on real TCP
 * connections and real files: every byte at its offset, progress, the peer's
 * end, a reset, cancel, a file error, bad arguments, and its duplicated fds
 * gone before the final callback. The socket's fd comes from
 * `unreadDescriptor`, as in the FTP server.
 */
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { loadJailBinding } from "../../native/load.js"
import { unreadDescriptor } from "../../src/protocols/common/SocketDescriptor.js"

const jail = loadJailBinding()

const openFds = (): number => fs.readdirSync("/proc/self/fd").length

interface Final {
  readonly bytes: number
  readonly code: string | undefined
  readonly syscall: string | undefined
}

interface Started {
  readonly progress: Array<number>
  readonly final: Promise<Final>
  readonly cancel: () => void
}

const start = (socketFd: number, fileFd: number, offset: number): Started => {
  const progress: Array<number> = []
  let cancel: () => void = () => undefined
  const final = new Promise<Final>((resolve) => {
    cancel = jail.receive(socketFd, fileFd, offset, (bytes, done, code, syscall) => {
      if (done) resolve({ bytes, code, syscall })
      else progress.push(bytes)
    })
  })
  return { progress, final, cancel }
}

/** A connected pair on loopback; the server side is paused on connect, as FTP data connections are. */
const connect = async (): Promise<{ readonly client: net.Socket; readonly server: net.Socket }> => {
  const listener = net.createServer({ pauseOnConnect: true, allowHalfOpen: true })
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve))
  const address = listener.address() as net.AddressInfo
  const accepted = new Promise<net.Socket>((resolve) => listener.once("connection", resolve))
  const client = net.connect({ port: address.port, host: "127.0.0.1" })
  const server = await accepted
  await new Promise<void>((resolve) => (client.readyState === "open" ? resolve() : client.once("connect", () => resolve())))
  listener.close()
  return { client, server }
}

const closed = (socket: net.Socket): Promise<void> =>
  socket.destroyed ? Promise.resolve() : new Promise((resolve) => socket.once("close", () => resolve()))

describe("native receive", () => {
  let dir = ""
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-receive-"))
  })
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }))

  it("writes every byte the peer sends at the offset, reports progress, and leaves Node's socket usable", async () => {
    const { client, server } = await connect()
    const fd = unreadDescriptor(server)
    expect(fd).toBeTypeOf("number")
    const file = path.join(dir, "whole.bin")
    fs.writeFileSync(file, "HEAD")
    const fileFd = fs.openSync(file, "r+")
    const before = openFds()
    const data = crypto.randomBytes(10 * 1024 * 1024 + 123)
    const receiving = start(fd!, fileFd, 4)
    // Sent in uneven pieces, with the end (FIN) right behind the last one.
    for (let at = 0; at < data.length; at += 700_001) client.write(data.subarray(at, at + 700_001))
    client.end()
    const final = await receiving.final
    expect(final).toEqual({ bytes: data.length, code: undefined, syscall: undefined })
    expect(openFds()).toBe(before)
    fs.closeSync(fileFd)
    expect(fs.readFileSync(file).equals(Buffer.concat([Buffer.from("HEAD"), data]))).toBe(true)
    expect(receiving.progress.length).toBeGreaterThan(0)
    expect(receiving.progress).toEqual([...receiving.progress].sort((a, b) => a - b))
    expect(receiving.progress.at(-1)!).toBeLessThanOrEqual(data.length)
    // Node never read the stream; its own read now meets the peer's end, and both sides close.
    server.resume()
    server.end()
    await Promise.all([closed(server), closed(client)])
  })

  it("writes at the end in append mode, whatever the offset", async () => {
    const { client, server } = await connect()
    const file = path.join(dir, "append.bin")
    fs.writeFileSync(file, "0123456789")
    const fileFd = fs.openSync(file, "a")
    const receiving = start(unreadDescriptor(server)!, fileFd, 0)
    client.end("tail")
    expect(await receiving.final).toEqual({ bytes: 4, code: undefined, syscall: undefined })
    fs.closeSync(fileFd)
    expect(fs.readFileSync(file, "utf8")).toBe("0123456789tail")
    server.destroy()
  })

  it("reports a reset as a socket error, with what was written before it", async () => {
    const { client, server } = await connect()
    const file = path.join(dir, "reset.bin")
    const fileFd = fs.openSync(file, "w")
    const before = openFds()
    const data = crypto.randomBytes(256 * 1024)
    const receiving = start(unreadDescriptor(server)!, fileFd, 0)
    client.write(data)
    // The thread reports progress when the socket runs dry: then every byte is on disk.
    while (receiving.progress.at(-1) !== data.length) await new Promise((resolve) => setImmediate(resolve))
    client.resetAndDestroy()
    expect(await receiving.final).toEqual({ bytes: data.length, code: "ECONNRESET", syscall: "recv" })
    await closed(client)
    // The client's own fd is gone too.
    expect(openFds()).toBe(before - 1)
    fs.closeSync(fileFd)
    expect(fs.readFileSync(file).equals(data)).toBe(true)
    server.destroy()
  })

  it("stops with ECANCELED when cancelled while waiting for data, and leaves the connection to Node", async () => {
    const { client, server } = await connect()
    const fileFd = fs.openSync(path.join(dir, "cancel.bin"), "w")
    const before = openFds()
    const receiving = start(unreadDescriptor(server)!, fileFd, 0)
    receiving.cancel()
    receiving.cancel()
    expect(await receiving.final).toEqual({ bytes: 0, code: "ECANCELED", syscall: "recv" })
    expect(openFds()).toBe(before)
    fs.closeSync(fileFd)
    // The connection is still Node's: it reads what the peer sends next.
    const received = new Promise<string>((resolve) => server.once("data", (chunk: Buffer) => resolve(chunk.toString())))
    server.resume()
    client.write("after")
    expect(await received).toBe("after")
    client.destroy()
    server.destroy()
  })

  it("stops at a file error (ENOSPC from /dev/full) and names pwrite", async () => {
    const { client, server } = await connect()
    const fileFd = fs.openSync("/dev/full", "w")
    const receiving = start(unreadDescriptor(server)!, fileFd, 0)
    client.write(Buffer.alloc(64 * 1024))
    expect(await receiving.final).toEqual({ bytes: 0, code: "ENOSPC", syscall: "pwrite" })
    fs.closeSync(fileFd)
    client.destroy()
    server.destroy()
  })

  it("refuses an fd that is not a socket through the callback", async () => {
    const fileFd = fs.openSync(path.join(dir, "notsock.bin"), "w")
    const receiving = start(fileFd, fileFd, 0)
    expect(await receiving.final).toEqual({ bytes: 0, code: "ENOTSOCK", syscall: "fstat" })
    fs.closeSync(fileFd)
  })

  it("throws a TypeError on invalid arguments", () => {
    const callback = () => undefined
    expect(() => jail.receive(-1, 0, 0, callback)).toThrow(TypeError)
    expect(() => jail.receive(0, 1.5, 0, callback)).toThrow(TypeError)
    expect(() => jail.receive(0, 1, -1, callback)).toThrow(TypeError)
    expect(() => jail.receive(0, 1, 2 ** 53, callback)).toThrow(TypeError)
    expect(() => Reflect.apply(jail.receive, jail, [0, 1, 0])).toThrow(TypeError)
  })
})

describe("unreadDescriptor", () => {
  it("gives no fd for a socket Node reads, or one with buffered bytes", async () => {
    const { client, server } = await connect()
    expect(unreadDescriptor(server)).toBeTypeOf("number")
    const arrived = new Promise<void>((resolve) => server.once("data", () => resolve()))
    server.resume()
    client.write("x")
    await arrived
    expect(unreadDescriptor(server)).toBeUndefined()
    client.destroy()
    server.destroy()
    await closed(server)
    expect(unreadDescriptor(server)).toBeUndefined()
  })
})
