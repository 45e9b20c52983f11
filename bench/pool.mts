// The worker hop alone: the real WorkerPool (dist/workers/pool.js) driven in-process with a
// fixed number of calls in flight, no HTTP. What bench/http.mts measures minus fastify.
//   node --no-liftoff bench/pool.mts [--plugin=bench-echo|bench-fnv|bench-wasi-echo] [--inflight=16] [--seconds=3] [--bytes=N]
// Needs `npm run build`.
import { readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { availableParallelism } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { performance } from 'node:perf_hooks'
import { setFlagsFromString } from 'node:v8'
import wabtInit from 'wabt'

setFlagsFromString('--no-liftoff')

const root = resolve(import.meta.dirname, '..')
const require = createRequire(import.meta.url)
// BENCH_DIST=/elsewhere/dist: another build of the service (before/after a change).
const dist = process.env.BENCH_DIST ?? join(root, 'dist')
const { WorkerPool } = require(join(dist, 'workers/pool.js')) as typeof import('../src/workers/pool.js')
const { inspectModule } = require('../dist/registry/inspect.js') as typeof import('../src/registry/inspect.js')

const { values } = parseArgs({
  options: {
    plugin: { type: 'string' },
    inflight: { type: 'string' },
    seconds: { type: 'string' },
    bytes: { type: 'string' },
    workers: { type: 'string' },
    slab: { type: 'boolean' },
    'worker-file': { type: 'string' }
  }
})
const fixture = values.plugin ?? 'bench-echo'
const inflight = Number(values.inflight ?? 16)
const seconds = Number(values.seconds ?? 3)
const workers = Number(values.workers ?? availableParallelism())
const LIMITS = { memoryBytes: 16 * 1024 * 1024, timeoutMs: 5000, tableElements: 10000, outputBytes: 16 * 1024 * 1024 }

async function main (): Promise<void> {
  const wabt = await wabtInit()
  const mod = wabt.parseWat('p.wat', readFileSync(join(root, 'test/fixtures/plugins', `${fixture}.wat`), 'utf8'), { multi_value: true, bulk_memory: true })
  const inspection = inspectModule(Buffer.from(mod.toBinary({}).buffer), LIMITS, undefined, false)
  const module = await WebAssembly.compile(inspection.rewritten as Uint8Array<ArrayBuffer>)
  const text = values.bytes !== undefined ? JSON.stringify({ s: 'x'.repeat(Number(values.bytes) - 8) }) : JSON.stringify({ text: 'The quick brown fox jumps over the lazy dog', n: [1, 2, 3], nested: { ok: true, ratio: 0.75 } })
  // --worker-file: another piscina entry (e.g. one that only does the start handshake), to
  // tell the pool's own cost from the sandbox's.
  const pool = new WorkerPool({ workers, queueMax: 1024, queueTimeoutMs: 10_000, pluginConcurrency: 1024, ...(values['worker-file'] !== undefined ? { workerFile: resolve(values['worker-file']) } : {}) })
  while (pool.threads < workers) await new Promise(resolve => setTimeout(resolve, 20))
  const one = async (): Promise<void> => {
    await pool.execute({
      plugin: 'p',
      module,
      abi: inspection.abi,
      entry: inspection.abi === 'wasi' ? '_start' : 'execute',
      // What the execute route hands over: a buffer that owns its ArrayBuffer (--slab: a view
      // into Node's shared Buffer slab, what the route passed before it copied small bodies).
      input: values.slab === true ? Buffer.from(text) : new Uint8Array(Buffer.from(text)),
      memory: inspection.memory,
      timeoutMs: 5000,
      outputBytes: LIMITS.outputBytes,
      wasi: inspection.abi === 'wasi' ? { args: [], env: {}, preopens: [] } : undefined
    })
  }
  const runFor = async (ms: number): Promise<number> => {
    let calls = 0
    const end = performance.now() + ms
    await Promise.all(Array.from({ length: inflight }, async () => {
      while (performance.now() < end) { await one(); calls++ }
    }))
    return calls
  }
  await runFor(500)
  const before = threadTimes()
  const elu = performance.eventLoopUtilization()
  const t0 = performance.now()
  const calls = await runFor(seconds * 1000)
  const elapsed = (performance.now() - t0) / 1000
  const mainElu = performance.eventLoopUtilization(elu).utilization
  const after = threadTimes()
  // CPU µs per call by thread name, from /proc (Linux): where the time of a call goes.
  const cpu: Record<string, number> = {}
  for (const [tid, t] of after) {
    const d = t.ticks - (before.get(tid)?.ticks ?? 0)
    if (d > 0) cpu[t.name] = +((cpu[t.name] ?? 0) + d * 1e6 / 100 / calls).toFixed(1)
  }
  console.log(JSON.stringify({ fixture, workers, inflight, bytes: text.length, callsPerSecond: Math.round(calls / elapsed), perCallUs: +(elapsed * 1e6 / calls).toFixed(1), mainElu: +mainElu.toFixed(2), cpuUsPerCall: cpu }))
  await pool.close()
}

/** utime + stime in clock ticks (USER_HZ = 100) of every thread of this process; the main thread is named "main". */
function threadTimes (): Map<string, { name: string, ticks: number }> {
  const out = new Map<string, { name: string, ticks: number }>()
  try {
    for (const tid of readdirSync('/proc/self/task')) {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const name = tid === String(process.pid) ? 'main' : readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim()
      out.set(tid, { name, ticks: Number(fields[11]) + Number(fields[12]) })
    }
  } catch {}
  return out
}

main().catch((err: unknown) => { console.error(err); process.exitCode = 1 })
