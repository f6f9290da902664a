import { assert, describe, it } from "@effect/vitest"
import bcrypt from "bcryptjs"
import { Effect, Exit, Layer, Ref } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import ssh2 from "ssh2"
import * as PasswordHash from "../../src/layers/PasswordHash.js"
import * as SessionsFiberSet from "../../src/layers/SessionsFiberSet.js"
import * as UserRegistryMemory from "../../src/layers/UserRegistryMemory.js"
import { PasswordHasher } from "../../src/services/PasswordHasher.js"
import { Sessions } from "../../src/services/Sessions.js"
import { type Credentials, UserRegistry, type UserSpec } from "../../src/services/UserRegistry.js"
import { tempDir } from "../utils/TempDir.js"
import { generateSshKeyPair } from "../../src/layers/SshKeys.js"

// Vectors produced by reference implementations: the argon2 CLI (Debian's
// argon2 package) and glibc crypt(3); the bcrypt one is OpenBSD's test vector.
const argon2Vector = {
  password: "correct horse",
  hash: "$argon2id$v=19$m=4096,t=2,p=2$c2FsdHNhbHRzYWx0$/GmN2HRmQrDFSXa5NjpkLY7lq//MFakv677SjLQm8yA"
}
const sha512CryptVector = {
  password: "Hello world!",
  hash: "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
}
const bcryptVector = { password: "U*U", hash: "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW" }

/** The real hasher, wrapped to count verifications (the SFTPGo way: wrap, don't mock). */
const countingHasher = (verifications: Ref.Ref<number>) =>
  Layer.effect(
    PasswordHasher,
    Effect.gen(function*() {
      const real = yield* PasswordHasher
      return PasswordHasher.of({
        ...real,
        verify: (password, hash) => Ref.update(verifications, (n) => n + 1).pipe(Effect.andThen(real.verify(password, hash)))
      })
    })
  ).pipe(Layer.provide(PasswordHash.layer))

const registry = (users: ReadonlyArray<UserSpec>, verifications?: Ref.Ref<number>) =>
  Effect.gen(function*() {
    const hasher = verifications ? countingHasher(verifications) : PasswordHash.layer
    const context = yield* Layer.build(
      UserRegistryMemory.layer(users).pipe(Layer.provideMerge(SessionsFiberSet.layer()), Layer.provide(hasher))
    )
    return context
  })

const login = (credentials: Credentials) => UserRegistry.use((r) => r.authenticate(credentials))
const password = (username: string, pw: string): Credentials => ({ _tag: "Password", username, password: pw })

const refusal = <A, E extends { readonly reason: string }>(effect: Effect.Effect<A, E, UserRegistry>) =>
  effect.pipe(Effect.flip, Effect.map((e) => e.reason))

