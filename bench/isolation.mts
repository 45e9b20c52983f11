// Isolation: throughput of a healthy plugin while a client hammers a runaway one, as a ratio
// of the same without it, in one run (trials interleaved). `npm run bench:isolation`.
//   ISOLATION_SECONDS=5 ISOLATION_TRIALS=3
import { execFile } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { call, quantile, root, startService, upload, watFixture } from './service.mts'
import type { Service } from './service.mts'

const SECONDS = Number(process.env.ISOLATION_SECONDS ?? 5)
const TRIALS = Number(process.env.ISOLATION_TRIALS ?? 3)
const HEALTHY_CLIENTS = 8
const HAMMER_CLIENTS = 4

interface Trial { rps: number, p50: number, p99: number, runawayCalls: number, runawayStatuses: Record<string, number> }

async function trial (service: Service, hammer: boolean): Promise<Trial> {
  const end = performance.now() + SECONDS * 1000
  const latencies: number[] = []
  const statuses: Record<string, number> = {}
  let runawayCalls = 0
  const healthy = Array.from({ length: HEALTHY_CLIENTS }, async () => {
    while (performance.now() < end) {
      const t0 = performance.now()
      const res = await call(service.url, 'echo', '{"n":1}')
      if (res.status !== 200) throw new Error(`healthy call failed: ${res.status} ${res.text}`)
      latencies.push(performance.now() - t0)
    }
  })
  // The hostile client runs in its own process and ignores retry-after.
  const runaway = hammer
    ? [new Promise<void>((resolve, reject) => {
        execFile(process.execPath, [join(root, 'bench/hammer.mts'), service.url, String(SECONDS), String(HAMMER_CLIENTS)], (err, stdout) => {
          if (err !== null) { reject(err); return }
          Object.assign(statuses, JSON.parse(stdout) as Record<string, number>)
          runawayCalls = Object.values(statuses).reduce((a, b) => a + b, 0)
          resolve()
        })
      })]
    : []
  await Promise.all([...healthy, ...runaway])
  latencies.sort((a, b) => a - b)
  return { rps: latencies.length / SECONDS, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), runawayCalls, runawayStatuses: statuses }
}

const results: Record<string, Record<string, Trial[]>> = {}
for (const [label, env] of [['breaker on (default)', {}], ['breaker off', { BREAKER_THRESHOLD: '0' }]] as const) {
  const service = await startService({ WORKERS: '2', ...env })
  try {
    await upload(service.url, 'echo', await watFixture('echo'))
    await upload(service.url, 'runaway', await watFixture('hostile'), { limits: { timeoutMs: 100 } })
    await trial(service, false) // warm-up
    const byMode: Record<string, Trial[]> = { alone: [], hammered: [] }
    for (let i = 0; i < TRIALS; i++) {
      byMode.alone?.push(await trial(service, false))
      byMode.hammered?.push(await trial(service, true))
    }
    results[label] = byMode
  } finally {
    await service.stop()
  }
}

const median = (xs: number[]): number => quantile([...xs].sort((a, b) => a - b), 0.5)
console.log(`\n## Isolation: healthy echo (${HEALTHY_CLIENTS} clients) vs a runaway plugin hammered by ${HAMMER_CLIENTS} clients (timeoutMs 100), WORKERS=2, ${TRIALS} x ${SECONDS} s trials, medians\n`)
console.log('| breaker | healthy alone req/s | healthy hammered req/s | ratio | p99 alone ms | p99 hammered ms | runaway calls (statuses) |')
console.log('| --- | --- | --- | --- | --- | --- | --- |')
for (const [label, byMode] of Object.entries(results)) {
  const alone = byMode.alone ?? []
  const hammered = byMode.hammered ?? []
  const ratio = median(hammered.map(t => t.rps)) / median(alone.map(t => t.rps))
  const statuses = hammered.map(t => JSON.stringify(t.runawayStatuses)).join(' ')
  console.log(`| ${label} | ${median(alone.map(t => t.rps)).toFixed(0)} | ${median(hammered.map(t => t.rps)).toFixed(0)} | ${ratio.toFixed(2)} | ${median(alone.map(t => t.p99)).toFixed(1)} | ${median(hammered.map(t => t.p99)).toFixed(1)} | ${statuses} |`)
}
mkdirSync(join(root, 'bench/results'), { recursive: true })
writeFileSync(join(root, 'bench/results/isolation.json'), JSON.stringify(results, null, 2))
