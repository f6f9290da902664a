/**
 * Per-session bounds: open handles, requests in flight, and host keys of every
 * supported type.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import ssh2 from "ssh2"
import { call, connect, packet, rawChannel } from "../utils/SftpClient.js"
import { testServer } from "../utils/TestServer.js"

describe("SFTP bounds", () => {
  it.effect("at most 256 open handles per session; closing one frees a slot", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      fs.writeFileSync(path.join(server.roots["alice"]!, "f"), "x")
      const { sftp } = yield* connect(server.port, "alice", { password: "alice-password" })
      const handles: Array<Buffer> = []
      for (let i = 0; i < 256; i++) handles.push(yield* call<Buffer>((cb) => sftp.open("/f", "r", cb)))
      const refused = yield* Effect.flip(call<Buffer>((cb) => sftp.open("/f", "r", cb)))
      assert.strictEqual(refused.code, 4)
      assert.strictEqual(refused.message, "Too many open handles")
      assert.strictEqual(yield* Effect.flip(call<Buffer>((cb) => sftp.opendir("/", cb))).pipe(Effect.map((e) => e.code)), 4)
      yield* call((cb) => sftp.close(handles[0]!, cb))
      yield* call<Buffer>((cb) => sftp.open("/f", "r", cb))
    }))

  it.effect("thousands of pipelined requests are all answered, with bounded concurrency", () =>
    Effect.gen(function*() {
      const server = yield* testServer()
      const data = crypto.randomBytes(1024 * 1024)
      fs.writeFileSync(path.join(server.roots["alice"]!, "data"), data)
      const raw = yield* rawChannel(server.port, "alice", { password: "alice-password" })
      yield* raw.send(packet(1, 3))
      yield* raw.next
      yield* raw.send(packet(3, 1, "/data", 1, 0))
      const handle = (yield* raw.next).subarray(9)
      // 2,000 READs of 4 KiB sent in one burst, far more than the 64 served at once.
      const burst = Buffer.concat(Array.from({ length: 2000 }, (_, i) =>
        packet(5, 100 + i, handle, 0, ((i % 256) * 4096), 4096)))
      yield* raw.send(burst)
      const seen = new Set<number>()
      for (let i = 0; i < 2000; i++) {
        const reply = yield* raw.next
        assert.strictEqual(reply[0], 103)
        const id = reply.readUInt32BE(1)
        const offset = ((id - 100) % 256) * 4096
        assert.isTrue(reply.subarray(9).equals(data.subarray(offset, offset + 4096)), `reply ${id}`)
        seen.add(id)
      }
      assert.strictEqual(seen.size, 2000)
    }))

  it.effect("host keys of every supported type load from OpenSSH and PEM files", () =>
    Effect.gen(function*() {
      const probe = yield* testServer()
      const keys = ["ed25519", "ecdsa", "rsa"].map((type) => {
        const file = path.join(probe.base, `keygen_${type}`)
        execFileSync("ssh-keygen", ["-q", "-t", type, "-N", "", "-f", file])
        return file
      })
      const pem = path.join(probe.base, "host_rsa.pem")
      fs.writeFileSync(pem, crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs1", format: "pem" }))
      for (const [hostKeyFiles, algorithm] of [
        [[keys[0]!], "ssh-ed25519"],
        [[keys[1]!], "ecdsa-sha2-nistp256"],
        [[keys[2]!], "rsa-sha2-512"],
        [[pem], "rsa-sha2-512"]
      ] as const) {
        const server = yield* testServer({ sftp: { hostKeyFiles: [...hostKeyFiles] } })
        const negotiated = yield* Effect.callback<ssh2.NegotiatedAlgorithms, Error>((resume) => {
          const client = new ssh2.Client()
          client.on("error", (e) => resume(Effect.fail(e)))
          client.on("handshake", (n) => {
            client.end()
            resume(Effect.succeed(n))
          })
          client.connect({ host: "127.0.0.1", port: server.port, username: "alice", password: "alice-password" })
        })
        assert.strictEqual(negotiated.serverHostKey, algorithm)
      }
    }))
})
