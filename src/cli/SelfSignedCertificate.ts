/**
 * A self-signed TLS certificate for the default FTPS listener, made in-process:
 * the key by node:crypto, the X.509 certificate by node-forge (a widely used,
 * maintained pure-JS PKI library; no OpenSSL binary is run, no polyfill is
 * installed). RSA 2048 with SHA-256, valid for localhost and 127.0.0.1 for ten
 * years: it exists so a fresh checkout serves FTPS at once; production configs
 * name a real certificate in `ftp.tls`.
 */
import { Effect } from "effect"
import forge from "node-forge"
import * as crypto from "node:crypto"

/**
 * A PEM certificate and its PEM private key.
 * @category models
 */
export interface PemPair {
  readonly cert: string
  readonly key: string
}

/**
 * Generates a new self-signed certificate for `commonName`.
 * @category constructors
 */
export const generateSelfSigned = (commonName = "localhost"): Effect.Effect<PemPair> =>
  Effect.sync(() => {
    const pair = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 })
    const keyPem = pair.privateKey.export({ type: "pkcs1", format: "pem" }).toString()
    const publicPem = pair.publicKey.export({ type: "spki", format: "pem" }).toString()
    const certificate = forge.pki.createCertificate()
    certificate.publicKey = forge.pki.publicKeyFromPem(publicPem)
    certificate.serialNumber = `01${crypto.randomBytes(15).toString("hex")}`
    certificate.validity.notBefore = new Date()
    certificate.validity.notAfter = new Date(Date.now() + 10 * 365 * 24 * 3600 * 1000)
    const name = [{ name: "commonName", value: commonName }]
    certificate.setSubject(name)
    certificate.setIssuer(name)
    certificate.setExtensions([
      { name: "basicConstraints", cA: false },
      { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
      { name: "extKeyUsage", serverAuth: true },
      { name: "subjectAltName", altNames: [{ type: 2, value: commonName }, { type: 7, ip: "127.0.0.1" }] }
    ])
    certificate.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create())
    return { cert: forge.pki.certificateToPem(certificate), key: keyPem }
  })
