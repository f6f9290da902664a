/**
 * Password hashing and verification for the user registries.
 *
 * New hashes are argon2id in the PHC string format, computed by node:crypto
 * (Node 24 has argon2 built in and runs it on the thread pool). Existing hashes
 * from other systems are verified too: bcrypt ($2a$, $2b$, $2y$) with bcryptjs,
 * a widely used pure-JS implementation with no install script, and sha512-crypt
 * ($6$) with unixcrypt, which compares in constant time.
 *
 * Passwords longer than `maxPasswordBytes` are refused before any hashing: the
 * cost of a hash must not grow with attacker-chosen input (OpenSSH CVE-2016-6515).
 *
 * At most `argon2Concurrency` argon2id computations run at once. They share
 * libuv's thread pool with every file call of every session, and each holds a
 * thread for tens of milliseconds: unbounded, a wave of logins or of password
 * guesses would hold every thread, and every session's transfers would stall
 * behind it. A check whose login is abandoned keeps its slot until its
 * computation ends, since the thread stays busy until then.
 */
import bcrypt from "bcryptjs"
import { Effect, Layer, Semaphore } from "effect"
import * as crypto from "node:crypto"
import { verify as verifySha512Crypt } from "unixcrypt"
import { PasswordHasher } from "../services/PasswordHasher.js"

/** Longest password accepted, in UTF-8 bytes. */
export const maxPasswordBytes = 1024

// OWASP's argon2id baseline: 19 MiB, 2 passes, 1 lane.
const defaults = { memory: 19456, passes: 2, parallelism: 1, tagLength: 32, saltLength: 16 }

interface Argon2Hash {
  readonly memory: number
  readonly passes: number
  readonly parallelism: number
  readonly salt: Buffer
  readonly tag: Buffer
}

const b64 = (bytes: Buffer) => bytes.toString("base64").replace(/=+$/, "")

const phcPattern = /^\$argon2id\$v=19\$m=(\d{1,8}),t=(\d{1,4}),p=(\d{1,3})\$([A-Za-z0-9+/]{11,})\$([A-Za-z0-9+/]{16,})$/

const parseArgon2 = (hash: string): Argon2Hash | undefined => {
  const match = phcPattern.exec(hash)
  if (!match) return undefined
  const [, m, t, p, salt, tag] = match
  const memory = Number(m), passes = Number(t), parallelism = Number(p)
  // Bounds keep an operator's typo from turning every login into a multi-GiB allocation.
  if (parallelism < 1 || passes < 1 || memory < 8 * parallelism || memory > 4 * 1024 * 1024) return undefined
  return { memory, passes, parallelism, salt: Buffer.from(salt!, "base64"), tag: Buffer.from(tag!, "base64") }
}

/** The size of libuv's thread pool, by libuv's own reading of UV_THREADPOOL_SIZE (4 unless set; 1 to 1024). */
const threadPoolSize = (): number => {
  const set = process.env["UV_THREADPOOL_SIZE"]
  if (set === undefined) return 4
  const size = Number.parseInt(set, 10)
  return Number.isNaN(size) || size < 1 ? 1 : Math.min(size, 1024)
}

/**
 * How many argon2id computations may run at once: half of libuv's thread pool,
 * at least one, so the other half stays free for file calls.
 * @category constructors
 */
export const argon2Concurrency: number = Math.max(1, Math.floor(threadPoolSize() / 2))

// One for the process, like the thread pool it rations.
const argon2Slots = Semaphore.makeUnsafe(argon2Concurrency)

const argon2 = (password: string, params: Omit<Argon2Hash, "tag">, tagLength: number) =>
  Effect.uninterruptible(Effect.callback<Buffer>((resume) => {
    crypto.argon2("argon2id", {
      message: password,
      nonce: params.salt,
      memory: params.memory,
      passes: params.passes,
      parallelism: params.parallelism,
      tagLength
    }, (error, derived) => {
      // Parameters were validated before; a failure here is a bug or out of memory.
      if (error) resume(Effect.die(error))
      else resume(Effect.succeed(derived))
    })
  })).pipe(Semaphore.withPermit(argon2Slots))

const bcryptPattern = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/
const sha512CryptPattern = /^\$6\$(rounds=\d{1,9}\$)?[^$]{1,16}\$[./A-Za-z0-9]{86}$/

/**
 * Which format a stored hash is in, or undefined when it is not one we verify.
 * @category models
 */
export const hashFormat = (hash: string): "argon2id" | "bcrypt" | "sha512-crypt" | undefined =>
  parseArgon2(hash) ? "argon2id" : bcryptPattern.test(hash) ? "bcrypt" : sha512CryptPattern.test(hash) ? "sha512-crypt" : undefined

/**
 * Whether a supplied password may be checked at all: not empty, not too long.
 * @category constructors
 */
export const isAcceptablePassword = (password: string): boolean =>
  password.length > 0 && Buffer.byteLength(password) <= maxPasswordBytes

/**
 * Hashes a password with argon2id and a fresh random salt.
 * @category constructors
 */
export const hashPassword = (password: string): Effect.Effect<string> =>
  Effect.gen(function*() {
    const salt = crypto.randomBytes(defaults.saltLength)
    const tag = yield* argon2(password, { ...defaults, salt }, defaults.tagLength)
    return `$argon2id$v=19$m=${defaults.memory},t=${defaults.passes},p=${defaults.parallelism}$${b64(salt)}$${b64(tag)}`
  })

/**
 * Checks a password against a stored hash in any supported format, in constant
 * time for a given hash. An unknown format never matches.
 * @category constructors
 */
export const verifyPassword = (password: string, hash: string): Effect.Effect<boolean> =>
  Effect.gen(function*() {
    const argon = parseArgon2(hash)
    if (argon) {
      const derived = yield* argon2(password, argon, argon.tag.length)
      return crypto.timingSafeEqual(derived, argon.tag)
    }
    if (bcryptPattern.test(hash)) return yield* Effect.promise(() => bcrypt.compare(password, hash))
    if (sha512CryptPattern.test(hash)) return verifySha512Crypt(password, hash)
    return false
  })

/**
 * The implementation as a plain value, for validation outside a layer (check-config).
 * @category constructors
 */
export const hasher: PasswordHasher["Service"] = PasswordHasher.of({
  hash: hashPassword,
  verify: verifyPassword,
  isSupported: (hash) => hashFormat(hash) !== undefined
})

/**
 * The PasswordHasher service on node:crypto's argon2id, bcryptjs and unixcrypt.
 * @category layers
 */
export const layer: Layer.Layer<PasswordHasher> = Layer.succeed(PasswordHasher, hasher)
