import { assert, describe, it } from "@effect/vitest"
import bcrypt from "bcryptjs"
import { Cause, Effect, Exit, Fiber, Layer, Ref, References } from "effect"
import { SqlClient } from "effect/sql"
import * as fs from "node:fs"
import * as path from "node:path"
import { DatabaseSync } from "node:sqlite"
import ssh2 from "ssh2"
import * as PasswordHash from "../../src/layers/PasswordHash.js"
import * as SessionsFiberSet from "../../src/layers/SessionsFiberSet.js"
import * as SqliteClient from "../../src/layers/SqliteClient.js"
import * as UserRegistrySqlite from "../../src/layers/UserRegistrySqlite.js"
import { PasswordHasher } from "../../src/services/PasswordHasher.js"
import { Sessions } from "../../src/services/Sessions.js"
import { type Credentials, UserRegistry, type UserSpec } from "../../src/services/UserRegistry.js"
import { run } from "../utils/Processes.js"
import { tempDir } from "../utils/TempDir.js"
import { generateSshKeyPair } from "../../src/layers/SshKeys.js"

// The behavioural checks of test/services/UserRegistry.test.ts, run against the
// SQLite registry, then what only a file-backed store has to prove.

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

/** The real hasher, wrapped to count verifications (wrap, don't mock). */
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

/** The SQLite registry on `filename`, with its own Sessions. */
const storeLayer = (filename: string, verifications?: Ref.Ref<number>) =>
  UserRegistrySqlite.layer(filename).pipe(
    Layer.provideMerge(SessionsFiberSet.layer()),
    Layer.provide(verifications ? countingHasher(verifications) : PasswordHash.layer)
  )

/** A registry on a new database file, holding `users` (added through addUser, the way the CLI adds them). */
const registry = (users: ReadonlyArray<UserSpec>, verifications?: Ref.Ref<number>) =>
  Effect.gen(function*() {
    const dir = yield* tempDir()
    const context = yield* Layer.build(storeLayer(path.join(dir, "users.db"), verifications))
    yield* Effect.forEach(users, (user) => UserRegistry.use((r) => r.addUser(user)), { discard: true }).pipe(Effect.provide(context))
    return context
  })

const login = (credentials: Credentials) => UserRegistry.use((r) => r.authenticate(credentials))
const password = (username: string, pw: string): Credentials => ({ _tag: "Password", username, password: pw })
const registryIn = (context: Effect.Success<ReturnType<typeof registry>>) => UserRegistry.use((r) => Effect.succeed(r)).pipe(Effect.provide(context))

const refusal = <A, E extends { readonly reason: string }, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(Effect.flip, Effect.map((e) => e.reason))

const keyBlob = (pub: string) => (ssh2.utils.parseKey(pub) as ReturnType<typeof ssh2.utils.parseKey> & { getPublicSSH(): Buffer }).getPublicSSH()
const withKey = (username: string, pub: string): Credentials => ({ _tag: "PublicKey", username, algorithm: "ssh-ed25519", key: keyBlob(pub) })

/** Reads the file directly, as another tool would. */
const inspect = <A>(filename: string, f: (db: DatabaseSync) => A): A => {
  const db = new DatabaseSync(filename, { readOnly: true })
  const result = f(db)
  db.close()
  return result
}

/** Every byte SQLite keeps for `filename`: the database and, while open, its WAL. */
const bytesOnDisk = (filename: string) =>
  Buffer.concat(
    fs.readdirSync(path.dirname(filename))
      .filter((name) => name.startsWith(path.basename(filename)))
      .map((name) => fs.readFileSync(path.join(path.dirname(filename), name)))
  )

