/**
 * Event-loop delay of this process (the server's), one histogram per phase, from
 * `perf_hooks.monitorEventLoopDelay`. The histogram records the time between
 * consecutive firings of a timer set to `resolutionMs`, so the timer's own
 * interval is subtracted: the figures are how late the loop was.
 */
import { monitorEventLoopDelay } from "node:perf_hooks"

export const resolutionMs = 2

export interface DelaySummary {
  readonly samples: number
  readonly p50: number
  readonly p99: number
  readonly max: number
  readonly mean: number
}

const late = (ns: number) => Math.max(0, Math.round((ns / 1e6 - resolutionMs) * 100) / 100)

/** Starts measuring; the returned function stops and summarises (milliseconds). */
export const measureDelay = (): (() => DelaySummary) => {
  const histogram = monitorEventLoopDelay({ resolution: resolutionMs })
  histogram.enable()
  return () => {
    histogram.disable()
    if (histogram.count === 0) return { samples: 0, p50: 0, p99: 0, max: 0, mean: 0 }
    return {
      samples: histogram.count,
      p50: late(histogram.percentile(50)),
      p99: late(histogram.percentile(99)),
      max: late(histogram.max),
      mean: late(histogram.mean)
    }
  }
}
