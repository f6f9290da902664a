/**
 * `npm run soak` (issue 7): a load and soak run of one Portcullis server.
 *
 * The server runs in this process, through the built library, so this
 * process's event-loop delay, memory and open fds are the server's. Every
 * client runs in a child process (soak/clients), so their CPU does not delay
 * the server's loop. The phases, in order:
 *
 * 1. warm-up: a few sessions and transfers, then everything closed; the
 *    baseline (RSS, heap after a forced GC, fds) is taken after it, so code the
 *    server compiles on first use does not count as a leak;
 * 2. idle: SOAK_SFTP_SESSIONS authenticated SFTP sessions (subsystem open) and
 *    SOAK_FTP_SESSIONS logged-in FTPS sessions, kept alive below the idle
 *    timeout; memory per idle session is measured here;
 * 3. load, SOAK_DURATION long: SOAK_TRANSFERS transfers at once (SFTP and FTPS,
 *    uploads and downloads, checksummed), one new login per second and STAT
 *    round trips on logged-in sessions, timed;
 * 4. pre-auth flood: SOAK_PREAUTH_CONNECTIONS TCP connections from
 *    127.0.0.2–127.0.0.9 that never speak, each refused or dropped by the
 *    server, with STAT latency measured before and during;
 * 5. everything closed: sessions, fds and memory must return to the baseline.
 *
 * It prints a table, writes soak/results/<UTC date>-<host>.json, and exits
 * non-zero when an invariant (Invariants.ts) fails or the harness itself broke.
 */
import * as fs from "node:fs"
import type { ServerConfigInput } from "portcullis"
import { ClientProcess } from "./ClientProcess.ts"
import { measureDelay, resolutionMs } from "./EventLoopDelay.ts"
import { makeFixture, type User } from "./Fixture.ts"
import { checkInvariants } from "./Invariants.ts"
import { canForceGc, collect, describeMachine, fdKinds, type Gauges, gauges, machineCpu, mainThreadSched, openFds, rssByMapping } from "./Machine.ts"
import type {
  ClientParams,
  FloodMessage,
  IdleMessage,
  IdleParams,
  ProberMessage,
  Target,
  TransferMessage,
  TransferParams,
  TransferReport
} from "./Messages.ts"
import { printTable, writeJson } from "./Report.ts"
import { type PhaseCpu, type Results, summarizeTransfers } from "./Results.ts"
import { readSettings, SettingError, type Settings } from "./Settings.ts"
import { type ServerUnderTest, startServer } from "./ServerUnderTest.ts"
import { summarize } from "./Stats.ts"

const minute = 60_000
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const startedAt = performance.now()
const progress = (line: string) => process.stderr.write(`[soak ${((performance.now() - startedAt) / 1000).toFixed(1)}s] ${line}\n`)

let settings: Settings
try {
  settings = readSettings()
} catch (error) {
  if (!(error instanceof SettingError)) throw error
  process.stderr.write(`${error.message}\n`)
  process.exit(2)
}

const results: Results = {
  startedAt: new Date().toISOString(),
  machine: describeMachine(),
  settings,
  gcForced: canForceGc,
  memory: { byMapping: {} },
  fds: {},
  eventLoopDelayMs: { resolutionMs },
  serverCpu: {},
  clientCpuSeconds: {},
  idleSessions: {},
  transfers: {},
  latency: {},
  serverLog: { entries: [], samples: [] },
  timeline: [],
  invariants: [],
  harnessErrors: []
}

const clients = new Set<ClientProcess<{ readonly type: string }>>()
const startClient = <M extends { readonly type: string }>(name: string, script: string, params: ClientParams): ClientProcess<M> => {
  const client = new ClientProcess<M>(name, script, params)
  clients.add(client)
  return client
}

/** The server's CPU use over a phase: call at its start, call the result at its end. */
const cpuSince = () => {
  const start = process.cpuUsage()
  const startSched = mainThreadSched()
  const startMachine = machineCpu()
  const startWall = performance.now()
  return (): PhaseCpu => {
    const used = process.cpuUsage(start)
    const sched = mainThreadSched()
    const machine = machineCpu()
    const seconds = (ms: number) => Math.round(ms / 10) / 100
    return {
      wallSeconds: seconds(performance.now() - startWall),
      processCpuSeconds: seconds((used.user + used.system) / 1000),
      loopThreadCpuSeconds: sched && startSched ? seconds(sched.cpuMs - startSched.cpuMs) : undefined,
      loopThreadWaitSeconds: sched && startSched ? seconds(sched.waitMs - startSched.waitMs) : undefined,
      machineBusySeconds: machine && startMachine ? seconds((machine.busySeconds - startMachine.busySeconds) * 1000) : undefined,
      machineIdleSeconds: machine && startMachine ? seconds((machine.idleSeconds - startMachine.idleSeconds) * 1000) : undefined
    }
  }
}