describe("UserRegistry (SQLite): the shared behaviour", () => {
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

  it.effect("unknown, key-only and disabled users still cost one password verification", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const verifications = yield* Ref.make(0)
      const key = generateSshKeyPair("ed25519")
      const context = yield* registry([
        { username: "alice", root, canRead: true, canWrite: true, password: "pw-alice" },
        { username: "keyonly", root, canRead: true, canWrite: true, authorizedKeys: [key.public] },
        { username: "off", root, canRead: true, canWrite: true, password: "pw-off", disabled: true }
      ], verifications)
      yield* Effect.gen(function*() {
        yield* Effect.exit(login(password("nobody", "guess")))
        assert.strictEqual(yield* Ref.get(verifications), 1)
        yield* Effect.exit(login(password("keyonly", "guess")))
        assert.strictEqual(yield* Ref.get(verifications), 2)
        yield* Effect.exit(login(password("alice", "guess")))
        assert.strictEqual(yield* Ref.get(verifications), 3)
        assert.strictEqual(yield* refusal(login(password("off", "pw-off"))), "InvalidCredentials")
        assert.strictEqual(yield* Ref.get(verifications), 4)
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

  it.effect("an empty password or hash, both at once, and a duplicate name are refused when adding", () =>
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
        const good = ["alice", "alice.smith", "zoë", "a".repeat(64), "user@example.com"]
        for (const name of good) yield* add(name)
        assert.deepStrictEqual((yield* UserRegistry.use((r) => r.list)).map((u) => u.username), good, "listed in the order added")
        // Names are compared exactly, as in memory: "Alice" is another user.
        yield* add("Alice")
        assert.strictEqual((yield* UserRegistry.use((r) => r.list)).length, 6)
      }).pipe(Effect.provide(context))
    }))

  it.effect("public keys: only listed keys log in; keys can be added and removed at runtime", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const alicesKey = generateSshKeyPair("ed25519", "alice@laptop")
      const otherKey = generateSshKeyPair("ecdsa")
      const context = yield* registry([{ username: "alice", root, canRead: true, canWrite: true, authorizedKeys: [alicesKey.public] }])
      const r = yield* registryIn(context)
      yield* Effect.gen(function*() {
        assert.strictEqual((yield* login(withKey("alice", alicesKey.public))).username, "alice")
        assert.strictEqual(yield* refusal(login(withKey("alice", otherKey.public))), "InvalidCredentials")
        assert.strictEqual(yield* refusal(login(password("alice", "anything"))), "InvalidCredentials")
        yield* r.addUserKey("alice", otherKey.public)
        assert.strictEqual((yield* login(withKey("alice", otherKey.public))).username, "alice")
        assert.strictEqual((yield* Effect.flip(r.addUserKey("alice", otherKey.public))).reason, "AlreadyExists")
        assert.strictEqual((yield* Effect.flip(r.addUserKey("nobody", otherKey.public))).reason, "NotFound")
        yield* r.removeUserKey("alice", alicesKey.public.replace("alice@laptop", "other comment"))
        assert.strictEqual(yield* refusal(login(withKey("alice", alicesKey.public))), "InvalidCredentials")
        assert.strictEqual((yield* Effect.flip(r.removeUserKey("alice", alicesKey.public))).reason, "KeyNotFound")
        assert.strictEqual((yield* Effect.flip(r.removeUserKey("nobody", alicesKey.public))).reason, "NotFound")
        const info = yield* r.get("alice")
        assert.strictEqual(info.authorizedKeys.length, 1)
        assert.isFalse(info.hasPassword)
        for (const bad of [`from="10.0.0.0/8" ${otherKey.public}`, "ssh-ed25519 notbase64", alicesKey.private, "hello"]) {
          assert.strictEqual((yield* Effect.flip(r.addUserKey("alice", bad))).reason, "InvalidKey", bad.slice(0, 20))
        }
        // Replacing the list keeps its order; a key listed twice is kept once.
        yield* r.updateUser("alice", { authorizedKeys: [otherKey.public, alicesKey.public, otherKey.public] })
        assert.deepStrictEqual((yield* r.get("alice")).authorizedKeys.map((k) => k.split(" ")[0]), ["ecdsa-sha2-nistp256", "ssh-ed25519"])
        assert.strictEqual((yield* login(withKey("alice", alicesKey.public))).username, "alice")
        // A user removed and added again under the same name does not get the old keys back.
        yield* r.removeUser("alice")
        yield* r.addUser({ username: "alice", root, canRead: true, canWrite: true, password: "pw" })
        assert.deepStrictEqual((yield* r.get("alice")).authorizedKeys, [])
        assert.strictEqual(yield* refusal(login(withKey("alice", alicesKey.public))), "InvalidCredentials")
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
        const relativeUpdate = yield* Effect.flip(UserRegistry.use((r) => r.updateUser("alice", { root: "srv/rel" })))
        assert.strictEqual(relativeUpdate.reason, "InvalidRoot")
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
        yield* r.updateUser("alice", { password: null })
        assert.isFalse((yield* r.get("alice")).hasPassword)
        assert.strictEqual(yield* refusal(login(password("alice", "new"))), "InvalidCredentials", "a removed password no longer works")
        yield* r.updateUser("alice", { password: "new" })

        const live = (name: string) => sessions.start({ protocol: "sftp", clientIp: "127.0.0.1" }, (c) => c.authenticated(name).pipe(Effect.andThen(Effect.never)))
        yield* live("alice")
        yield* live("bob")
        yield* Effect.yieldNow.pipe(Effect.repeat({ times: 10 }))
        yield* r.removeUser("alice", { endSessions: true })
        yield* Effect.yieldNow.pipe(Effect.repeat({ times: 10 }))
        assert.deepStrictEqual((yield* sessions.list).map((s) => s.username), ["bob"])
        assert.strictEqual(yield* refusal(login(password("alice", "new"))), "InvalidCredentials")
        assert.strictEqual((yield* Effect.flip(r.removeUser("alice"))).reason, "NotFound")
        assert.strictEqual((yield* Effect.flip(r.get("alice"))).reason, "NotFound")
        // Without endSessions, live sessions stay.
        yield* r.removeUser("bob")
        assert.strictEqual((yield* sessions.list).length, 1)
        yield* r.addUser({ username: "carol", root, canRead: true, canWrite: true, password: "c" })
        assert.strictEqual(yield* r.removeAllUsers({ endSessions: true }), 1)
        assert.deepStrictEqual(yield* r.list, [])
        yield* Effect.yieldNow.pipe(Effect.repeat({ times: 10 }))
        assert.strictEqual((yield* sessions.list).length, 1, "bob's session belonged to no removed user")
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

describe("UserRegistry (SQLite): the file", () => {
  it.effect("users, passwords and keys survive closing and reopening the database", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const file = path.join(yield* tempDir(), "users.db")
      const key = generateSshKeyPair("ed25519", "bob@host")
      yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(storeLayer(file))
        const r = yield* registryIn(context)
        yield* r.addUser({ username: "alice", root, canRead: true, canWrite: false, password: "kept across restarts" })
        yield* r.addUser({ username: "bob", root, canRead: false, canWrite: true, authorizedKeys: [key.public], disabled: true })
      }))
      yield* Effect.scoped(Effect.gen(function*() {
        const context = yield* Layer.build(storeLayer(file))
        const r = yield* registryIn(context)
        assert.deepStrictEqual(yield* r.list, [
          { username: "alice", root, canRead: true, canWrite: false, hasPassword: true, authorizedKeys: [], disabled: false },
          { username: "bob", root, canRead: false, canWrite: true, hasPassword: false, authorizedKeys: [key.public.trim()], disabled: true }
        ])
        yield* Effect.gen(function*() {
          assert.deepStrictEqual(yield* login(password("alice", "kept across restarts")), { username: "alice", root, canRead: true, canWrite: false })
          assert.strictEqual(yield* refusal(login(withKey("bob", key.public))), "InvalidCredentials", "still disabled")
          yield* r.updateUser("bob", { disabled: false })
          assert.strictEqual((yield* login(withKey("bob", key.public))).username, "bob")
        }).pipe(Effect.provide(context))
      }))
    }))

  it.effect("migrations run once: reopening, and opening twice at once, neither fails nor duplicates", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const file = path.join(yield* tempDir(), "users.db")
      const [first, second] = yield* Effect.all([Layer.build(storeLayer(file)), Layer.build(storeLayer(file))], { concurrency: "unbounded" })
      yield* UserRegistry.use((r) => r.addUser({ username: "alice", root, canRead: true, canWrite: true, password: "pw" })).pipe(Effect.provide(first))
      assert.strictEqual((yield* UserRegistry.use((r) => r.list).pipe(Effect.provide(second))).length, 1)
      for (let i = 0; i < 3; i++) {
        yield* Effect.scoped(Layer.build(storeLayer(file)))
      }
      const { migrations, users, tables } = inspect(file, (db) => ({
        migrations: db.prepare("SELECT migration_id, name FROM portcullis_migrations").all(),
        users: db.prepare("SELECT COUNT(*) AS n FROM users").get(),
        tables: db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").all().map((t) => t["name"])
      }))
      assert.deepStrictEqual(migrations.map((m) => ({ ...m })), [{ migration_id: 1, name: "users" }])
      assert.deepStrictEqual({ ...users }, { n: 1 })
      assert.deepStrictEqual(tables, ["portcullis_migrations", "user_keys", "users"])
    }))

  it.effect("the database file is created with mode 0600, in WAL mode", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const file = path.join(yield* tempDir(), "users.db")
      const context = yield* Layer.build(storeLayer(file))
      yield* UserRegistry.use((r) => r.addUser({ username: "alice", root, canRead: true, canWrite: true, password: "pw" })).pipe(Effect.provide(context))
      assert.strictEqual(fs.statSync(file).mode & 0o777, 0o600)
      // SQLite gives its side files the database's mode.
      for (const side of [`${file}-wal`, `${file}-shm`]) {
        assert.isTrue(fs.existsSync(side), side)
        assert.strictEqual(fs.statSync(side).mode & 0o777, 0o600, side)
      }
      assert.strictEqual(inspect(file, (db) => db.prepare("PRAGMA journal_mode").get()?.["journal_mode"]), "wal")
    }))

  it.effect("only password hashes reach the disk, never a password", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const file = path.join(yield* tempDir(), "users.db")
      const first = "first-Plaintext-Secret-4711"
      const second = "second-Plaintext-Secret-0815"
      yield* Effect.scoped(Effect.gen(function*() {
        const r = yield* registryIn(yield* Layer.build(storeLayer(file)))
        yield* r.addUser({ username: "alice", root, canRead: true, canWrite: true, password: first })
        yield* r.updateUser("alice", { password: second })
        // While open, recent writes sit in the WAL: check it too.
        const open = bytesOnDisk(file)
        assert.isFalse(open.includes(first) || open.includes(second))
      }))
      const closed = bytesOnDisk(file)
      assert.isFalse(closed.includes(first) || closed.includes(second))
      const stored = inspect(file, (db) => db.prepare("SELECT password_hash FROM users WHERE username = 'alice'").get()?.["password_hash"])
      assert.isString(stored)
      assert.match(String(stored), /^\$argon2id\$v=19\$/)
      assert.isTrue(closed.includes(String(stored)), "the hash itself is what is stored")
      assert.isTrue(yield* PasswordHash.verifyPassword(second, String(stored)))
    }))

  it.effect("two registries on one file (server and CLI): a change through one applies at the other's next login", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const file = path.join(yield* tempDir(), "users.db")
      const server = yield* Layer.build(storeLayer(file))
      const cli = yield* registryIn(yield* Layer.build(storeLayer(file)))
      const key = generateSshKeyPair("ed25519")
      yield* Effect.gen(function*() {
        assert.strictEqual(yield* refusal(login(password("alice", "pw1"))), "InvalidCredentials")
        yield* cli.addUser({ username: "alice", root, canRead: true, canWrite: true, password: "pw1" })
        assert.strictEqual((yield* login(password("alice", "pw1"))).username, "alice")
        yield* cli.updateUser("alice", { disabled: true })
        assert.strictEqual(yield* refusal(login(password("alice", "pw1"))), "InvalidCredentials")
        assert.isTrue((yield* UserRegistry.use((r) => r.get("alice"))).disabled)
        yield* cli.updateUser("alice", { disabled: false, password: "pw2", canWrite: false })
        assert.strictEqual(yield* refusal(login(password("alice", "pw1"))), "InvalidCredentials")
        assert.isFalse((yield* login(password("alice", "pw2"))).canWrite)
        yield* cli.addUserKey("alice", key.public)
        assert.strictEqual((yield* login(withKey("alice", key.public))).username, "alice")
        yield* cli.removeUserKey("alice", key.public)
        assert.strictEqual(yield* refusal(login(withKey("alice", key.public))), "InvalidCredentials")
        yield* cli.removeUser("alice")
        assert.strictEqual(yield* refusal(login(password("alice", "pw2"))), "InvalidCredentials")
        assert.strictEqual((yield* Effect.flip(UserRegistry.use((r) => r.get("alice")))).reason, "NotFound")
      }).pipe(Effect.provide(server))
    }))

  it.effect("two registries adding different users at the same time: every user is there", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const file = path.join(yield* tempDir(), "users.db")
      const [a, b] = yield* Effect.all([Layer.build(storeLayer(file)), Layer.build(storeLayer(file))], { concurrency: "unbounded" })
      const [ra, rb] = [yield* registryIn(a), yield* registryIn(b)]
      const names = (prefix: string) => Array.from({ length: 5 }, (_, i) => `${prefix}${i}`)
      const addAll = (r: typeof ra, prefix: string) =>
        Effect.forEach(names(prefix), (username) => r.addUser({ username, root, canRead: true, canWrite: true, password: username }), {
          concurrency: "unbounded",
          discard: true
        })
      yield* Effect.all([addAll(ra, "a"), addAll(rb, "b")], { concurrency: "unbounded" })
      const expected = [...names("a"), ...names("b")].sort()
      assert.deepStrictEqual((yield* ra.list).map((u) => u.username).sort(), expected)
      assert.deepStrictEqual((yield* rb.list).map((u) => u.username).sort(), expected)
      // The same name from both at once: exactly one wins.
      const both = yield* Effect.all([ra, rb].map((r) => Effect.result(r.addUser({ username: "dup", root, canRead: true, canWrite: true }))), {
        concurrency: "unbounded"
      })
      assert.strictEqual(both.filter((r) => r._tag === "Success").length, 1)
    }))

  it.effect("two registries in one process writing at once never wait on each other's lock, even when fibers yield often", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const file = path.join(yield* tempDir(), "users.db")
      const [a, b] = yield* Effect.all([Layer.build(storeLayer(file)), Layer.build(storeLayer(file))], { concurrency: "unbounded" })
      const [ra, rb] = [yield* registryIn(a), yield* registryIn(b)]
      yield* ra.addUser({ username: "x", root, canRead: true, canWrite: true })
      const churn = (r: typeof ra) =>
        Effect.forEach(Array.from({ length: 50 }, (_, i) => i), (i) => r.updateUser("x", { canWrite: i % 2 === 0 }), { concurrency: 5, discard: true })
      // A tiny yield budget invites a switch to the other registry in the middle of a
      // transaction; if one happened, that registry would spin in SQLite's busy
      // handler for 5 s with the event loop blocked, and fail with SQLITE_BUSY.
      const exit = yield* Effect.exit(
        Effect.all([churn(ra), churn(rb)], { concurrency: "unbounded" }).pipe(Effect.provideService(References.MaxOpsBeforeYield, 4))
      )
      assert.isTrue(Exit.isSuccess(exit))
      assert.isTrue((yield* rb.get("x")).canRead)
    }))

  it.live("another process holding the write lock (the CLI) delays a change but does not fail it, and its user logs in", () =>
    Effect.gen(function*() {
      const root = yield* tempDir()
      const dir = yield* tempDir()
      const file = path.join(dir, "users.db")
      const locked = path.join(dir, "locked")
      const r = yield* registryIn(yield* Layer.build(storeLayer(file)))
      // Another process takes the write lock, signals, holds it for a while, adds a user and commits.
      const script = `
        const { DatabaseSync } = require("node:sqlite")
        const db = new DatabaseSync(process.argv[1])
        db.exec("PRAGMA busy_timeout = 5000")
        db.exec("BEGIN IMMEDIATE")
        require("node:fs").writeFileSync(process.argv[2], "")
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 700)
        db.prepare("INSERT INTO users (username, root, can_read, can_write, password_hash, disabled, created_at, updated_at) VALUES (?, ?, 1, 1, ?, 0, 'now', 'now')")
          .run("fromcli", process.argv[3], process.argv[4])
        db.exec("COMMIT")
        db.close()`
      const child = yield* Effect.forkChild(run(process.execPath, ["-e", script, file, locked, root, argon2Vector.hash], { timeoutMs: 20_000 }))
      // Wait for the child's signal file: an fs.watch event, not a polling loop.
      yield* Effect.callback<void>((resume) => {
        const watcher = fs.watch(path.dirname(locked), () => {
          if (!fs.existsSync(locked)) return
          watcher.close()
          resume(Effect.void)
        })
        if (fs.existsSync(locked)) {
          watcher.close()
          resume(Effect.void)
        }
      })
      yield* r.addUser({ username: "fromserver", root, canRead: true, canWrite: true, password: "pw" })
      const result = yield* Fiber.join(child)
      assert.strictEqual(result.code, 0, result.stderr)
      assert.deepStrictEqual((yield* r.list).map((u) => u.username), ["fromcli", "fromserver"])
      assert.strictEqual((yield* r.authenticate(password("fromcli", argon2Vector.password))).username, "fromcli")
    }))
})

