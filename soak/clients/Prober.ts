/**
 * Client process: the latency an ordinary user sees while the soak runs.
 *
 * - Handshake: one new SFTP login every `handshakeIntervalMs` (never two at
 *   once), timed from TCP connect to the sftp subsystem being open, then closed.
 * - STAT: `statSessions` sessions stay logged in and each sends one STAT every
 *   `statIntervalMs`, timed from request to reply.
 *
 * It connects from its own address, as a user elsewhere would. Samples are
 * filed under the phase the orchestrator last announced, so one
 * process measures "before" and "during" a phase with the same sessions.
 */
import type { PhaseSamples, ProberCommand, ProberMessage, ProberParams } from "../Messages.ts"
import { Failures, finish, onCommand, receiveParams, send, sleep } from "./Channel.ts"
import * as Sftp from "./Sftp.ts"

interface Samples {
  readonly handshakeMs: Array<number>
  readonly handshakeFailures: Failures
  readonly statMs: Array<number>
  readonly statFailures: Failures
}

const params = await receiveParams<ProberParams>()
const phases = new Map<string, Samples>()
let phase = "start"
let stopping = false
let lost = 0

const current = (): Samples => {
  let samples = phases.get(phase)
  if (!samples) {
    samples = { handshakeMs: [], handshakeFailures: new Failures(), statMs: [], statFailures: new Failures() }
    phases.set(phase, samples)
  }
  return samples
}

const handshakes = async () => {
  while (!stopping) {
    const started = performance.now()
    const samples = current()
    try {
      const session = await Sftp.connect(params.target.sftpPort, params.login, { localAddress: params.sourceIp })
      samples.handshakeMs.push(session.handshakeMs)
      session.client.end()
    } catch (error) {
      samples.handshakeFailures.add("handshake", error)
    }
    await sleep(Math.max(0, params.handshakeIntervalMs - (performance.now() - started)))
  }
}

const stats = async (session: Sftp.SftpSession, offsetMs: number) => {
  await sleep(offsetMs)
  while (!stopping) {
    const started = performance.now()
    const samples = current()
    try {
      await Sftp.call((cb) => session.sftp.stat(params.statPath, cb))
      samples.statMs.push(performance.now() - started)
    } catch (error) {
      samples.statFailures.add("stat", error)
    }
    await sleep(Math.max(0, params.statIntervalMs - (performance.now() - started)))
  }
}

const startFailures = new Failures()
const sessions: Array<Sftp.SftpSession> = []
for (let i = 0; i < params.statSessions; i++) {
  try {
    const session = await Sftp.connect(params.target.sftpPort, params.login, { localAddress: params.sourceIp })
    session.client.on("close", () => {
      if (!stopping) lost++
    })
    sessions.push(session)
  } catch (error) {
    startFailures.add("stat session login", error)
  }
}
const loops = [handshakes(), ...sessions.map((s, i) => stats(s, (i * params.statIntervalMs) / sessions.length))]

onCommand<ProberCommand>(async (command) => {
  if (command.type === "phase") return void (phase = command.name)
  stopping = true
  await Promise.all(loops)
  for (const session of sessions) session.client.end()
  const report: ProberMessage = {
    type: "report",
    phases: Object.fromEntries(Array.from(phases, ([name, samples]): [string, PhaseSamples] => [name, {
      handshakeMs: samples.handshakeMs,
      handshakeFailed: samples.handshakeFailures.total,
      handshakeFailures: samples.handshakeFailures.list(),
      statMs: samples.statMs,
      statFailed: samples.statFailures.total,
      statFailures: samples.statFailures.list()
    }])),
    lost
  }
  await finish(report)
})

await send({ type: "started", failures: startFailures.list() } satisfies ProberMessage)
