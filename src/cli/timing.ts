// `run --loop N`: a summary of N call durations, for a plugin author comparing two builds.
// A figure from one laptop run, not a benchmark: bench/ measures the service.

function quantile (sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN
}

const ms = (n: number): string => `${n.toFixed(3)} ms`

/**
 * One line: calls, mean, min, p50, p99, max of the time inside the worker (instantiate, run,
 * read the output) and the median round trip through the pool (queue, thread hop, copies).
 */
export function loopSummary (workerMs: number[], roundTripMs: number[], compileMs: number): string {
  const sorted = [...workerMs].sort((a, b) => a - b)
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
  return `${sorted.length} calls: mean ${ms(mean(sorted))}, min ${ms(sorted[0] ?? NaN)}, p50 ${ms(quantile(sorted, 0.5))}, ` +
    `p99 ${ms(quantile(sorted, 0.99))}, max ${ms(sorted[sorted.length - 1] ?? NaN)} in the worker; ` +
    `round trip through the pool p50 ${ms(quantile([...roundTripMs].sort((a, b) => a - b), 0.5))}; compile ${ms(compileMs)} (once)`
}
