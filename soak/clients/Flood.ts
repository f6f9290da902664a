/**
 * Client process: TCP connections that never speak. Each connects to the SFTP
 * port from one of the given source addresses (127.0.0.2–127.0.0.9 in turn, so
 * per-IP pre-auth limits see several clients), reads whatever the server sends
 * and writes nothing. The report says how each connection ended: refused at
 * once, dropped by the server's handshake timeout, or still open at the deadline
 * (which the soak counts as a failure).
 */
import * as net from "node:net"
import type { FloodParams, FloodReport } from "../Messages.ts"
import { Failures, finish, forEachLimited, receiveParams, send } from "./Channel.ts"

interface Probe {
  readonly ip: string
  connectedAt: number
  closedAfterMs: number | undefined
  greeted: boolean
}

const params = await receiveParams<FloodParams>()
const probes: Array<Probe> = []
const sockets: Array<net.Socket> = []
const connectFailures = new Failures()
let allClosed: () => void = () => {}
let open = 0

const connectOne = (i: number) =>
  new Promise<void>((resolve) => {
    const ip = params.sourceIps[i % params.sourceIps.length]!
    const socket = net.connect({ host: "127.0.0.1", port: params.port, localAddress: ip })
    const probe: Probe = { ip, connectedAt: 0, closedAfterMs: undefined, greeted: false }
    socket.once("connect", () => {
      probe.connectedAt = performance.now()
      probes.push(probe)
      sockets.push(socket)
      open++
      resolve()
    })
    socket.on("data", () => void (probe.greeted = true))
    socket.on("error", (error) => {
      if (probe.connectedAt === 0) {
        connectFailures.add(`connect from ${ip}`, error)
        resolve()
      }
    })
    socket.once("close", () => {
      if (probe.connectedAt === 0) return
      probe.closedAfterMs = performance.now() - probe.connectedAt
      if (--open === 0) allClosed()
    })
  })

const started = performance.now()
await forEachLimited(params.connections, params.parallel, connectOne)
const openMs = performance.now() - started
await send({ type: "opened", opened: probes.length })

if (open > 0) {
  await new Promise<void>((resolve) => {
    allClosed = resolve
    setTimeout(resolve, params.deadlineMs)
  })
}
const quick = params.handshakeTimeoutMs / 2
const perIp: FloodReport["perIp"] = {}
const refusedAfterMs: Array<number> = []
const droppedAfterMs: Array<number> = []
let stillOpen = 0
for (const probe of probes) {
  const entry = (perIp[probe.ip] ??= { opened: 0, refused: 0, dropped: 0 })
  entry.opened++
  if (probe.closedAfterMs === undefined) stillOpen++
  else if (probe.closedAfterMs < quick) {
    entry.refused++
    refusedAfterMs.push(probe.closedAfterMs)
  } else {
    entry.dropped++
    droppedAfterMs.push(probe.closedAfterMs)
  }
}
for (const socket of sockets) socket.destroy()
const report: FloodReport = {
  type: "report",
  opened: probes.length,
  connectFailures: connectFailures.list(),
  refused: refusedAfterMs.length,
  dropped: droppedAfterMs.length,
  greeted: probes.filter((p) => p.greeted).length,
  refusedAfterMs,
  droppedAfterMs,
  stillOpen,
  perIp,
  openMs
}
await finish(report)
