/**
 * basic-ftp as the soak uses it: explicit FTPS (AUTH TLS, PROT P, data
 * connections resuming the control connection's TLS session, which the server
 * requires by default), uploads from memory and downloads hashed on the fly.
 */
import { Client } from "basic-ftp"
import * as crypto from "node:crypto"
import { Readable, Writable } from "node:stream"
import type { Login, Target } from "../Messages.ts"

/** Per-socket inactivity timeout of basic-ftp: generous, the machine is saturated. */
const timeoutMs = 120_000

export const connect = async (target: Target, login: Login): Promise<Client> => {
  const client = new Client(timeoutMs)
  try {
    await client.access({
      host: "127.0.0.1",
      port: target.ftpPort,
      user: login.username,
      password: login.password,
      secure: true,
      secureOptions: { ca: target.ca }
    })
    return client
  } catch (error) {
    client.close()
    throw error
  }
}

export const upload = async (client: Client, remotePath: string, chunks: ReadonlyArray<Buffer>): Promise<void> => {
  await client.uploadFrom(Readable.from(chunks), remotePath)
}

/** Downloads `remotePath`; returns how many bytes arrived and their sha256. */
export const download = async (client: Client, remotePath: string): Promise<{ bytes: number; sha256: string }> => {
  const hash = crypto.createHash("sha256")
  let bytes = 0
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      hash.update(chunk)
      bytes += chunk.length
      done()
    }
  })
  await client.downloadTo(sink, remotePath)
  return { bytes, sha256: hash.digest("hex") }
}