describe("UserRegistry (SQLite): unusable files", () => {
  const buildFailure = (file: string) => Effect.flip(Effect.scoped(Layer.build(storeLayer(file))))

  it.effect("a file that is not a database fails the layer with UserStoreError, and is left as it was", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const file = path.join(dir, "users.db")
      const garbage = Buffer.alloc(8192, "not a database, just bytes ")
      fs.writeFileSync(file, garbage)
      const error = yield* buildFailure(file)
      assert.strictEqual(error._tag, "UserStoreError")
      assert.strictEqual(error.reason, "OpenFailed")
      assert.include(error.message, "file is not a database")
      assert.notInclude(error.message, dir)
      assert.isTrue(fs.readFileSync(file).equals(garbage))
    }))

  it.effect("a missing directory fails with UserStoreError naming the errno, not the path", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir()
      const error = yield* buildFailure(path.join(dir, "missing", "users.db"))
      assert.strictEqual(error.reason, "OpenFailed")
      assert.include(error.message, "ENOENT")
      assert.notInclude(error.message, dir)
    }))

  it.effect("another application's database with a users table fails the migration", () =>
    Effect.gen(function*() {
      const file = path.join(yield* tempDir(), "users.db")
      const db = new DatabaseSync(file)
      db.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
      db.close()
      const error = yield* buildFailure(file)
      assert.strictEqual(error.reason, "MigrationFailed")
      assert.include(error.message, "table users already exists")
      assert.strictEqual(inspect(file, (db) => db.prepare("SELECT COUNT(*) AS n FROM portcullis_migrations").get()?.["n"]), 0, "rolled back")
    }))

  it.effect("a database from a newer version is refused rather than used", () =>
    Effect.gen(function*() {
      const file = path.join(yield* tempDir(), "users.db")
      yield* Effect.scoped(Layer.build(storeLayer(file)))
      const db = new DatabaseSync(file)
      db.exec("INSERT INTO portcullis_migrations (migration_id, name) VALUES (2, 'future')")
      db.close()
      assert.strictEqual((yield* buildFailure(file)).reason, "SchemaTooNew")
    }))

  it.effect("a query that fails while serving is a defect carrying UserStoreError", () =>
    Effect.gen(function*() {
      const file = path.join(yield* tempDir(), "users.db")
      const context = yield* Layer.build(storeLayer(file))
      const db = new DatabaseSync(file)
      db.exec("DROP TABLE user_keys; DROP TABLE users")
      db.close()
      const exit = yield* Effect.exit(UserRegistry.use((r) => r.list).pipe(Effect.provide(context)))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const defect = Cause.squash(exit.cause)
        assert.instanceOf(defect, UserRegistrySqlite.UserStoreError)
        assert.strictEqual((defect as UserRegistrySqlite.UserStoreError).reason, "QueryFailed")
        assert.include((defect as UserRegistrySqlite.UserStoreError).message, "no such table")
      }
    }))
})

