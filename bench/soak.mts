// Soak: thousands of deadline kills and traps against the real service, with the deadline
// overshoot of every kill and the server's fds and RSS sampled along the way.
// `npm run soak` (SOAK_KILLS=10000 SOAK_TRAPS=10000 SOAK_WARMUP=5000 by default). A benchmark, not a test.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { call, fds, quantile, root, rssMiB, startService, upload, watFixture } from './service.mts'

const KILLS = Number(process.env.SOAK_KILLS ?? 10_000)
const TRAPS = Number(process.env.SOAK_TRAPS ?? 10_000)
const WARMUP = Number(process.env.SOAK_WARMUP ?? 5_000)
const TIMEOUT_MS = 100
const CONCURRENCY = 2

// The breaker would pause a plugin after 3 kills; the soak wants every kill to happen.
const service = await startService({ WORKERS: '2', BREAKER_THRESHOLD: '0', QUEUE_TIMEOUT_MS: '10000' })
const pid = service.child.pid ?? 0
try {
  const burners: Array<[string, Buffer, string]> = [
    ['loop', await watFixture('hostile'), '?function=loop'],
    ['fill-loop', await watFixture('hostile'), '?function=fill_loop'],
    ['start-loop', await watFixture('start-loop'), ''],
    ['poll-forever', await watFixture('wasi-poll-forever'), '']
  ]
  for (const [name, bytes] of burners) await upload(service.url, name, bytes, { limits: { timeoutMs: TIMEOUT_MS } })
  await upload(service.url, 'traps', await watFixture('hostile'))
  const samples: Array<{ phase: string, done: number, fds: number, rssMiB: number }> = []
  const sample = (phase: string, done: number): void => { samples.push({ phase, done, fds: fds(pid), rssMiB: Math.round(rssMiB(pid)) }) }
  sample('cold', 0)
  // The baseline is taken after a warm-up of answers and traps from as many clients as the
  // soak: a fresh process's V8 heaps (main thread and each worker) grow to their working
  // size over the first few thousand requests, whatever the calls do, which would read as a
  // leak. The cold figure is kept beside it.
  const queries = ['', '?function=unreachable', '?function=recurse']
  let warmed = 0
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    for (let i = warmed++; i < WARMUP; i = warmed++) {
      const res = await call(service.url, 'traps', '{}', queries[i % queries.length])
      if (res.status !== (i % queries.length === 0 ? 200 : 422)) throw new Error(`warm-up: got ${res.status} ${res.text}`)
    }
  }))
  sample('warm', WARMUP)

  const overshoot: Record<string, number[]> = {}
  let next = 0
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    for (let i = next++; i < KILLS; i = next++) {
      const [name, , query] = burners[i % burners.length] ?? burners[0]!
      const res = await call(service.url, name, '{}', query)
      if (res.status !== 504) throw new Error(`${name}: expected 504, got ${res.status} ${res.text}`)
      const details = JSON.parse(res.text).details as { ranMs: number, timeoutMs: number }
      ;(overshoot[name] ??= []).push(details.ranMs - details.timeoutMs)
      if ((i + 1) % 1000 === 0) sample('kills', i + 1)
    }
  }))
  sample('after kills', KILLS)
  next = 0
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    for (let i = next++; i < TRAPS; i = next++) {
      const res = await call(service.url, 'traps', '{}', i % 2 === 0 ? '?function=unreachable' : '?function=recurse')
      if (res.status !== 422) throw new Error(`trap: expected 422, got ${res.status}`)
      if ((i + 1) % 1000 === 0) sample('traps', i + 1)
    }
  }))
  sample('after traps', TRAPS)

  const all = Object.values(overshoot).flat().sort((a, b) => a - b)
  console.log(`\n## Soak: ${KILLS} deadline kills (timeoutMs ${TIMEOUT_MS}), ${TRAPS} traps, WORKERS=2\n`)
  console.log('Deadline overshoot (ms the thread ran past timeoutMs before it was stopped, from details.ranMs):\n')
  console.log('| burner | calls | p50 | p99 | max |\n| --- | --- | --- | --- | --- |')
  for (const [name, xs] of [...Object.entries(overshoot), ['all', all] as const]) {
    const s = [...xs].sort((a, b) => a - b)
    console.log(`| ${name} | ${s.length} | ${quantile(s, 0.5)} | ${quantile(s, 0.99)} | ${s[s.length - 1] ?? NaN} |`)
  }
  console.log('\nServer process fds and RSS:\n\n| phase | done | fds | RSS MiB |\n| --- | --- | --- | --- |')
  for (const s of samples) console.log(`| ${s.phase} | ${s.done} | ${s.fds} | ${s.rssMiB} |`)
  mkdirSync(join(root, 'bench/results'), { recursive: true })
  writeFileSync(join(root, 'bench/results/soak.json'), JSON.stringify({ kills: KILLS, traps: TRAPS, overshoot, samples }, null, 2))
} finally {
  await service.stop()
}
