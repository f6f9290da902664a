/**
 * What must hold at the end of a soak run. A failed gating invariant makes the
 * run exit non-zero: lost bytes (a checksum mismatch), a failed transfer, a lost
 * session, a pre-auth connection never dropped, sessions, fds or JavaScript
 * memory not returned, RSS still growing at the end of a load longer than two
 * minutes, an error in the server's log. Two comparisons are only flagged: latency under the pre-auth
 * flood (on a shared machine it measures the neighbours as much as the server)
 * and RSS after closing against the baseline (glibc keeps freed memory mapped,
 * so RSS settles at its high-water mark instead of going back).
 */
import type { Invariant, Results } from "./Results.ts"

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`

export const checkInvariants = (r: Results): Array<Invariant> => {
  const out: Array<Invariant> = []
  const check = (name: string, ok: boolean, detail: string, gating = true) => out.push({ name, ok, detail, gating })
  const s = r.settings

  const sftpOpened = r.idleSessions.sftpOpened ?? 0
  const ftpOpened = r.idleSessions.ftpOpened ?? 0
  check("idle sessions opened", sftpOpened === s.sftpSessions && ftpOpened === s.ftpSessions,
    `SFTP ${sftpOpened}/${s.sftpSessions}, FTP ${ftpOpened}/${s.ftpSessions}`)
  const answered = (a: { sftp: number; ftp: number } | undefined) => a ? a.sftp + a.ftp : 0
  const afterLoad = answered(r.idleSessions.answeredAfterLoad)
  const afterFlood = answered(r.idleSessions.answeredAfterFlood)
  check("no idle session lost",
    r.idleSessions.lost === 0 && afterLoad === sftpOpened + ftpOpened && afterFlood === sftpOpened + ftpOpened,
    `lost ${r.idleSessions.lost ?? "?"}; answered after the load ${afterLoad}, after the flood ${afterFlood}, of ${sftpOpened + ftpOpened}`)

  const kinds = [r.transfers.sftpUpload, r.transfers.sftpDownload, r.transfers.ftpUpload, r.transfers.ftpDownload]
  const sum = (f: (t: NonNullable<(typeof kinds)[number]>) => number) => kinds.reduce((n, t) => n + (t ? f(t) : 0), 0)
  check("no transfer checksum mismatch", kinds.every((t) => t !== undefined) && sum((t) => t.mismatched) === 0, `${sum((t) => t.mismatched)} mismatched`)
  check("no transfer failed", kinds.every((t) => t !== undefined) && sum((t) => t.failed) === 0, `${sum((t) => t.failed)} failed of ${sum((t) => t.failed + t.completed + t.mismatched)}`)
  check("every kind of transfer ran", kinds.every((t) => (t?.completed ?? 0) > 0),
    `completed: SFTP up ${kinds[0]?.completed ?? 0}, down ${kinds[1]?.completed ?? 0}; FTP up ${kinds[2]?.completed ?? 0}, down ${kinds[3]?.completed ?? 0}`)
  const uploadsDone = (r.transfers.sftpUpload?.completed ?? 0) + (r.transfers.sftpUpload?.mismatched ?? 0) +
    (r.transfers.ftpUpload?.completed ?? 0) + (r.transfers.ftpUpload?.mismatched ?? 0)
  check("one UploadCompleted event per completed upload", r.transfers.uploadEvents === uploadsDone,
    `${r.transfers.uploadEvents ?? "?"} events, ${uploadsDone} uploads`)

  const phases = Object.entries(r.latency)
  const statFailed = phases.reduce((n, [, p]) => n + p.statFailed, 0)
  const handshakeFailed = phases.filter(([name]) => name !== "flood").reduce((n, [, p]) => n + p.handshakeFailed, 0)
  check("prober: STAT sessions kept, every STAT answered", r.proberLost === 0 && statFailed === 0,
    `sessions lost ${r.proberLost ?? "?"}, STAT failures ${statFailed}`)
  check("prober: every login outside the flood succeeded", handshakeFailed === 0, `${handshakeFailed} failed`)

  const flood = r.preAuth
  const floodFailed = flood ? flood.connectFailures.reduce((n, f) => n + f.count, 0) : 0
  check("pre-auth connections all ended by the server", flood !== undefined && flood.stillOpen === 0 && flood.opened + floodFailed === s.preAuthConnections,
    flood ? `${flood.opened} opened, ${floodFailed} could not connect, ${flood.refused} refused at once, ${flood.dropped} dropped at the timeout, ${flood.stillOpen} still open` : "no report")
  const before = r.latency["before flood"]?.statMs
  const during = r.latency["flood"]?.statMs
  check("STAT latency during the flood within 2x (+5 ms) of before",
    before !== undefined && during !== undefined && during.p50 <= 2 * before.p50 + 5 && during.p99 <= 2 * before.p99 + 5,
    before && during ? `p50 ${before.p50} -> ${during.p50} ms, p99 ${before.p99} -> ${during.p99} ms` : "no samples", false)

  check("every server session ended, none forced at shutdown", r.serverSessionsLeft === 0 && r.shutdownForced === 0,
    `${r.serverSessionsLeft ?? "?"} left after the clients closed, ${r.shutdownForced ?? "?"} forced`)
  check("fds back to baseline", r.fds.after !== undefined && r.fds.baseline !== undefined && r.fds.after <= r.fds.baseline,
    `${r.fds.baseline ?? "?"} before, ${r.fds.after ?? "?"} after`)
  const m = r.memory
  if (m.baseline && m.after && m.tolerance && m.loadHalvesRssBytes) {
    const js = (g: typeof m.after) => g.heapUsedBytes + g.externalBytes
    check("JS memory back to baseline (heap used + external, after GC)", js(m.after) - js(m.baseline) <= m.tolerance.jsBytes,
      `${mib(js(m.baseline))} -> ${mib(js(m.after))} (${mib(js(m.after) - js(m.baseline))}, tolerance ${mib(m.tolerance.jsBytes)})`)
    const [first, second] = m.loadHalvesRssBytes
    const longEnough = s.durationMs > 2 * 60_000
    check("RSS levels off under load (peak of the second half vs the first, after its first minute)",
      second - first <= m.tolerance.rssPlateauBytes,
      `${mib(first)} -> ${mib(second)} (${mib(second - first)}, tolerance ${mib(m.tolerance.rssPlateauBytes)})` +
        (longEnough ? "" : "; not gating: a load of 2 minutes or less ends while RSS still climbs to its high-water mark"),
      longEnough)
    check("RSS back to baseline (after GC)", m.after.rssBytes - m.baseline.rssBytes <= m.tolerance.rssAfterBytes,
      `${mib(m.baseline.rssBytes)} -> ${mib(m.after.rssBytes)} (${mib(m.after.rssBytes - m.baseline.rssBytes)}; the allocator keeps freed memory, see docs/reliability.md)`,
      false)
  } else {
    check("memory back to baseline", false, "not measured")
  }
  const errors = r.serverLog.entries.filter((e) => e.level === "Error" || e.level === "Fatal").reduce((n, e) => n + e.count, 0)
  check("server logged no errors", errors === 0, `${errors} error entries`)
  return out
}
