// npm run bench:many: throughput, p99 and RSS over N plugins called round-robin, as a ratio to
// N = 1 in the same trial, on the service's defaults. Each plugin is the same json echo with
// 3,000 internal functions (the size that made a count-bounded cache thrash) and its own
// bytes (a salt custom section), so each is compiled and cached on its own.
//   BENCH_N=1,100,500,1000  BENCH_SECONDS=5  BENCH_TRIALS=3  BENCH_CONNECTIONS=16
//   BENCH_DIST=/other/dist (another build)  BENCH_SERVICE_ENV=K=V,K=V (extra service env)
import { Pool } from 'undici'
import wabtInit from 'wabt'
import { call, quantile, rssMiB, startService, upload } from './service.mts'

const NS = (process.env.BENCH_N ?? '1,100,500,1000').split(',').map(Number)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const TRIALS = Number(process.env.BENCH_TRIALS ?? 3)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16)
const FUNCTIONS = Number(process.env.BENCH_FUNCTIONS ?? 3000)
const SERVICE_ENV = Object.fromEntries((process.env.BENCH_SERVICE_ENV ?? '').split(',').filter(kv => kv.includes('='))
  .map(kv => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))

async function echoWithFunctions (n: number): Promise<Buffer> {
  const wabt = await wabtInit()
  let fns = ''
  for (let i = 0; i < n; i++) fns += `(func $f${i} (param i32) (result i32) (i32.add (i32.mul (local.get 0) (i32.const ${i + 3})) (i32.const 7)))\n`
  const source = `(module (memory (export "memory") 1) ${fns}
    (func (export "execute") (param i32 i32) (result i32 i32) (local.get 0) (local.get 1)))`
  const mod = wabt.parseWat('many.wat', source, { multi_value: true })
  try { return Buffer.from(mod.toBinary({}).buffer) } finally { mod.destroy() }
}

/** The module with a custom section `salt` holding `i`: distinct bytes, same code. */
function salted (base: Buffer, i: number): Buffer {
  const name = Buffer.from('salt')
  const payload = Buffer.concat([Buffer.from([name.length]), name, Buffer.from(String(i))])
  return Buffer.concat([base, Buffer.from([0, payload.length]), payload])
}

interface Phase { n: number, rps: number, p99: number, rss: number }

async function drive (url: string, n: number): Promise<Phase & { pid?: number }> {
  const pool = new Pool(url, { connections: CONNECTIONS, pipelining: 1 })
  const latencies: number[] = []
  let next = 0
  let failures = 0
  const end = performance.now() + SECONDS * 1000
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    while (performance.now() < end) {
      const name = `p${next++ % n}`
      const t0 = performance.now()
      const res = await pool.request({ path: `/plugins/${name}/execute`, method: 'POST', body: '{"x":1}', headers: { 'content-type': 'application/json' } })
      await res.body.dump()
      if (res.statusCode !== 200) failures++
      latencies.push(performance.now() - t0)
    }
  }))
  await pool.close()
  if (failures > 0) throw new Error(`${failures} calls failed at N=${n}`)
  latencies.sort((a, b) => a - b)
  return { n, rps: latencies.length / SECONDS, p99: quantile(latencies, 0.99), rss: 0 }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)] ?? NaN
}

async function main (): Promise<void> {
  const base = await echoWithFunctions(FUNCTIONS)
  const service = await startService({ ...SERVICE_ENV })
  const pid = service.child.pid ?? 0
  try {
    const most = Math.max(...NS)
    const t0 = performance.now()
    for (let i = 0; i < most; i++) await upload(service.url, `p${i}`, salted(base, i))
    console.error(`uploaded ${most} plugins of ${FUNCTIONS} functions (${base.length} bytes each) in ${((performance.now() - t0) / 1000).toFixed(1)} s; RSS ${rssMiB(pid).toFixed(0)} MiB`)
    for (let i = 0; i < most; i++) {
      const r = await call(service.url, `p${i}`, '{}')
      if (r.status !== 200) throw new Error(`p${i}: ${r.status} ${r.text}`)
    }
    const results = new Map<number, Phase[]>(NS.map(n => [n, []]))
    for (let t = 0; t < TRIALS; t++) {
      for (const n of NS) {
        const phase = await drive(service.url, n)
        phase.rss = rssMiB(pid)
        results.get(n)?.push(phase)
        console.error(`trial ${t + 1}/${TRIALS} N=${n}: ${phase.rps.toFixed(0)} req/s, p99 ${phase.p99.toFixed(1)} ms, RSS ${phase.rss.toFixed(0)} MiB`)
      }
    }
    const metrics = await (await fetch(`${service.url}/metrics`)).text()
    const misses = metrics.includes('module_cache_lookups_total') ? (/module_cache_lookups_total\{result="miss"\} (\d+)/.exec(metrics)?.[1] ?? '0') : 'n/a (this build has no such metric)'
    const cacheBytes = /^module_cache_bytes (\d+)/m.exec(metrics)?.[1]
    console.log(`\nN plugins round-robin, ${CONNECTIONS} connections, ${SECONDS} s x ${TRIALS} trials (medians; ratio to N=1 per trial, then median)`)
    console.log('| N | req/s | ratio | p99 ms | p99 ratio | RSS MiB |')
    console.log('| ---: | ---: | ---: | ---: | ---: | ---: |')
    const ones = results.get(NS[0] ?? 1) ?? []
    for (const n of NS) {
      const phases = results.get(n) ?? []
      const ratios = phases.map((p, i) => p.rps / (ones[i]?.rps ?? NaN))
      const p99r = phases.map((p, i) => p.p99 / (ones[i]?.p99 ?? NaN))
      console.log(`| ${n} | ${median(phases.map(p => p.rps)).toFixed(0)} | ${median(ratios).toFixed(2)} | ${median(phases.map(p => p.p99)).toFixed(1)} | ${median(p99r).toFixed(2)} | ${median(phases.map(p => p.rss)).toFixed(0)} |`)
    }
    console.log(`\ncache misses after the first calls: ${misses}; module_cache_bytes ${cacheBytes !== undefined ? (Number(cacheBytes) / 2 ** 20).toFixed(1) + ' MiB' : 'n/a'}`)
  } finally {
    await service.stop()
  }
}

await main()
