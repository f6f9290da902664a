/**
 * SSH algorithm lists: what ssh2 supports, what Portcullis offers by default,
 * and the check that a pinned list only names algorithms ssh2 can run.
 *
 * The defaults leave out what OpenSSH has also retired by default: CBC ciphers,
 * 3DES, SHA-1 and MD5 MACs, SHA-1 key exchanges, and ssh-rsa (SHA-1) and DSA
 * signatures. Compression is always off (no zlib: no compression bombs).
 * Strict key exchange (the Terrapin fix, kex-strict-s-v00@openssh.com) is
 * always offered by ssh2 on the server side.
 */
import { createRequire } from "node:module"

interface Ssh2Constants {
  readonly SUPPORTED_KEX: ReadonlyArray<string>
  readonly SUPPORTED_CIPHER: ReadonlyArray<string>
  readonly SUPPORTED_MAC: ReadonlyArray<string>
  readonly SUPPORTED_SERVER_HOST_KEY: ReadonlyArray<string>
}

// ssh2 publishes these lists only from this internal module, which has no typings.
const constants = createRequire(import.meta.url)("ssh2/lib/protocol/constants.js") as Ssh2Constants

/**
 * The algorithm families that can be pinned in the config.
 * @category models
 */
export type AlgorithmKind = "kex" | "ciphers" | "macs" | "publicKeyAlgorithms"

/**
 * Everything ssh2 can negotiate, per kind.
 * @category models
 */
export const supported: Readonly<Record<AlgorithmKind, ReadonlyArray<string>>> = {
  kex: constants.SUPPORTED_KEX,
  ciphers: constants.SUPPORTED_CIPHER,
  macs: constants.SUPPORTED_MAC,
  publicKeyAlgorithms: constants.SUPPORTED_SERVER_HOST_KEY
}

/**
 * What is offered when the config leaves a list empty.
 * @category models
 */
export const defaults: Readonly<Record<AlgorithmKind, ReadonlyArray<string>>> = {
  kex: [
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256"
  ],
  ciphers: [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr"
  ],
  macs: ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512"],
  publicKeyAlgorithms: [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256"
  ]
}

/**
 * The first name in `names` that ssh2 does not support for `kind`, if any.
 * @category constructors
 */
export const unsupportedName = (kind: AlgorithmKind, names: ReadonlyArray<string>): string | undefined =>
  names.find((name) => !supported[kind].includes(name))

/**
 * The list to offer: the pinned one, or the default.
 * @category constructors
 */
export const effective = (kind: AlgorithmKind, pinned: ReadonlyArray<string>): ReadonlyArray<string> =>
  pinned.length > 0 ? pinned : defaults[kind]
