/**
 * What one soak run found: the shape of soak/results/<UTC date>-<host>.json.
 * Times are milliseconds and sizes bytes unless a name says otherwise.
 * Sections are filled as the run goes, so a run that broke off still reports
 * what it measured up to that point.
 */
import type { DelaySummary } from "./EventLoopDelay.ts"
import type { Gauges, MachineDescription } from "./Machine.ts"
import type { Failure, FloodReport, TransferCounts } from "./Messages.ts"
import type { LogEntry, LogSample } from "./ServerUnderTest.ts"
import type { Settings } from "./Settings.ts"
import { summarize, type Summary } from "./Stats.ts"

export interface TransferSummary {
  readonly completed: number
  readonly failed: number
  readonly mismatched: number
  readonly bytes: number
  readonly durationMs: Summary | undefined
}

export interface LatencyPhase {
  readonly handshakeMs: Summary | undefined
  readonly handshakeFailed: number
  readonly handshakeFailures: ReadonlyArray<Failure>
  readonly statMs: Summary | undefined
  readonly statFailed: number
  readonly statFailures: ReadonlyArray<Failure>
}

export interface TimelinePoint {
  readonly atS: number
  readonly phase: string
  readonly rssMiB: number
  readonly heapUsedMiB: number
  readonly fds: number
  readonly sessions: number
}

export interface PhaseCpu {
  readonly wallSeconds: number
  /** CPU time of the whole process: the event loop, libuv's thread pool, GC threads. */
  readonly processCpuSeconds: number
  /** The event-loop thread: on a CPU, and runnable but waiting for one (other processes had it). */
  readonly loopThreadCpuSeconds: number | undefined
  readonly loopThreadWaitSeconds: number | undefined
  /** All CPUs of the machine: busy (anyone's work, the soak's clients' included) and idle. */
  readonly machineBusySeconds: number | undefined
  readonly machineIdleSeconds: number | undefined
}

export interface Invariant {
  readonly name: string
  readonly ok: boolean
  readonly detail: string
  /** A failed gating invariant fails the run; the others are observations the report flags. */
  readonly gating: boolean
}

export interface Results {
  startedAt: string
  finishedAt?: string
  machine: MachineDescription
  settings: Settings
  gcForced: boolean
  memory: {
    baseline?: Gauges
    withIdleSessions?: Gauges
    /** With the idle SFTP sessions only (before the FTP ones were opened). */
    withIdleSftpSessions?: Gauges
    perIdleSession?: { readonly rssBytes: number; readonly heapUsedBytes: number; readonly sessions: number }
    perIdleSftpSession?: { readonly rssBytes: number; readonly heapUsedBytes: number; readonly sessions: number }
    perIdleFtpSession?: { readonly rssBytes: number; readonly heapUsedBytes: number; readonly sessions: number }
    peakDuringLoad?: { readonly rssBytes: number; readonly heapUsedBytes: number }
    after?: Gauges
    /** Resident memory by kind of mapping (Machine.rssByMapping) at points of the run. */
    byMapping: Partial<Record<"baseline" | "withIdleSessions" | "endOfLoad" | "after", Record<string, number>>>
    /**
     * Gating: heap used + external after GC may exceed the baseline by `jsBytes`;
     * RSS may grow by `rssPlateauBytes` from the first half of the load to the
     * second. Flagged only: RSS after closing above the baseline by `rssAfterBytes`.
     */
    tolerance?: { readonly jsBytes: number; readonly rssPlateauBytes: number; readonly rssAfterBytes: number }
    /** Peak RSS in the first and second halves of the load. */
    loadHalvesRssBytes?: readonly [number, number]
  }
  fds: {
    baseline?: number
    withIdleSessions?: number
    peakDuringLoad?: number
    peakDuringFlood?: number
    after?: number
    baselineKinds?: Record<string, number>
    afterKinds?: Record<string, number>
  }
  eventLoopDelayMs: { resolutionMs: number } & Partial<Record<"idle" | "load" | "quiet" | "flood", DelaySummary>>
  /** CPU time of each client process, over its whole life. */
  clientCpuSeconds: Record<string, number>
  /** CPU use of the server process by phase. */
  serverCpu: Partial<Record<"warmup" | "open" | "load" | "flood", PhaseCpu>>
  idleSessions: {
    sftpOpened?: number
    ftpOpened?: number
    openSeconds?: number
    openFailures?: ReadonlyArray<Failure>
    /** Sessions answering one request after the load, after the flood. */
    answeredAfterLoad?: { readonly sftp: number; readonly ftp: number; readonly failures: ReadonlyArray<Failure> }
    answeredAfterFlood?: { readonly sftp: number; readonly ftp: number; readonly failures: ReadonlyArray<Failure> }
    keepalivesSent?: number
    keepalivesFailed?: number
    lost?: number
    lostSessions?: ReadonlyArray<Failure>
    failures?: ReadonlyArray<Failure>
  }
  transfers: {
    loadSeconds?: number
    sftpUpload?: TransferSummary
    sftpDownload?: TransferSummary
    ftpUpload?: TransferSummary
    ftpDownload?: TransferSummary
    failures?: ReadonlyArray<Failure>
    /** UploadCompleted events the server published during the load. */
    uploadEvents?: number
    droppedEvents?: { readonly uploads: number; readonly auth: number }
  }
  /** Handshake and STAT latency by phase ("load", "before flood", "flood"). */
  latency: Record<string, LatencyPhase>
  proberLost?: number
  preAuth?: Omit<FloodReport, "type" | "refusedAfterMs" | "droppedAfterMs"> & {
    readonly refusedAfterMs: Summary | undefined
    readonly droppedAfterMs: Summary | undefined
  }
  serverSessionsLeft?: number
  shutdownForced?: number
  serverLog: { entries: ReadonlyArray<LogEntry>; samples: ReadonlyArray<LogSample> }
  timeline: Array<TimelinePoint>
  invariants: Array<Invariant>
  harnessErrors: Array<string>
  ok?: boolean
}

export const summarizeTransfers = (counts: TransferCounts): TransferSummary => ({
  completed: counts.completed,
  failed: counts.failed,
  mismatched: counts.mismatched,
  bytes: counts.bytes,
  durationMs: summarize(counts.durationsMs)
})
