/**
 * SSH authentication through the UserRegistry: passwords, public keys (only a
 * verified signature authorises), the per-connection attempt cap, auth events,
 * and everything but the sftp subsystem refused.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Queue, Stream } from "effect"
import ssh2 from "ssh2"
import { type AuthEvent, Events } from "../../src/services/Events.js"
import { UserRegistry } from "../../src/services/UserRegistry.js"
import { call, connect, login } from "../utils/SftpClient.js"
import { testServer } from "../utils/TestServer.js"
import { generateSshKeyPair } from "../../src/layers/SshKeys.js"

const authEvents = (context: Context.Context<Events>) =>
  Context.get(context, Events).subscribeAuth.pipe(Effect.flatMap((s) => Stream.toQueue(s, { capacity: "unbounded" })))

const describeEvent = (e: AuthEvent) => `${e._tag}:${e.username}:${e.protocol}`

/** Connects with a handler that keeps offering wrong passwords (50 at most); resolves when the server closes. */
const wrongPasswordsUntilClosed = (port: number) =>
  Effect.callback<void>((resume) => {
    let attempts = 0
    const client = new ssh2.Client()
    client.on("error", () => {})
    client.on("close", () => resume(Effect.void))
    client.connect({
      host: "127.0.0.1",
      port,
      username: "alice",
      authHandler: (_methods, _partial, next) => {
        attempts++
        if (attempts > 50) return client.end()
        next({ type: "password", username: "alice", password: `wrong-${attempts}` })
      }
    })
  })

