// Opens COUNT authenticated SFTP sessions (ssh2 client, password, sftp subsystem
// started) against one server and keeps them idle until stdin closes.
// Usage: node bench/idle-sessions.mjs PORT USER COUNT PARALLEL   (password in $SSHPASS)
// Prints "ready N failed M" on stdout once every session is either up or failed.
// PARALLEL bounds the logins in progress: OpenSSH drops connections beyond
// MaxStartups (10 by default) and Portcullis beyond its pre-auth caps.
import { createRequire } from "node:module"

const require = createRequire(import.meta.url)
const { Client } = require("ssh2")
const [port, username, count, parallel] = [Number(process.argv[2]), process.argv[3], Number(process.argv[4]), Number(process.argv[5])]
const password = process.env.SSHPASS

const clients = []
let ready = 0, failed = 0, started = 0

const openOne = () => new Promise((resolve) => {
  const client = new Client()
  let settled = false
  const done = (ok) => {
    if (settled) return
    settled = true
    if (ok) ready++
    else failed++
    resolve()
  }
  client.on("ready", () => client.sftp((error) => done(!error)))
  client.on("error", () => done(false))
  client.on("close", () => done(false))
  client.connect({
    host: "127.0.0.1", port, username, password, readyTimeout: 120_000, keepaliveInterval: 0,
    algorithms: { cipher: ["aes128-gcm@openssh.com"] }
  })
  clients.push(client)
})

const worker = async () => {
  while (started < count) {
    started++
    await openOne()
  }
}
await Promise.all(Array.from({ length: parallel }, worker))
process.stdout.write(`ready ${ready} failed ${failed}\n`)
process.stdin.resume()
process.stdin.on("end", () => {
  for (const c of clients) c.end()
  setTimeout(() => process.exit(0), 500)
})
