/**
 * ssh2's SFTP client as the soak uses it: connect with a password and open the
 * sftp subsystem, timing the handshake from TCP connect to the open subsystem,
 * and Promise forms of the few requests the clients make.
 */
import ssh2 from "ssh2"
import type { Login } from "../Messages.ts"

export interface SftpSession {
  readonly client: ssh2.Client
  readonly sftp: ssh2.SFTPWrapper
  /** Milliseconds from the TCP connection being established to the sftp subsystem being open. */
  readonly handshakeMs: number
}

/** Generous: under full load a login waits for argon2 on a busy thread pool. */
const readyTimeoutMs = 120_000

export interface ConnectOptions {
  /** Pins the cipher (transfers use AES-GCM, which the CPU accelerates); the default list otherwise. */
  readonly cipher?: ssh2.CipherAlgorithm
  /** Source address (a 127.0.0.x): the server caps unauthenticated connections per client IP. */
  readonly localAddress?: string
}

/** Connects and opens the sftp subsystem. */
export const connect = (port: number, login: Login, options: ConnectOptions = {}): Promise<SftpSession> =>
  new Promise((resolve, reject) => {
    const client = new ssh2.Client()
    let connectedAt = 0
    let settled = false
    const fail = (error: Error) => {
      if (settled) return
      settled = true
      client.end()
      reject(error)
    }
    client.on("connect", () => void (connectedAt = performance.now()))
    client.on("error", fail)
    client.on("close", () => fail(new Error("connection closed during the handshake")))
    client.on("ready", () =>
      client.sftp((error, sftp) => {
        if (error) return fail(error)
        if (settled) return
        settled = true
        resolve({ client, sftp, handshakeMs: performance.now() - connectedAt })
      }))
    client.connect({
      host: "127.0.0.1",
      port,
      username: login.username,
      password: login.password,
      readyTimeout: readyTimeoutMs,
      keepaliveInterval: 0,
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
      ...(options.cipher ? { algorithms: { cipher: [options.cipher] } } : {})
    })
  })

/** A node-style callback call as a Promise. */
export const call = <A>(f: (cb: (error: Error | null | undefined, value: A) => void) => void): Promise<A> =>
  new Promise((resolve, reject) => f((error, value) => (error ? reject(error) : resolve(value))))
