/**
 * The soak's output: a table on stdout and the whole Results as JSON in
 * soak/results/<UTC date>-<host>.json (the directory is gitignored).
 */
import * as fs from "node:fs"
import * as path from "node:path"
import type { DelaySummary } from "./EventLoopDelay.ts"
import type { Results, TransferSummary } from "./Results.ts"
import type { Summary } from "./Stats.ts"

const mib = (bytes: number | undefined) => (bytes === undefined ? "-" : `${(bytes / 1024 / 1024).toFixed(1)} MiB`)
const kib = (bytes: number | undefined) => (bytes === undefined ? "-" : `${(bytes / 1024).toFixed(1)} KiB`)
const latency = (s: Summary | undefined) => (s ? `p50 ${s.p50} / p99 ${s.p99} / max ${s.max} ms (n=${s.count})` : "-")
const delay = (s: DelaySummary | undefined) => (s ? `p50 ${s.p50} / p99 ${s.p99} / max ${s.max} ms` : "-")
const transfers = (t: TransferSummary | undefined) =>
  t ? `${t.completed} ok, ${t.failed} failed, ${t.mismatched} mismatched, ${mib(t.bytes)}; time ${latency(t.durationMs)}` : "-"

/** The rows of the table: [section, metric, value]. */
const rows = (r: Results): Array<[string, string, string]> => {
  const out: Array<[string, string, string]> = []
  const m = r.machine
  out.push(["machine", "host", `${m.host}: ${m.nproc} CPUs (${m.cpuModel}), ${mib(m.memoryBytes)}, ${m.os} ${m.kernel}, node ${m.node}`])
  out.push(["machine", "load average at start", m.loadAverageAtStart.join(" ")])
  const s = r.settings
  out.push(["settings", "load duration", `${(s.durationMs / 1000).toFixed(0)} s`])
  out.push(["settings", "idle sessions", `${s.sftpSessions} SFTP + ${s.ftpSessions} FTPS`])
  out.push(["settings", "transfers", `${s.transfers} at once, ${mib(s.fileBytes)} files`])
  out.push(["settings", "pre-auth", `${s.preAuthConnections} silent connections, handshake timeout ${s.handshakeTimeoutMs / 1000} s`])
  out.push(["settings", "pre-auth caps", `${s.maxPreAuthConnections} in all, ${s.maxPreAuthConnectionsPerIp} per client IP`])
  const mem = r.memory
  out.push(["memory", "forced GC", r.gcForced ? "yes (--expose-gc)" : "NO: node without --expose-gc"])
  out.push(["memory", "baseline RSS / heap", `${mib(mem.baseline?.rssBytes)} / ${mib(mem.baseline?.heapUsedBytes)}`])
  out.push(["memory", "with idle sessions RSS / heap", `${mib(mem.withIdleSessions?.rssBytes)} / ${mib(mem.withIdleSessions?.heapUsedBytes)}`])
  const per = (p: typeof mem.perIdleSession) => (p ? `${kib(p.rssBytes)} / ${kib(p.heapUsedBytes)} (${p.sessions} sessions)` : "-")
  out.push(["memory", "per idle session RSS / heap", per(mem.perIdleSession)])
  out.push(["memory", "per idle SFTP session RSS / heap", per(mem.perIdleSftpSession)])
  out.push(["memory", "per idle FTPS session RSS / heap", per(mem.perIdleFtpSession)])
  out.push(["memory", "peak during load RSS / heap", `${mib(mem.peakDuringLoad?.rssBytes)} / ${mib(mem.peakDuringLoad?.heapUsedBytes)}`])
  out.push(["memory", "after all closed RSS / heap", `${mib(mem.after?.rssBytes)} / ${mib(mem.after?.heapUsedBytes)}`])
  out.push(["memory", "external (Buffers...) before / after", `${mib(mem.baseline?.externalBytes)} / ${mib(mem.after?.externalBytes)}`])
  out.push(["memory", "after all closed, by mapping", mem.byMapping.after ? Object.entries(mem.byMapping.after).map(([k, v]) => `${k} ${mib(v)}`).join(", ") : "-"])
  out.push(["memory", "baseline, by mapping", mem.byMapping.baseline ? Object.entries(mem.byMapping.baseline).map(([k, v]) => `${k} ${mib(v)}`).join(", ") : "-"])
  const f = r.fds
  out.push(["fds", "before / idle / peak load / peak flood / after", [f.baseline, f.withIdleSessions, f.peakDuringLoad, f.peakDuringFlood, f.after].map((n) => n ?? "-").join(" / ")])
  const e = r.eventLoopDelayMs
  out.push(["event loop delay", "idle sessions only", delay(e.idle)])
  out.push(["event loop delay", "under load", delay(e.load)])
  out.push(["event loop delay", "before the flood", delay(e.quiet)])
  out.push(["event loop delay", "during the flood", delay(e.flood)])
  for (const phase of ["open", "load", "flood"] as const) {
    const c = r.serverCpu[phase]
    if (!c) continue
    const loop = c.loopThreadCpuSeconds === undefined ? "" : `; loop thread ${c.loopThreadCpuSeconds} s on a CPU, ${c.loopThreadWaitSeconds} s waiting for one`
    const machine = c.machineBusySeconds === undefined ? "" : `; machine ${c.machineBusySeconds} s busy, ${c.machineIdleSeconds} s idle`
    out.push(["server CPU", phase, `${c.processCpuSeconds} s CPU in ${c.wallSeconds} s${loop}${machine}`])
  }
  out.push(["client CPU", "s per process", Object.entries(r.clientCpuSeconds).map(([name, s]) => `${name} ${s}`).join(", ") || "-"])
  const i = r.idleSessions
  out.push(["idle sessions", "opened", `SFTP ${i.sftpOpened ?? "-"}, FTPS ${i.ftpOpened ?? "-"} in ${i.openSeconds?.toFixed(1) ?? "-"} s`])
  out.push(["idle sessions", "keepalives sent / failed", `${i.keepalivesSent ?? "-"} / ${i.keepalivesFailed ?? "-"}`])
  out.push(["idle sessions", "lost", `${i.lost ?? "-"}`])
  const t = r.transfers
  out.push(["transfers", "SFTP upload", transfers(t.sftpUpload)])
  out.push(["transfers", "SFTP download", transfers(t.sftpDownload)])
  out.push(["transfers", "FTPS upload", transfers(t.ftpUpload)])
  out.push(["transfers", "FTPS download", transfers(t.ftpDownload)])
  const all = [t.sftpUpload, t.sftpDownload, t.ftpUpload, t.ftpDownload]
  const bytes = all.reduce((n, x) => n + (x?.bytes ?? 0), 0)
  out.push(["transfers", "total", `${all.reduce((n, x) => n + (x?.completed ?? 0), 0)} ok, ${all.reduce((n, x) => n + (x?.failed ?? 0), 0)} failed, ${mib(bytes)}${t.loadSeconds ? ` (${(bytes / 1024 / 1024 / t.loadSeconds).toFixed(1)} MiB/s)` : ""}`])
  out.push(["transfers", "UploadCompleted events", `${t.uploadEvents ?? "-"}`])
  for (const [phase, p] of Object.entries(r.latency)) {
    out.push([`latency: ${phase}`, "handshake (connect to SFTP open)", `${latency(p.handshakeMs)}${p.handshakeFailed ? `, ${p.handshakeFailed} FAILED` : ""}`])
    out.push([`latency: ${phase}`, "STAT round trip", `${latency(p.statMs)}${p.statFailed ? `, ${p.statFailed} FAILED` : ""}`])
  }
  const pa = r.preAuth
  if (pa) {
    out.push(["pre-auth flood", "opened / could not connect", `${pa.opened} in ${(pa.openMs / 1000).toFixed(1)} s / ${pa.connectFailures.reduce((n, x) => n + x.count, 0)}`])
    out.push(["pre-auth flood", "refused at once", `${pa.refused} (${latency(pa.refusedAfterMs)})`])
    out.push(["pre-auth flood", "dropped at the timeout", `${pa.dropped} (${latency(pa.droppedAfterMs)})`])
    out.push(["pre-auth flood", "still open at the deadline", `${pa.stillOpen}`])
  }
  out.push(["server log", "entries", r.serverLog.entries.map((x) => `${x.count}x ${x.level} "${x.message}"`).join("; ") || "none"])
  for (const inv of r.invariants) out.push(["check", inv.name, `${inv.ok ? "PASS" : inv.gating ? "FAIL" : "FLAG"}: ${inv.detail}`])
  for (const error of r.harnessErrors) out.push(["HARNESS ERROR", "", error])
  return out
}

export const printTable = (r: Results): void => {
  const table = rows(r)
  const width = (column: 0 | 1) => Math.max(...table.map((row) => row[column].length))
  const [w0, w1] = [width(0), width(1)]
  const lines = table.map(([a, b, c]) => `${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`)
  process.stdout.write(`\n${lines.join("\n")}\n\n${r.ok ? "SOAK PASSED" : "SOAK FAILED"}\n`)
}

/** `2026-11-21T190351Z`, the stamp bench/ uses too. */
const stamp = (iso: string) => `${iso.slice(0, 10)}T${iso.slice(11, 19).replaceAll(":", "")}Z`

/** Writes the JSON report; returns its path. */
export const writeJson = (r: Results): string => {
  const dir = new URL("./results/", import.meta.url).pathname
  fs.mkdirSync(dir, { recursive: true })
  const file = path.join(dir, `${stamp(r.startedAt)}-${r.machine.host}.json`)
  fs.writeFileSync(file, `${JSON.stringify(r, null, 2)}\n`)
  return file
}
