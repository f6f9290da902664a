/**
 * The Promise facade as a plain Node application uses it: listen, addresses,
 * users at runtime, event iterators, close, shutdown, listening again, and
 * rejections that keep their `_tag`.
 */
import { describe, it } from "@effect/vitest"
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import type ssh2 from "ssh2"
import { Server, type UploadCompleted } from "../../src/promise.js"
import { call, connect } from "../utils/SftpClient.js"

const session = <A>(port: number, username: string, password: string, f: (sftp: ssh2.SFTPWrapper) => Effect.Effect<A, unknown>) =>
  Effect.runPromise(Effect.scoped(connect(port, username, { password }).pipe(Effect.flatMap(({ sftp }) => f(sftp)))))

const tagOf = async (promise: Promise<unknown>) => {
  try {
    await promise
    return "resolved"
  } catch (error) {
    return (error as { _tag?: string })._tag ?? "untagged"
  }
}

const tempRoot = () => fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "portcullis-promise-")))

describe("Promise facade", () => {
  it("listens, serves, manages users at runtime, streams events, and shuts down", async () => {
    const root = tempRoot()
    const server = new Server({ sftp: { address: "127.0.0.1:0" }, users: [{ username: "alice", password: "pw-alice", root }] })
    const { sftp } = await server.listen()
    assert.isAbove(sftp!.port, 0)
    assert.deepStrictEqual(server.addresses, { sftp: sftp! })

    const uploads = server.completedUploads()[Symbol.asyncIterator]()
    const auth = server.authEvents()[Symbol.asyncIterator]()
    const firstUpload = uploads.next()
    const firstAuth = auth.next()
    await session(sftp!.port, "alice", "pw-alice", (s) => call((cb) => s.writeFile("/hello.txt", "hello", cb)))
    const upload = (await firstUpload).value as UploadCompleted
    assert.strictEqual(upload.fullPath, path.join(root, "hello.txt"))
    assert.strictEqual((await firstAuth).value?._tag, "LoginSucceeded")

    await server.addUser({ username: "bob", root, canRead: true, canWrite: false, password: "pw-bob" })
    assert.deepStrictEqual((await server.listUsers()).map((u) => u.username), ["alice", "bob"])
    assert.isFalse((await server.getUser("bob")).canWrite)
    assert.strictEqual(await session(sftp!.port, "bob", "pw-bob", (s) => call<string>((cb) => s.realpath(".", cb))), "/")
    await server.removeUser("bob")
    assert.strictEqual(await tagOf(server.getUser("bob")), "UserError")
    assert.strictEqual(await tagOf(server.addUser({ username: "../x", root, canRead: true, canWrite: true })), "UserError")

    assert.deepStrictEqual(await server.shutdown({ timeoutMs: 1000 }), { forced: 0 })
    assert.deepStrictEqual(server.addresses, {})
    assert.strictEqual(await tagOf(server.listUsers()), "NotListening")
    // The iterators end with the server.
    for (;;) if ((await uploads.next()).done) break
  })

  it("can listen again after close and after shutdown", async () => {
    const root = tempRoot()
    const server = new Server({ sftp: { address: "127.0.0.1:0" }, users: [{ username: "alice", password: "pw-alice", root }] })
    for (let round = 0; round < 2; round++) {
      const { sftp } = await server.listen()
      assert.strictEqual(await session(sftp!.port, "alice", "pw-alice", (s) => call<string>((cb) => s.realpath(".", cb))), "/")
      if (round === 0) await server.close()
      else await server.shutdown({ timeoutMs: 100 })
      const refused = await tagOf(session(sftp!.port, "alice", "pw-alice", () => Effect.void))
      assert.notStrictEqual(refused, "resolved", "nothing listens after close/shutdown")
    }
  })

  it("rejections keep their _tag: ConfigError, ListenError", async () => {
    assert.strictEqual(await tagOf(new Server({ sftp: { address: "nope" } }).listen()), "ConfigError")
    const blocker = net.createServer()
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve))
    const port = (blocker.address() as net.AddressInfo).port
    try {
      assert.strictEqual(await tagOf(new Server({ sftp: { address: `127.0.0.1:${port}` } }).listen()), "ListenError")
    } finally {
      blocker.close()
    }
  })
})