const waitFor = async (what: string, timeoutMs: number, condition: () => boolean | Promise<boolean>) => {
  const deadline = performance.now() + timeoutMs
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${Math.round(timeoutMs / 1000)} s`)
    await sleep(250)
  }
}

/** The server's config: ports chosen by the OS, the fixture's keys and users, the soak's timeouts and caps. */
const serverConfig = (fixture: ReturnType<typeof makeFixture>): ServerConfigInput => ({
  sftp: { address: "127.0.0.1:0", hostKeyFiles: [fixture.hostKeyFile], handshakeTimeout: `${settings.handshakeTimeoutMs} millis` },
  ftp: { address: "127.0.0.1:0", passivePorts: "40000-49999", tls: { certFile: fixture.certFile, keyFile: fixture.keyFile } },
  idleTimeout: `${settings.idleTimeoutMs} millis`,
  // Set explicitly, so the flood's outcome does not move with the defaults.
  maxPreAuthConnections: settings.maxPreAuthConnections,
  maxPreAuthConnectionsPerIp: settings.maxPreAuthConnectionsPerIp,
  users: [...fixture.idleUsers, ...fixture.transferUsers, fixture.prober].map((u) => ({ username: u.username, password: u.password, root: u.root }))
})

const login = (user: User) => ({ username: user.username, password: user.password })

const run = async (fixture: ReturnType<typeof makeFixture>, server: ServerUnderTest) => {
  const target: Target = { sftpPort: server.sftpPort, ftpPort: server.ftpPort, ca: fs.readFileSync(fixture.certFile, "utf8") }
  const idleParams = (sftpSessions: number, ftpSessions: number): IdleParams => ({
    kind: "idle",
    target,
    logins: fixture.idleUsers.map(login),
    sftpSessions,
    ftpSessions,
    parallel: settings.openParallel,
    keepaliveMs: settings.idleTimeoutMs / 3
  })
  const transferParams = (protocol: "sftp" | "ftp", slots: number, rounds: number): TransferParams => ({
    kind: "transfers",
    protocol,
    target,
    slots: Array.from({ length: slots }, (_, i) => {
      const user = fixture.transferUsers[i % fixture.transferUsers.length]!
      return { login: login(user), root: user.root }
    }),
    fileBytes: settings.fileBytes,
    downloadPath: fixture.downloadPath,
    downloadSha256: fixture.downloadSha256,
    rounds,
    // Its own address, as other users' would be (FTP cannot have one: see TransferParams).
    sourceIp: protocol === "sftp" ? "127.0.0.10" : undefined
  })
  const sessionsGone = (what: string) => waitFor(what, minute, async () => (await server.sessions()) === 0)

  // 1. Warm-up, then the baseline.
  progress("warm-up: a few sessions and transfers of each kind")
  let cpu = cpuSince()
  const warmIdle = startClient<IdleMessage>("warm-up idle sessions", "IdleSessions.ts", idleParams(Math.min(20, settings.sftpSessions), Math.min(10, settings.ftpSessions)))
  const warmTransfers = (["sftp", "ftp"] as const).map((p) => startClient<TransferMessage>(`warm-up ${p} transfers`, "Transfers.ts", transferParams(p, 2, 2)))
  await warmIdle.next("sftpReady", 5 * minute)
  warmIdle.send({ type: "continue" })
  const warmReady = await warmIdle.next("ready", 5 * minute)
  if (warmReady.failures.length > 0) results.harnessErrors.push(`warm-up logins failed: ${JSON.stringify(warmReady.failures)}`)
  for (const client of warmTransfers) {
    const report = await client.next("report", 10 * minute)
    const failed = report.upload.failed + report.download.failed + report.upload.mismatched + report.download.mismatched
    if (failed > 0) results.harnessErrors.push(`warm-up ${report.protocol} transfers: ${failed} failed: ${JSON.stringify(report.failures)}`)
    await client.exited(30_000)
  }
  warmIdle.send({ type: "close" })
  await warmIdle.next("closed", minute)
  await warmIdle.exited(30_000)
  await sessionsGone("the warm-up's sessions to end")
  results.serverCpu.warmup = cpu()
  await collect()
  await sleep(1000)
  await collect()
  results.memory.baseline = gauges()
  results.fds.baseline = results.memory.baseline.fds
  results.fds.baselineKinds = fdKinds()
  results.memory.byMapping.baseline = rssByMapping()

  // A sample every 2 s from here on, for the timeline and the peaks.
  let phase = "open"
  let sampling = Promise.resolve()
  const sampler = setInterval(() => {
    sampling = sampling.then(async () => {
      const g = gauges()
      const mib = (n: number) => Math.round((n / 1024 / 1024) * 10) / 10
      results.timeline.push({
        atS: Math.round((performance.now() - startedAt) / 100) / 10,
        phase,
        rssMiB: mib(g.rssBytes),
        heapUsedMiB: mib(g.heapUsedBytes),
        fds: g.fds,
        sessions: await server.sessions()
      })
    }).catch((error: unknown) => void results.harnessErrors.push(`sampling: ${String(error)}`))
  }, 2000)
  const peak = (phases: ReadonlyArray<string>, f: (p: Results["timeline"][number]) => number) =>
    Math.max(0, ...results.timeline.filter((p) => phases.includes(p.phase)).map(f))

  try {
    // 2. Idle sessions.
    progress(`opening ${settings.sftpSessions} SFTP and ${settings.ftpSessions} FTPS idle sessions`)
    cpu = cpuSince()
    const idle = startClient<IdleMessage>("idle sessions", "IdleSessions.ts", idleParams(settings.sftpSessions, settings.ftpSessions))
    const openTimeout = 10 * minute + 500 * (settings.sftpSessions + settings.ftpSessions)
    const sftpReady = await idle.next("sftpReady", openTimeout)
    await sleep(2000)
    await collect()
    const withSftp = gauges()
    results.memory.withIdleSftpSessions = withSftp
    idle.send({ type: "continue" })
    const ready = await idle.next("ready", openTimeout)
    results.serverCpu.open = cpu()
    Object.assign(results.idleSessions, { sftpOpened: ready.sftp, ftpOpened: ready.ftp, openSeconds: ready.openMs / 1000, openFailures: ready.failures })
    progress(`${ready.sftp} SFTP and ${ready.ftp} FTPS sessions up in ${(ready.openMs / 1000).toFixed(1)} s; 10 s idle`)
    phase = "idle"
    const idleDelay = measureDelay()
    await sleep(10_000)
    results.eventLoopDelayMs.idle = idleDelay()
    await collect()
    const withIdle = gauges()
    results.memory.withIdleSessions = withIdle
    results.memory.byMapping.withIdleSessions = rssByMapping()
    results.fds.withIdleSessions = withIdle.fds
    const perSession = (from: Gauges, to: Gauges, sessions: number) =>
      sessions === 0 ? undefined : {
        sessions,
        rssBytes: Math.round((to.rssBytes - from.rssBytes) / sessions),
        heapUsedBytes: Math.round((to.heapUsedBytes - from.heapUsedBytes) / sessions)
      }
    const baseline = results.memory.baseline
    const per = {
      all: perSession(baseline, withIdle, ready.sftp + ready.ftp),
      sftp: perSession(baseline, withSftp, sftpReady.sftp),
      ftp: perSession(withSftp, withIdle, ready.ftp)
    }
    if (per.all) results.memory.perIdleSession = per.all
    if (per.sftp) results.memory.perIdleSftpSession = per.sftp
    if (per.ftp) results.memory.perIdleFtpSession = per.ftp

    // 3. Load.
    const prober = startClient<ProberMessage>("prober", "Prober.ts", {
      kind: "prober",
      target,
      login: login(fixture.prober),
      statPath: fixture.statPath,
      statSessions: 4,
      statIntervalMs: 100,
      handshakeIntervalMs: 1000,
      sourceIp: "127.0.0.11"
    })
    const proberStarted = await prober.next("started", 5 * minute)
    if (proberStarted.failures.length > 0) results.harnessErrors.push(`prober logins failed: ${JSON.stringify(proberStarted.failures)}`)
    const sftpSlots = Math.ceil(settings.transfers / 2)
    const loaders = [
      startClient<TransferMessage>("SFTP transfers", "Transfers.ts", transferParams("sftp", sftpSlots, 0)),
      startClient<TransferMessage>("FTPS transfers", "Transfers.ts", transferParams("ftp", settings.transfers - sftpSlots, 0))
    ]
    for (const loader of loaders) await loader.next("started", minute)
    const uploadEventsBefore = server.uploadEvents()
    progress(`load: ${settings.transfers} transfers at once for ${settings.durationMs / 1000} s`)
    phase = "load"
    prober.send({ type: "phase", name: "load" })
    cpu = cpuSince()
    const loadDelay = measureDelay()
    const loadStarted = performance.now()
    await sleep(settings.durationMs)
    results.eventLoopDelayMs.load = loadDelay()
    results.memory.byMapping.endOfLoad = rssByMapping()
    for (const loader of loaders) loader.send({ type: "stop" })
    const reports: Array<TransferReport> = []
    for (const loader of loaders) reports.push(await loader.next("report", 10 * minute))
    results.transfers.loadSeconds = (performance.now() - loadStarted) / 1000
    results.serverCpu.load = cpu()
    for (const loader of loaders) await loader.exited(30_000)
    const [sftpReport, ftpReport] = reports as [TransferReport, TransferReport]
    Object.assign(results.transfers, {
      sftpUpload: summarizeTransfers(sftpReport.upload),
      sftpDownload: summarizeTransfers(sftpReport.download),
      ftpUpload: summarizeTransfers(ftpReport.upload),
      ftpDownload: summarizeTransfers(ftpReport.download),
      failures: [...sftpReport.failures, ...ftpReport.failures]
    })
    // Events are published as uploads complete; give the last ones a moment to arrive.
    await sleep(1000)
    results.transfers.uploadEvents = server.uploadEvents() - uploadEventsBefore
    results.transfers.droppedEvents = await server.droppedEvents()
    results.memory.peakDuringLoad = {
      rssBytes: Math.round(peak(["load"], (p) => p.rssMiB) * 1024 * 1024),
      heapUsedBytes: Math.round(peak(["load"], (p) => p.heapUsedMiB) * 1024 * 1024)
    }
    results.fds.peakDuringLoad = peak(["load"], (p) => p.fds)
    idle.send({ type: "check" })
    const afterLoad = await idle.next("checked", 5 * minute)
    results.idleSessions.answeredAfterLoad = { sftp: afterLoad.sftp, ftp: afterLoad.ftp, failures: afterLoad.failures }

    // 4. Pre-auth flood, with the same STAT sessions timed before and during.
    progress(`quiet ${settings.handshakeTimeoutMs / 1000} s, then ${settings.preAuthConnections} silent connections`)
    phase = "quiet"
    prober.send({ type: "phase", name: "before flood" })
    const quietDelay = measureDelay()
    await sleep(settings.handshakeTimeoutMs)
    results.eventLoopDelayMs.quiet = quietDelay()
    phase = "flood"
    prober.send({ type: "phase", name: "flood" })
    cpu = cpuSince()
    const floodDelay = measureDelay()
    const flood = startClient<FloodMessage>("pre-auth flood", "Flood.ts", {
      kind: "flood",
      port: server.sftpPort,
      connections: settings.preAuthConnections,
      sourceIps: Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`),
      parallel: 100,
      handshakeTimeoutMs: settings.handshakeTimeoutMs,
      deadlineMs: settings.handshakeTimeoutMs + 30_000
    })
    await flood.next("opened", 5 * minute)
    const floodReport = await flood.next("report", settings.handshakeTimeoutMs + 2 * minute)
    results.eventLoopDelayMs.flood = floodDelay()
    results.serverCpu.flood = cpu()
    prober.send({ type: "phase", name: "after flood" })
    await flood.exited(30_000)
    const { droppedAfterMs, refusedAfterMs, type: _type, ...floodCounts } = floodReport
    results.preAuth = { ...floodCounts, refusedAfterMs: summarize(refusedAfterMs), droppedAfterMs: summarize(droppedAfterMs) }
    results.fds.peakDuringFlood = peak(["flood"], (p) => p.fds)
    idle.send({ type: "check" })
    const afterFlood = await idle.next("checked", 5 * minute)
    results.idleSessions.answeredAfterFlood = { sftp: afterFlood.sftp, ftp: afterFlood.ftp, failures: afterFlood.failures }
    prober.send({ type: "stop" })
    const proberReport = await prober.next("report", minute)
    await prober.exited(30_000)
    results.proberLost = proberReport.lost
    for (const [name, samples] of Object.entries(proberReport.phases)) {
      if (name === "start") continue
      results.latency[name] = {
        handshakeMs: summarize(samples.handshakeMs),
        handshakeFailed: samples.handshakeFailed,
        handshakeFailures: samples.handshakeFailures,
        statMs: summarize(samples.statMs),
        statFailed: samples.statFailed,
        statFailures: samples.statFailures
      }
    }

    // 5. Everything closed: back to the baseline?
    progress("closing every session")
    phase = "close"
    idle.send({ type: "close" })
    const closed = await idle.next("closed", 2 * minute)
    await idle.exited(30_000)
    Object.assign(results.idleSessions, {
      keepalivesSent: closed.keepalivesSent,
      keepalivesFailed: closed.keepalivesFailed,
      lost: closed.lost,
      lostSessions: closed.lostSessions,
      failures: closed.failures
    })
    await sessionsGone("the server's sessions to end after the clients closed").catch((error: unknown) =>
      results.harnessErrors.push(String(error)))
    results.serverSessionsLeft = await server.sessions()
    // Closed sockets leave the fd table as their handles close: allow them a moment.
    const baselineFds = results.fds.baseline
    await waitFor("fds", 30_000, () => openFds() <= baselineFds).catch(() => undefined)
  } finally {
    clearInterval(sampler)
    await sampling
  }
  await collect()
  await sleep(1000)
  await collect()
  results.memory.after = gauges()
  results.fds.after = results.memory.after.fds
  results.fds.afterKinds = fdKinds()
  results.memory.byMapping.after = rssByMapping()
  const base = results.memory.baseline
  const withIdle = results.memory.withIdleSessions!
  const mib = 1024 * 1024
  // RSS climbs to the allocator's high-water mark in about the first minute of load
  // (docs/reliability.md), so the halves compared start after it.
  const load = results.timeline.filter((p) => p.phase === "load")
  const peakOf = (points: typeof load) => Math.round(Math.max(0, ...points.map((p) => p.rssMiB)) * mib)
  if (load.length >= 2) {
    const start = load[0]!.atS + (load[load.length - 1]!.atS - load[0]!.atS > 120 ? 60 : 0)
    const middle = (start + load[load.length - 1]!.atS) / 2
    results.memory.loadHalvesRssBytes = [
      peakOf(load.filter((p) => p.atS >= start && p.atS <= middle)),
      peakOf(load.filter((p) => p.atS > middle))
    ]
  } else {
    results.harnessErrors.push("the load was too short for two memory samples (2 s apart)")
  }
  results.memory.tolerance = {
    jsBytes: Math.max(8 * mib, 0.05 * (withIdle.heapUsedBytes + withIdle.externalBytes - base.heapUsedBytes - base.externalBytes)),
    rssPlateauBytes: Math.max(32 * mib, 0.1 * ((results.memory.loadHalvesRssBytes?.[0] ?? 0) - base.rssBytes)),
    rssAfterBytes: 64 * mib
  }
}

