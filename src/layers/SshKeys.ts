/**
 * Generating SSH key pairs that always load.
 *
 * ssh2 1.17's key generator drops leading zero bytes of an Ed25519 public key,
 * so about one Ed25519 pair in 256 comes out malformed and its own parser then
 * refuses it. A host key like that would break a server's start (or, written to
 * ./var once, every start). Each pair is therefore parsed back, and regenerated
 * when it does not load.
 */
import ssh2 from "ssh2"

/**
 * The key types Portcullis generates.
 * @category models
 */
export type SshKeyType = "ed25519" | "ecdsa" | "rsa"

/**
 * A private key (OpenSSH format) and its public key line.
 * @category models
 */
export interface SshKeyPair {
  readonly private: string
  readonly public: string
}

const loads = (text: string): boolean => !(ssh2.utils.parseKey(text) instanceof Error)

/**
 * A new key pair of `type` that ssh2 parses back (ECDSA P-256, RSA 3072).
 * @category constructors
 */
export const generateSshKeyPair = (type: SshKeyType = "ed25519", comment?: string): SshKeyPair => {
  for (let attempt = 0; attempt < 64; attempt++) {
    const options = comment === undefined ? {} : { comment }
    const pair = type === "rsa"
      ? ssh2.utils.generateKeyPairSync("rsa", { bits: 3072, ...options })
      : type === "ecdsa"
      ? ssh2.utils.generateKeyPairSync("ecdsa", { bits: 256, ...options })
      : ssh2.utils.generateKeyPairSync("ed25519", options)
    if (loads(pair.private) && loads(pair.public)) return { private: pair.private, public: pair.public }
  }
  // 64 malformed keys in a row would take a broken generator, not bad luck.
  throw new Error(`ssh2 could not generate a valid ${type} key`)
}