describe("SFTP authentication", () => {
  it.effect("password login publishes LoginSucceeded and, on disconnect, Logout; failures publish LoginFailed", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const events = yield* authEvents(server.context)
      const refused = yield* Effect.flip(Effect.scoped(login(server.port, "alice", { password: "wrong" })))
      assert.match(refused.message, /authentication methods failed/)
      const nobody = yield* Effect.flip(Effect.scoped(login(server.port, "nobody", { password: "x" })))
      assert.strictEqual(nobody.message, refused.message, "unknown users and wrong passwords look the same")
      yield* Effect.scoped(connect(server.port, "alice", { password: "alice-password" }))
      const seen = [yield* Queue.take(events), yield* Queue.take(events), yield* Queue.take(events), yield* Queue.take(events)]
      assert.deepStrictEqual(seen.map(describeEvent), [
        "LoginFailed:alice:sftp",
        "LoginFailed:nobody:sftp",
        "LoginSucceeded:alice:sftp",
        "Logout:alice:sftp"
      ])
      assert.strictEqual(seen[2]!.clientIp, "127.0.0.1")
    }))

  it.effect("a connection is closed after 6 rejected attempts", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const events = yield* authEvents(server.context)
      yield* wrongPasswordsUntilClosed(server.port)
      const failures = yield* Queue.clear(events)
      assert.deepStrictEqual(failures.map(describeEvent), Array(6).fill("LoginFailed:alice:sftp"))
    }))

  it.effect("public keys: a listed key logs in, an unlisted one does not, and keys can change at runtime", () =>
    Effect.gen(function*() {
      const listed = generateSshKeyPair("ed25519")
      const other = generateSshKeyPair("ecdsa")
      const rsa = generateSshKeyPair("rsa")
      const server = yield* testServer({ users: [{ username: "keys", authorizedKeys: [listed.public, rsa.public] }] })
      yield* Effect.scoped(connect(server.port, "keys", { privateKey: listed.private }))
      // ssh2's client signs with RSA/SHA-1 ("ssh-rsa"), which the defaults refuse, as OpenSSH 8.8+ does.
      yield* Effect.flip(Effect.scoped(login(server.port, "keys", { privateKey: rsa.private })))
      yield* Effect.flip(Effect.scoped(login(server.port, "keys", { privateKey: other.private })))
      yield* Effect.flip(Effect.scoped(login(server.port, "keys", { password: "" })))
      const registry = Context.get(server.context, UserRegistry)
      yield* registry.addUserKey("keys", other.public)
      yield* Effect.scoped(connect(server.port, "keys", { privateKey: other.private }))
      yield* registry.removeUserKey("keys", listed.public)
      yield* Effect.flip(Effect.scoped(login(server.port, "keys", { privateKey: listed.private })))
    }))

  it.effect("pinned public-key algorithms decide which signatures are accepted", () =>
    Effect.gen(function*() {
      const rsa = generateSshKeyPair("rsa")
      const ed = generateSshKeyPair("ed25519")
      const users = [{ username: "keys", authorizedKeys: [rsa.public, ed.public] }]
      const edOnly = yield* testServer({ users, sftp: { publicKeyAlgorithms: ["ssh-ed25519"] } })
      yield* Effect.scoped(connect(edOnly.port, "keys", { privateKey: ed.private }))
      yield* Effect.flip(Effect.scoped(login(edOnly.port, "keys", { privateKey: rsa.private })))
      const legacy = yield* testServer({ users, sftp: { publicKeyAlgorithms: ["ssh-rsa"] } })
      yield* Effect.scoped(connect(legacy.port, "keys", { privateKey: rsa.private }))
      yield* Effect.flip(Effect.scoped(login(legacy.port, "keys", { privateKey: ed.private })))
    }))

  it.effect("removing a user with endSessions closes that user's live session", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const { client } = yield* connect(server.port, "alice", { password: "alice-password" })
      const closed = Effect.callback<void>((resume) => void client.once("close", () => resume(Effect.void)))
      yield* Context.get(server.context, UserRegistry).removeUser("alice", { endSessions: true })
      yield* closed
      yield* Effect.flip(Effect.scoped(login(server.port, "alice", { password: "alice-password" })))
    }))

  it.effect("only the sftp subsystem: exec, shell, other subsystems and port forwarding are refused", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const client = yield* login(server.port, "alice", { password: "alice-password" })
      const refused = (f: (cb: (error: Error | undefined) => void) => unknown) =>
        Effect.callback<boolean>((resume) => void f((error) => resume(Effect.succeed(error !== undefined))))
      assert.isTrue(yield* refused((cb) => client.exec("cat /etc/passwd", (e) => cb(e))))
      assert.isTrue(yield* refused((cb) => client.shell((e) => cb(e))))
      assert.isTrue(yield* refused((cb) => client.subsys("netconf", (e) => cb(e))))
      assert.isTrue(yield* refused((cb) => client.forwardOut("127.0.0.1", 1, "127.0.0.1", 22, (e) => cb(e))))
      assert.isTrue(yield* refused((cb) => client.forwardIn("127.0.0.1", 0, (e) => cb(e))))
      // The connection still serves SFTP afterwards.
      const sftp = yield* Effect.callback<ssh2.SFTPWrapper, Error>((resume) =>
        void client.sftp((e, s) => (e ? resume(Effect.fail(e)) : resume(Effect.succeed(s)))))
      assert.strictEqual(yield* call<string>((cb) => sftp.realpath(".", cb)), "/")
    }))

  it.effect("pinned ciphers: a client offering only others cannot connect; Terrapin strict kex is offered", () =>
    Effect.gen(function*() {
      const server = yield* testServer({ sftp: { ciphers: ["aes256-gcm@openssh.com"] } })
      const refused = yield* Effect.flip(Effect.scoped(Effect.callback<void, Error>((resume) => {
        const client = new ssh2.Client()
        client.on("error", (e) => resume(Effect.fail(e)))
        client.on("ready", () => resume(Effect.succeed(undefined)))
        client.connect({ host: "127.0.0.1", port: server.port, username: "alice", password: "alice-password", algorithms: { cipher: ["aes128-ctr"] } })
      })))
      assert.match(refused.message, /cipher/i)
      const negotiated = yield* Effect.callback<ssh2.NegotiatedAlgorithms, Error>((resume) => {
        const client = new ssh2.Client()
        client.on("error", (e) => resume(Effect.fail(e)))
        client.on("handshake", (n) => {
          client.end()
          resume(Effect.succeed(n))
        })
        client.on("ready", () => {})
        client.connect({ host: "127.0.0.1", port: server.port, username: "alice", password: "alice-password" })
      })
      assert.strictEqual(negotiated.cs.cipher, "aes256-gcm@openssh.com")
    }))
})
