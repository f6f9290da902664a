/**
 * Client process: many authenticated, idle sessions. SFTP sessions are ssh2
 * clients with the sftp subsystem open; FTP sessions are basic-ftp clients
 * logged in over explicit FTPS. Each sends one small request (SFTP realpath,
 * FTP NOOP) at random intervals averaging `keepaliveMs`, below the server's idle
 * timeout, so the sessions stay up; a session whose connection ends without
 * the soak asking is counted as lost. SFTP sessions are opened first; FTP ones
 * once the orchestrator says "continue" (it measures memory in between).
 */
import type { Client as FtpClient } from "basic-ftp"
import type { IdleChecked, IdleClosed, IdleCommand, IdleParams, IdleReady, IdleSftpReady } from "../Messages.ts"
import { Failures, finish, forEachLimited, onCommand, receiveParams, send } from "./Channel.ts"
import * as Ftp from "./Ftp.ts"
import * as Sftp from "./Sftp.ts"

interface Idle {
  readonly name: string
  /** One round trip; requests of one session never overlap (FTP cannot pipeline commands). */
  readonly request: () => Promise<void>
  readonly close: () => void
  /** Settles when the connection has ended, whoever ended it. */
  readonly closed: Promise<void>
  alive: boolean
  timer?: NodeJS.Timeout
}

const params = await receiveParams<IdleParams>()
const sessions: Array<Idle> = []
const failures = new Failures()
const lost = new Failures(50)
let closing = false
let keepalivesSent = 0
let keepalivesFailed = 0

/** Serialises the requests of one session. */
const serialised = (op: () => Promise<unknown>) => {
  let chain: Promise<unknown> = Promise.resolve()
  return () => {
    const result = chain.then(op).then(() => undefined)
    chain = result.catch(() => undefined)
    return result
  }
}

const schedule = (session: Idle) => {
  session.timer = setTimeout(async () => {
    keepalivesSent++
    try {
      await session.request()
    } catch (error) {
      keepalivesFailed++
      failures.add(`keepalive ${session.name}`, error)
    }
    if (!closing && session.alive) schedule(session)
  }, params.keepaliveMs * (0.5 + Math.random()))
}

/**
 * Registers a live session. `watch` hands over the callback its connection calls
 * when it ends; `close(ended)` closes it and calls `ended` once it is gone
 * (basic-ftp drops every socket listener when it closes, so it reports that itself).
 */
const track = (
  name: string,
  request: () => Promise<unknown>,
  close: (ended: () => void) => void,
  watch: (ended: () => void) => void
) => {
  let closedNow!: () => void
  const closed = new Promise<void>((resolve) => (closedNow = resolve))
  const ended = () => {
    if (!closing && session.alive) lost.add(name, "the connection ended")
    session.alive = false
    clearTimeout(session.timer)
    closedNow()
  }
  const session: Idle = { name, request: serialised(request), close: () => close(ended), closed, alive: true }
  watch(ended)
  sessions.push(session)
  schedule(session)
}

const openSftp = async (i: number) => {
  try {
    const { client, sftp } = await Sftp.connect(params.target.sftpPort, params.logins[i % params.logins.length]!)
    track(`sftp#${i}`, () => Sftp.call((cb) => sftp.realpath(".", cb)), () => client.end(), (ended) => client.on("close", ended))
  } catch (error) {
    failures.add("sftp login", error)
  }
}

const openFtp = async (i: number) => {
  try {
    const client: FtpClient = await Ftp.connect(params.target, params.logins[i % params.logins.length]!)
    const socket = client.ftp.socket
    track(`ftp#${i}`, () => client.send("NOOP"), (ended) => {
      client.close()
      ended()
    }, (ended) => {
      // basic-ftp's own "end" handler removes every listener, ours for "close" too.
      socket.once("end", ended)
      socket.once("close", ended)
    })
  } catch (error) {
    failures.add("ftp login", error)
  }
}

let resume: () => void = () => {}
const resumed = new Promise<void>((resolve) => (resume = resolve))

onCommand<IdleCommand>(async (command) => {
  if (command.type === "continue") return resume()
  if (command.type === "check") {
    const answered = { sftp: 0, ftp: 0 }
    const checkFailures = new Failures()
    await forEachLimited(sessions.length, 64, async (i) => {
      const session = sessions[i]!
      try {
        if (!session.alive) throw new Error("the connection had ended")
        await session.request()
        answered[session.name.startsWith("sftp") ? "sftp" : "ftp"]++
      } catch (error) {
        checkFailures.add(`check ${session.name}`, error)
      }
    })
    const checked: IdleChecked = { type: "checked", ...answered, failures: checkFailures.list() }
    return void send(checked)
  }
  closing = true
  let closed = 0
  for (const session of sessions) {
    clearTimeout(session.timer)
    if (session.alive) {
      closed++
      session.close()
    }
  }
  let timer: NodeJS.Timeout | undefined
  await Promise.race([Promise.all(sessions.map((s) => s.closed)), new Promise((resolve) => (timer = setTimeout(resolve, 30_000)))])
  clearTimeout(timer)
  const report: IdleClosed = {
    type: "closed",
    closed,
    keepalivesSent,
    keepalivesFailed,
    lost: lost.total,
    lostSessions: lost.list(),
    failures: failures.list()
  }
  await finish(report)
})

const up = (prefix: string) => sessions.filter((s) => s.alive && s.name.startsWith(prefix)).length
const started = performance.now()
await forEachLimited(params.sftpSessions, params.parallel, openSftp)
const sftpMs = performance.now() - started
await send({ type: "sftpReady", sftp: up("sftp") } satisfies IdleSftpReady)
await resumed
const ftpStarted = performance.now()
await forEachLimited(params.ftpSessions, Math.min(params.parallel, 8), openFtp)
const ready: IdleReady = { type: "ready", sftp: up("sftp"), ftp: up("ftp"), openMs: sftpMs + performance.now() - ftpStarted, failures: failures.list() }
await send(ready)
