/**
 * Parsing of OpenSSH public keys ("ssh-ed25519 AAAA… comment"), as users list
 * them in authorized_keys, with ssh2's key parser.
 *
 * authorized_keys options (`from="…"`, `command="…"`, …) are refused rather than
 * ignored: silently dropping a restriction the operator wrote would widen access.
 * Private keys are refused too, so a pasted private key is never stored.
 */
import ssh2 from "ssh2"

/**
 * A parsed public key. `blob` is the SSH wire encoding that clients present.
 * @category models
 */
export interface AuthorizedKey {
  readonly type: string
  readonly blob: Buffer
  /** "type base64 comment", the form the registry reports. */
  readonly canonical: string
}

/**
 * Parses one key line, or explains why it is not usable.
 * @category constructors
 */
export const parseAuthorizedKey = (line: string): AuthorizedKey | { readonly problem: string } => {
  const trimmed = line.trim()
  const fields = trimmed.split(/\s+/)
  if (fields.length < 2 || !/^(ssh|ecdsa|sk)-/.test(fields[0]!)) {
    return { problem: "expected \"type base64 [comment]\" without options" }
  }
  const parsed = ssh2.utils.parseKey(trimmed)
  if (parsed instanceof Error) return { problem: "not a valid OpenSSH public key" }
  if (parsed.isPrivateKey()) return { problem: "a private key, not a public key" }
  const blob = parsed.getPublicSSH()
  const comment = fields.slice(2).join(" ")
  const base = `${parsed.type} ${blob.toString("base64")}`
  return { type: parsed.type, blob, canonical: comment ? `${base} ${comment}` : base }
}
