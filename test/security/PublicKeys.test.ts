/**
 * Checklist E2, public-key "query" versus signed authentication (the
 * x/crypto CVE-2024-45337 class) against a real server: a listed key that was
 * only queried (the server answered PK_OK), then followed by a forged
 * signature, a signature made by another key, "none", or another user's
 * password, never logs anyone in as the key's user. Only a signature that
 * verifies with the listed key does.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import ssh2 from "ssh2"
import { generateSshKeyPair } from "../../src/layers/SshKeys.js"
import { call } from "../utils/SftpClient.js"
import { testServer } from "../utils/TestServer.js"

type Method = ssh2.AnyAuthMethod

/** `key` with its signing replaced: the client sends the query, then whatever `sign` makes (an Error: no signed request). */
const withSigner = (key: ssh2.ParsedKey, sign: (data: Buffer, hash?: string) => Buffer | Error): ssh2.ParsedKey =>
  Object.create(key, { sign: { value: sign } }) as ssh2.ParsedKey

const parse = (privateKey: string) => {
  const parsed = ssh2.utils.parseKey(privateKey)
  if (parsed instanceof Error) throw parsed
  return parsed
}

/** Offers `methods` in order on one connection; the logged-in client, or undefined when every one was refused. */
const authenticate = (port: number, username: string, methods: ReadonlyArray<Method>) =>
  Effect.acquireRelease(
    Effect.callback<ssh2.Client | undefined>((resume) => {
      const client = new ssh2.Client()
      let next = 0
      client.on("error", () => {})
      client.on("ready", () => resume(Effect.succeed(client)))
      client.on("close", () => resume(Effect.succeed(undefined)))
      client.connect({
        host: "127.0.0.1",
        port,
        username,
        readyTimeout: 20_000,
        authHandler: (_left, _partial, give) => {
          const method = methods[next++]
          if (method) give(method)
          else client.end()
        }
      })
    }),
    (client) => Effect.sync(() => client?.end())
  )

describe("E.publickey (checklist E2: query versus signed public-key authentication)", () => {
  it.effect("E.publickey: a listed key that was only queried (PK_OK) authorises nothing: a forged signature, another key's signature, \"none\", a wrong password, or switching to another user's password never log in as its user", () =>
    Effect.gen(function*() {
      const listed = generateSshKeyPair("ed25519")
      const other = generateSshKeyPair("ed25519")
      const server = yield* testServer({
        users: [
          { username: "keys", authorizedKeys: [listed.public] },
          { username: "alice", password: "alice-password" }
        ]
      })
      fs.writeFileSync(path.join(server.roots["keys"]!, "keys-only.txt"), "keys")
      fs.writeFileSync(path.join(server.roots["alice"]!, "alice-only.txt"), "alice")
      const key = parse(listed.private)
      const otherKey = parse(other.private)
      // The client signs only once the server answered the query with PK_OK: count those answers.
      let pkOk = 0
      const queryOnly = withSigner(key, () => {
        pkOk++
        return new Error("query only")
      })
      const forged = withSigner(key, () => crypto.randomBytes(64))
      const signedByOther = withSigner(key, (data, hash) => otherKey.sign(data, hash))

      for (const [label, methods] of [
        ["query, then stop", [{ type: "publickey", username: "keys", key: queryOnly }]],
        ["query, then a forged signature", [{ type: "publickey", username: "keys", key: queryOnly }, { type: "publickey", username: "keys", key: forged }]],
        ["a signature by another key over the listed key's blob", [{ type: "publickey", username: "keys", key: signedByOther }]],
        ["query, then none", [{ type: "publickey", username: "keys", key: queryOnly }, { type: "none", username: "keys" }]],
        ["query, then a wrong password", [{ type: "publickey", username: "keys", key: queryOnly }, { type: "password", username: "keys", password: "" }]]
      ] as ReadonlyArray<readonly [string, ReadonlyArray<Method>]>) {
        const before = pkOk
        const client = yield* authenticate(server.port, "keys", methods)
        assert.isUndefined(client, label)
        if (methods[0]!.type === "publickey" && label.startsWith("query")) assert.strictEqual(pkOk, before + 1, `${label}: the server answered PK_OK`)
      }

      // A query for "keys", then alice's own password: a user name that changes during authentication
      // ends the connection (ssh2's server), so the queried key can never be credited to that login.
      const mixed = yield* authenticate(server.port, "keys", [
        { type: "publickey", username: "keys", key: queryOnly },
        { type: "password", username: "alice", password: "alice-password" }
      ])
      assert.isUndefined(mixed)
      // Alice's password alone logs in as alice, into her root.
      const alice = yield* authenticate(server.port, "alice", [{ type: "password", username: "alice", password: "alice-password" }])
      assert.isDefined(alice)
      const sftp = yield* Effect.callback<ssh2.SFTPWrapper, Error>((resume) =>
        void alice!.sftp((error, s) => (error ? resume(Effect.fail(error)) : resume(Effect.succeed(s)))))
      const names = yield* call<Array<ssh2.FileEntry>>((cb) => sftp.readdir("/", cb))
      assert.deepStrictEqual(names.map((e) => e.filename), ["alice-only.txt"])

      // The real signature logs in.
      const signed = yield* authenticate(server.port, "keys", [{ type: "publickey", username: "keys", key }])
      assert.isDefined(signed)
    }))
})