describe("SqliteClient", () => {
  it.effect("runs statements, values and raw results, and rolls a failed transaction back", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, data BLOB)`
      yield* sql`INSERT INTO t ${sql.insert({ id: 1, name: "one", data: Buffer.from([1, 2]) })}`
      assert.deepStrictEqual((yield* sql<{ readonly name: string }>`SELECT name FROM t`).map((r) => r.name), ["one"])
      assert.deepStrictEqual(yield* sql`SELECT id, name FROM t`.values, [[1, "one"]])
      assert.deepStrictEqual((yield* sql`SELECT data FROM t`)[0]?.["data"], new Uint8Array([1, 2]))
      const raw = yield* sql`UPDATE t SET name = ${"uno"} WHERE id = ${1}`.raw
      assert.strictEqual((raw as { readonly changes: number }).changes, 1)
      const duplicate = yield* Effect.flip(sql`INSERT INTO t (id, name) VALUES (2, 'uno')`)
      assert.strictEqual(duplicate.reason._tag, "UniqueViolation")
      const failed = yield* Effect.flip(sql.withTransaction(
        sql`INSERT INTO t (id, name) VALUES (3, 'three')`.pipe(Effect.andThen(Effect.fail("abort" as const)))
      ))
      assert.strictEqual(failed, "abort")
      assert.deepStrictEqual((yield* sql<{ readonly n: number }>`SELECT COUNT(*) AS n FROM t`)[0]?.n, 1)
      const syntax = yield* Effect.flip(sql`SELEKT 1`)
      assert.strictEqual(syntax._tag, "SqlError")
    }).pipe(Effect.provide(SqliteClient.layer({ filename: ":memory:" }))))
})