const main = async (): Promise<number> => {
  progress(`settings: ${JSON.stringify(settings)}`)
  const fixture = makeFixture(settings)
  let server: ServerUnderTest | undefined
  const interrupted = () => {
    for (const client of clients) client.kill()
    fixture.remove()
    process.exit(130)
  }
  process.once("SIGINT", interrupted)
  process.once("SIGTERM", interrupted)
  try {
    server = await startServer(serverConfig(fixture))
    progress(`server: SFTP on ${server.sftpPort}, FTP on ${server.ftpPort}`)
    await run(fixture, server)
  } catch (error) {
    results.harnessErrors.push(error instanceof Error ? (error.stack ?? error.message) : String(error))
  } finally {
    for (const client of clients) {
      client.kill()
      if (client.cpuSeconds !== undefined) results.clientCpuSeconds[client.name] = Math.round(client.cpuSeconds * 100) / 100
    }
    if (server) {
      try {
        results.shutdownForced = (await server.stop()).forced
      } catch (error) {
        results.harnessErrors.push(`server shutdown: ${String(error)}`)
      }
      results.serverLog = { entries: [...server.log.counts.values()], samples: server.log.samples }
    }
    fixture.remove()
  }
  results.finishedAt = new Date().toISOString()
  results.invariants = checkInvariants(results)
  results.ok = results.harnessErrors.length === 0 && results.invariants.every((i) => i.ok || !i.gating)
  printTable(results)
  progress(`report: ${writeJson(results)}`)
  return results.ok ? 0 : 1
}

process.exit(await main())
