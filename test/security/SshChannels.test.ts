/**
 * Checklist E, SFTP caps and the SSH channel surface of a real server: READ and
 * WRITE lengths are capped as announced by limits@openssh.com; one connection
 * holds at most 10 session channels (each SFTP channel has its own handle table
 * and request budget, so without this cap one login would multiply them); and
 * every channel request other than the sftp subsystem (pty, X11, env, agent and
 * unix-socket forwarding, a second subsystem on a session, a subsystem request
 * that wants no reply) is refused without ending the connection.
 *
 * Requests that ssh2's client cannot make through its API are sent with its
 * protocol object, and their replies awaited through its channel callbacks.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import ssh2 from "ssh2"
import { call, login, packet, rawChannel } from "../utils/SftpClient.js"
import { testServer } from "../utils/TestServer.js"

/** ssh2 client internals used to send raw channel requests (lib/client.js, lib/protocol/Protocol.js, lib/utils.js). */
interface RawClient {
  readonly _protocol: {
    session(localChannel: number, window: number, packetSize: number): void
    env(channel: number, key: string, value: string, wantReply: boolean): void
    openssh_agentForward(channel: number, wantReply: boolean): void
    subsystem(channel: number, name: string, wantReply: boolean): void
  }
  readonly _chanMgr: { add(callback: (error: Error | undefined, channel: ssh2.ClientChannel) => void): number }
}
interface RawChannelState {
  readonly _callbacks: Array<(failed: unknown) => void>
  readonly outgoing: { readonly id: number }
}

/** Opens a session channel and asks nothing on it (ssh2's client always asks for something). */
const bareSession = (client: ssh2.Client) =>
  Effect.callback<ssh2.ClientChannel, Error>((resume) => {
    const raw = client as unknown as RawClient
    const local = raw._chanMgr.add((error, channel) => resume(error ? Effect.fail(error) : Effect.succeed(channel)))
    raw._protocol.session(local, 2 * 1024 * 1024, 32 * 1024)
  })

/** Sends a request on `channel` with want-reply; true when the server refused it. */
const refusedRequest = (channel: ssh2.ClientChannel, send: (id: number) => void) =>
  Effect.callback<boolean>((resume) => {
    const raw = channel as unknown as RawChannelState
    raw._callbacks.push((failed) => resume(Effect.succeed(failed !== false)))
    send(raw.outgoing.id)
  })

/** The first bytes the server sends on `channel` after `bytes`. */
const exchange = (channel: ssh2.ClientChannel, bytes: Buffer) =>
  Effect.callback<Buffer>((resume) => {
    channel.once("data", (chunk: Buffer) => resume(Effect.succeed(chunk)))
    channel.write(bytes)
  })

/** Whether an ssh2 client call with a node-style callback failed. */
const fails = (f: (cb: (error: Error | null | undefined) => void) => unknown) =>
  Effect.callback<boolean>((resume) => void f((error) => resume(Effect.succeed(error !== undefined && error !== null))))

const openSftp = (client: ssh2.Client) =>
  Effect.callback<ssh2.SFTPWrapper, Error>((resume) =>
    void client.sftp((error, sftp) => (error ? resume(Effect.fail(error)) : resume(Effect.succeed(sftp)))))