describe("UserRegistry (memory)", () => {
  it.effect("password login returns the principal; wrong password and unknown user are the same refusal", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const context = yield* registry([{ username: "alice", root, canRead: true, canWrite: false, password: "s3cret pass" }])
      yield* Effect.gen(function*() {
        const principal = yield* login(password("alice", "s3cret pass"))
        assert.deepStrictEqual(principal, { username: "alice", root, canRead: true, canWrite: false })
        assert.strictEqual(yield* refusal(login(password("alice", "wrong"))), "InvalidCredentials")
        assert.strictEqual(yield* refusal(login(password("mallory", "s3cret pass"))), "InvalidCredentials")
      }).pipe(Effect.provide(context))
    }))

  it.effect("unknown users and key-only users still cost one password verification", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const verifications = yield* Ref.make(0)
      const key = generateSshKeyPair("ed25519")
      const context = yield* registry([
        { username: "alice", root, canRead: true, canWrite: true, password: "pw-alice" },
        { username: "keyonly", root, canRead: true, canWrite: true, authorizedKeys: [key.public] }
      ], verifications)
      yield* Effect.gen(function*() {
        yield* Effect.exit(login(password("nobody", "guess")))
        assert.strictEqual(yield* Ref.get(verifications), 1)
        yield* Effect.exit(login(password("keyonly", "guess")))
        assert.strictEqual(yield* Ref.get(verifications), 2)
        yield* Effect.exit(login(password("alice", "guess")))
        assert.strictEqual(yield* Ref.get(verifications), 3)
      }).pipe(Effect.provide(context))
    }))

  it.effect("empty and over-long supplied passwords are refused before any hashing", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const verifications = yield* Ref.make(0)
      const context = yield* registry([{ username: "alice", root, canRead: true, canWrite: true, password: "pw" }], verifications)
      yield* Effect.gen(function*() {
        assert.strictEqual(yield* refusal(login(password("alice", ""))), "InvalidCredentials")
        assert.strictEqual(yield* refusal(login(password("alice", "x".repeat(PasswordHash.maxPasswordBytes + 1)))), "InvalidCredentials")
        assert.strictEqual(yield* refusal(login(password("nobody", "x".repeat(1_000_000)))), "InvalidCredentials")
        assert.strictEqual(yield* Ref.get(verifications), 0)
      }).pipe(Effect.provide(context))
    }))

  it.effect("an empty configured password or hash is refused when the registry is built", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const empty = yield* Effect.exit(registry([{ username: "a", root, canRead: true, canWrite: true, password: "" }]))
      assert.isTrue(Exit.isFailure(empty))
      const emptyHash = yield* Effect.flip(registry([{ username: "a", root, canRead: true, canWrite: true, passwordHash: "" }]))
      assert.strictEqual(emptyHash.reason, "InvalidPasswordHash")
      const both = yield* Effect.flip(registry([{ username: "a", root, canRead: true, canWrite: true, password: "x", passwordHash: bcryptVector.hash }]))
      assert.strictEqual(both.reason, "InvalidPassword")
      const duplicate = yield* Effect.flip(registry([
        { username: "a", root, canRead: true, canWrite: true, password: "x" },
        { username: "a", root, canRead: true, canWrite: true, password: "y" }
      ]))
      assert.strictEqual(duplicate.reason, "AlreadyExists")
    }))

  it.effect("verifies argon2id, bcrypt ($2a$, $2b$, $2y$) and sha512-crypt hashes made elsewhere", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const bcrypt2b = bcrypt.hashSync("bee password", 4)
      const bcrypt2y = bcrypt2b.replace(/^\$2b\$/, "$2y$")
      const user = (username: string, passwordHash: string): UserSpec => ({ username, root, canRead: true, canWrite: true, passwordHash })
      const context = yield* registry([
        user("argon", argon2Vector.hash),
        user("sha", sha512CryptVector.hash),
        user("bsd", bcryptVector.hash),
        user("b2b", bcrypt2b),
        user("b2y", bcrypt2y)
      ])
      yield* Effect.gen(function*() {
        for (const [name, pw] of [["argon", argon2Vector.password], ["sha", sha512CryptVector.password], ["bsd", bcryptVector.password], ["b2b", "bee password"], ["b2y", "bee password"]] as const) {
          const principal = yield* login(password(name, pw))
          assert.strictEqual(principal.username, name)
          assert.strictEqual(yield* refusal(login(password(name, `${pw}!`))), "InvalidCredentials", name)
        }
      }).pipe(Effect.provide(context))
      const md5 = yield* Effect.flip(registry([user("old", "$1$salt$qJH7.N4xYta3aEG/dfqo/0")]))
      assert.strictEqual(md5.reason, "InvalidPasswordHash")
    }))

  it.effect("plaintext passwords are stored as argon2id hashes, never as given", () =>
    Effect.gen(function*() {
      const hash = yield* PasswordHash.hashPassword("plain")
      assert.match(hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/)
      assert.notInclude(hash, "plain")
      assert.isTrue(yield* PasswordHash.verifyPassword("plain", hash))
      assert.isFalse(yield* PasswordHash.verifyPassword("plain ", hash))
      const again = yield* PasswordHash.hashPassword("plain")
      assert.notStrictEqual(hash, again, "every hash has its own salt")
    }))

  it.effect("usernames that could climb a path, inject a line or grow unbounded are refused", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const context = yield* registry([])
      yield* Effect.gen(function*() {
        const add = (username: string) =>
          UserRegistry.use((r) => r.addUser({ username, root, canRead: true, canWrite: true, password: "pw" }))
        for (const bad of ["", "a/b", "..", "a..b", "a\\b", "x\u0000", "x\n", "x\r", "\u0085x", " bob", "bob ", "é".repeat(33), "\ud800"]) {
          assert.strictEqual(yield* refusal(add(bad)), "InvalidUsername", JSON.stringify(bad))
        }
        for (const good of ["alice", "alice.smith", "zoë", "a".repeat(64), "user@example.com"]) yield* add(good)
        assert.strictEqual((yield* UserRegistry.use((r) => r.list)).length, 5)
      }).pipe(Effect.provide(context))
    }))

  it.effect("public keys: only listed keys log in; keys can be added and removed at runtime", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const alicesKey = generateSshKeyPair("ed25519", "alice@laptop")
      const otherKey = generateSshKeyPair("ecdsa")
      const blob = (pub: string) => (ssh2.utils.parseKey(pub) as ReturnType<typeof ssh2.utils.parseKey> & { getPublicSSH(): Buffer }).getPublicSSH()
      const withKey = (pub: string): Credentials => ({ _tag: "PublicKey", username: "alice", algorithm: "ssh-ed25519", key: blob(pub) })
      const context = yield* registry([{ username: "alice", root, canRead: true, canWrite: true, authorizedKeys: [alicesKey.public] }])
      yield* Effect.gen(function*() {
        assert.strictEqual((yield* login(withKey(alicesKey.public))).username, "alice")
        assert.strictEqual(yield* refusal(login(withKey(otherKey.public))), "InvalidCredentials")
        // No password: a password attempt fails even with an empty-looking guess.
        assert.strictEqual(yield* refusal(login(password("alice", "anything"))), "InvalidCredentials")
        const registryOf = UserRegistry.use((r) => Effect.succeed(r))
        const r = yield* registryOf
        yield* r.addUserKey("alice", otherKey.public)
        assert.strictEqual((yield* login(withKey(otherKey.public))).username, "alice")
        assert.strictEqual((yield* Effect.flip(r.addUserKey("alice", otherKey.public))).reason, "AlreadyExists")
        yield* r.removeUserKey("alice", alicesKey.public.replace("alice@laptop", "other comment"))
        assert.strictEqual(yield* refusal(login(withKey(alicesKey.public))), "InvalidCredentials")
        assert.strictEqual((yield* Effect.flip(r.removeUserKey("alice", alicesKey.public))).reason, "KeyNotFound")
        const info = yield* r.get("alice")
        assert.strictEqual(info.authorizedKeys.length, 1)
        assert.isFalse(info.hasPassword)
        for (const bad of [`from="10.0.0.0/8" ${otherKey.public}`, "ssh-ed25519 notbase64", alicesKey.private, "hello"]) {
          assert.strictEqual((yield* Effect.flip(r.addUserKey("alice", bad))).reason, "InvalidKey", bad.slice(0, 20))
        }
      }).pipe(Effect.provide(context))
    }))

  it.effect("the root is checked at every login: missing or not a directory is refused", () =>
    Effect.gen(function*() {
      const base = yield* tempDir()
      const root = path.join(base, "home")
      const file = path.join(base, "file")
      fs.writeFileSync(file, "x")
      const context = yield* registry([
        { username: "alice", root, canRead: true, canWrite: true, password: "pw" },
        { username: "filey", root: file, canRead: true, canWrite: true, password: "pw" }
      ])
      yield* Effect.gen(function*() {
        assert.strictEqual(yield* refusal(login(password("alice", "pw"))), "RootUnavailable")
        assert.strictEqual(yield* refusal(login(password("filey", "pw"))), "RootUnavailable")
        fs.mkdirSync(root)
        assert.strictEqual((yield* login(password("alice", "pw"))).root, root)
        const relative = yield* Effect.flip(UserRegistry.use((r) => r.addUser({ username: "rel", root: "srv/rel", canRead: true, canWrite: true })))
        assert.strictEqual(relative.reason, "InvalidRoot")
      }).pipe(Effect.provide(context))
    }))

  it.effect("runtime changes apply at the next login and removal can end live sessions", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const context = yield* registry([
        { username: "alice", root, canRead: true, canWrite: true, password: "old" },
        { username: "bob", root, canRead: true, canWrite: true, password: "bob" }
      ])
      yield* Effect.gen(function*() {
        const r = yield* UserRegistry.use((r) => Effect.succeed(r))
        const sessions = yield* Sessions.use((s) => Effect.succeed(s))
        yield* r.updateUser("alice", { disabled: true })
        assert.strictEqual(yield* refusal(login(password("alice", "old"))), "InvalidCredentials", "disabled users cannot log in")
        assert.isTrue((yield* r.get("alice")).disabled)
        yield* r.updateUser("alice", { password: "new", canWrite: false, disabled: false })
        assert.strictEqual(yield* refusal(login(password("alice", "old"))), "InvalidCredentials")
        const principal = yield* login(password("alice", "new"))
        assert.isFalse(principal.canWrite)
        assert.strictEqual((yield* Effect.flip(r.updateUser("nobody", { canRead: false }))).reason, "NotFound")

        const live = (name: string) => sessions.start({ protocol: "sftp", clientIp: "127.0.0.1" }, (c) => c.authenticated(name).pipe(Effect.andThen(Effect.never)))
        yield* live("alice")
        yield* live("bob")
        yield* Effect.yieldNow.pipe(Effect.repeat({ times: 10 }))
        yield* r.removeUser("alice", { endSessions: true })
        yield* Effect.yieldNow.pipe(Effect.repeat({ times: 10 }))
        assert.deepStrictEqual((yield* sessions.list).map((s) => s.username), ["bob"])
        assert.strictEqual(yield* refusal(login(password("alice", "new"))), "InvalidCredentials")
        assert.strictEqual((yield* Effect.flip(r.removeUser("alice"))).reason, "NotFound")
        // Without endSessions, live sessions stay.
        yield* r.removeUser("bob")
        assert.strictEqual((yield* sessions.list).length, 1)
        yield* r.addUser({ username: "carol", root, canRead: true, canWrite: true, password: "c" })
        assert.strictEqual(yield* r.removeAllUsers({ endSessions: true }), 1)
        assert.deepStrictEqual(yield* r.list, [])
      }).pipe(Effect.provide(context))
    }))

  it.effect("logins running while users change see either the old or the new state, never an error", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const context = yield* registry([{ username: "alice", root, canRead: true, canWrite: true, password: "stable" }])
      yield* Effect.gen(function*() {
        const r = yield* UserRegistry.use((r) => Effect.succeed(r))
        const churn = Effect.forEach(Array.from({ length: 10 }, (_, i) => i), (i) =>
          r.addUser({ username: `u${i}`, root, canRead: true, canWrite: true, password: `p${i}` }).pipe(
            Effect.andThen(r.updateUser("alice", { canWrite: i % 2 === 0 })),
            Effect.andThen(r.removeUser(`u${i}`))
          ), { concurrency: 2, discard: true })
        const logins = Effect.forEach(Array.from({ length: 10 }), () => login(password("alice", "stable")), { concurrency: 5 })
        const [, principals] = yield* Effect.all([churn, logins], { concurrency: "unbounded" })
        assert.strictEqual(principals.length, 10)
        for (const p of principals) assert.strictEqual(p.username, "alice")
        assert.deepStrictEqual((yield* r.list).map((u) => u.username), ["alice"])
      }).pipe(Effect.provide(context))
    }))
})
