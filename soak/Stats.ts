/**
 * Percentiles of latency samples (nearest rank: the p-th percentile is a value
 * that was really observed), rounded to 0.01 ms for the report.
 */

export interface Summary {
  readonly count: number
  readonly min: number
  readonly p50: number
  readonly p99: number
  readonly max: number
}

const round = (value: number) => Math.round(value * 100) / 100

export const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!

/** The summary of `values`, or undefined when there are none. */
export const summarize = (values: ReadonlyArray<number>): Summary | undefined => {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  return {
    count: sorted.length,
    min: round(sorted[0]!),
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted[sorted.length - 1]!)
  }
}