describe("E.ssh (checklist E: SFTP caps and the SSH channel surface)", () => {
  it.effect("E.caps: a READ longer than maxReadLength gets at most 261120 bytes; a WRITE longer than maxWriteLength is BAD_MESSAGE and changes nothing", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const content = crypto.randomBytes(1024 * 1024)
      const file = path.join(server.roots["alice"]!, "big.bin")
      fs.writeFileSync(file, content)
      const raw = yield* rawChannel(server.port, "alice", { password: "alice-password" })
      yield* raw.send(packet(1, 3))
      yield* raw.next
      yield* raw.send(packet(3, 1, "/big.bin", 0x00000003, 0))
      const handle = (yield* raw.next).subarray(9)
      for (const [id, length] of [[2, 4 * 1024 * 1024], [3, 0xffffffff], [4, 261121]] as const) {
        yield* raw.send(packet(5, id, handle, 0, 4096, length))
        const reply = yield* raw.next
        assert.strictEqual(reply[0], 103, `READ of ${length}: DATA`)
        const data = reply.subarray(9, 9 + reply.readUInt32BE(5))
        assert.strictEqual(data.length, 261120, `READ of ${length}`)
        assert.isTrue(data.equals(content.subarray(4096, 4096 + 261120)))
      }
      const status = (body: Buffer) => [body[0], body.readUInt32BE(1), body.readUInt32BE(5)]
      yield* raw.send(packet(6, 5, handle, 0, 0, Buffer.alloc(261121, 0x41)))
      assert.deepStrictEqual(status(yield* raw.next), [101, 5, 5], "WRITE one byte over the limit: BAD_MESSAGE")
      assert.isTrue(fs.readFileSync(file).equals(content), "nothing was written")
      yield* raw.send(packet(6, 6, handle, 0, 0, Buffer.alloc(261120, 0x42)))
      assert.deepStrictEqual(status(yield* raw.next), [101, 6, 0], "WRITE at the limit: OK")
      assert.strictEqual(fs.readFileSync(file).subarray(0, 261120).toString(), "B".repeat(261120))
    }))

  it.effect("E.channels: at most 10 session channels per connection (OpenSSH MaxSessions); closing one frees a slot; other connections are unaffected", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const client = yield* login(server.port, "alice", { password: "alice-password" })
      const channels: Array<ssh2.SFTPWrapper> = []
      for (let i = 0; i < 10; i++) channels.push(yield* openSftp(client))
      // The eleventh session is refused, whatever it is for.
      const eleventh = yield* Effect.flip(openSftp(client))
      assert.match(eleventh.message, /open failure|prohibited|resource/i)
      assert.isTrue(yield* fails((cb) => client.exec("true", (e) => cb(e))))
      // All ten work.
      for (const sftp of channels) assert.strictEqual(yield* call<string>((cb) => sftp.realpath(".", cb)), "/")
      // Closing one frees its slot.
      const closing = channels.pop()!
      yield* Effect.callback<void>((resume) => {
        closing.once("close", () => resume(Effect.void))
        closing.end()
      })
      const replacement = yield* openSftp(client)
      assert.strictEqual(yield* call<string>((cb) => replacement.realpath("/x/..", cb)), "/")
      yield* Effect.flip(openSftp(client))
      // The cap is per connection.
      const other = yield* login(server.port, "alice", { password: "alice-password" })
      const otherSftp = yield* openSftp(other)
      assert.strictEqual(yield* call<string>((cb) => otherSftp.realpath(".", cb)), "/")
    }))

  it.effect("E.channels: pty, X11, env, agent forwarding and unix-socket forwarding are refused; a second subsystem on a session, or a subsystem request without want-reply, is ignored without ending the connection", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const client = yield* login(server.port, "alice", { password: "alice-password" })
      const protocol = (client as unknown as RawClient)._protocol
      // Through ssh2's API: each opens a session channel, asks, is refused, and closes it.
      assert.isTrue(yield* fails((cb) => client.exec("true", { pty: true }, (e) => cb(e))), "pty-req")
      assert.isTrue(yield* fails((cb) => client.exec("true", { x11: true }, (e) => cb(e))), "x11-req")
      assert.isTrue(yield* fails((cb) => client.openssh_forwardOutStreamLocal("/run/docker.sock", (e) => cb(e))), "direct-streamlocal")
      assert.isTrue(yield* fails((cb) => client.openssh_forwardInStreamLocal(path.join(server.base, "fwd.sock"), (e) => cb(e))), "streamlocal-forward")
      assert.isFalse(fs.existsSync(path.join(server.base, "fwd.sock")))

      // On a session that asked for nothing yet: env and agent forwarding, refused with a reply.
      const session = yield* bareSession(client)
      const id = (session as unknown as RawChannelState).outgoing.id
      assert.isTrue(yield* refusedRequest(session, (chan) => protocol.env(chan, "LD_PRELOAD", "/tmp/evil.so", true)), "env")
      assert.isTrue(yield* refusedRequest(session, (chan) => protocol.openssh_agentForward(chan, true)), "auth-agent-req")
      // Requests that want no reply are dropped silently, an unknown subsystem included.
      protocol.subsystem(id, "netconf", false)
      protocol.env(id, "PATH", "/tmp", false)
      // The same session can still start sftp; a second subsystem request on it is ignored.
      assert.isFalse(yield* refusedRequest(session, (chan) => protocol.subsystem(chan, "sftp", true)), "sftp after refusals")
      protocol.subsystem(id, "sftp", false)
      protocol.subsystem(id, "netconf", false)
      const version = yield* exchange(session, packet(1, 3))
      assert.strictEqual(version[4], 2, "SSH_FXP_VERSION")
      const realpath = yield* exchange(session, packet(16, 7, "/a/.."))
      assert.strictEqual(realpath[4], 104, "SSH_FXP_NAME")
      // The connection still opens channels.
      const sftp = yield* openSftp(client)
      assert.strictEqual(yield* call<string>((cb) => sftp.realpath(".", cb)), "/")
    }))
})
