// Deadline overshoot: how long after `timeoutMs` a runaway call's 504 arrives, over real
// HTTP against `node dist/main.js`. A benchmark, not a test: run `npm run bench:deadline`
// (BENCH_DIST=/other/build/dist to run another build).
import { call, quantile, startService, upload, watFixture } from './service.mts'

const TIMEOUT_MS = 250
const CALLS = Number(process.env.CALLS ?? 30)

// BREAKER_THRESHOLD=0: the breaker would pause the plugin after a few kills; every call here must be killed.
const service = await startService({ WORKERS: '2', BREAKER_THRESHOLD: '0' })
try {
  await upload(service.url, 'hostile', await watFixture('hostile'), { limits: { timeoutMs: TIMEOUT_MS } })
  const results: Record<string, number[]> = {}
  for (const fn of ['loop', 'fill_loop']) {
    const overshoot: number[] = []
    for (let i = 0; i < CALLS; i++) {
      const t0 = performance.now()
      const res = await call(service.url, 'hostile', '{}', `?function=${fn}`)
      if (res.status !== 504) throw new Error(`${fn}: expected 504, got ${res.status}`)
      overshoot.push(performance.now() - t0 - TIMEOUT_MS)
    }
    results[fn] = overshoot.sort((a, b) => a - b)
  }
  const q = (xs: number[], p: number): string => quantile(xs, p).toFixed(1)
  console.log(`deadline overshoot over real HTTP, timeoutMs=${TIMEOUT_MS}, ${CALLS} calls each (ms after the deadline until the 504 arrived)`)
  for (const [fn, xs] of Object.entries(results)) {
    console.log(`${fn.padEnd(10)} p50 ${q(xs, 0.5)}  p90 ${q(xs, 0.9)}  p99 ${q(xs, 0.99)}  max ${q(xs, 1)}`)
  }
} finally {
  await service.stop()
}
