// The sandbox call alone, in-process: no HTTP, no worker hop. One call is what a worker does
// per task: instantiate + write input + call + read output (runSandboxed, with its JSON checks).
//   node --no-liftoff bench/sandbox.mts [--rounds=5 --seconds=1]   the table (fresh vs recycled memories, reuse, cpu)
//   node --no-liftoff bench/sandbox.mts --reset [--rounds=5 --seconds=1]
//                                                       new instance vs reset instance per call, by module size
//   node --no-liftoff bench/sandbox.mts --cpu --threads=2 --seconds=5 --body=FILE
//                                                       the CPU-bound plugin on N threads, one JSON line
//                                                       (bench/http.mts compares the service with it)
// Needs `npm run build` (it runs the compiled dist/, as the service does).
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { availableParallelism, cpus } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { setFlagsFromString } from 'node:v8'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import wabtInit from 'wabt'

// The service's tier (src/sandbox/v8-flags.ts), before anything is compiled.
setFlagsFromString('--no-liftoff')

const root = resolve(import.meta.dirname, '..')
const { values } = parseArgs({
  options: { cpu: { type: 'boolean' }, reset: { type: 'boolean' }, threads: { type: 'string' }, seconds: { type: 'string' }, rounds: { type: 'string' }, body: { type: 'string' }, dist: { type: 'string' } }
})
// --dist=/elsewhere/dist: another build (before/after a change); worker threads get it too.
const dist = resolve((workerData as { dist?: string } | null)?.dist ?? values.dist ?? join(root, 'dist'))
const require = createRequire(import.meta.url)
const { ReusedInstances, runSandboxed } = require(join(dist, 'sandbox/instance.js')) as typeof import('../src/sandbox/instance.js')
const { MemoryPool } = require(join(dist, 'sandbox/memory-pool.js')) as typeof import('../src/sandbox/memory-pool.js')
const { inspectModule } = require(join(dist, 'registry/inspect.js')) as typeof import('../src/registry/inspect.js')
const { ResetInstances } = require(join(dist, 'sandbox/reset-instances.js')) as typeof import('../src/sandbox/reset-instances.js')
type SandboxCall = import('../src/sandbox/instance.js').SandboxCall
type MemorySource = import('../src/sandbox/memory-pool.js').MemorySource

const LIMITS = { memoryBytes: 16 * 1024 * 1024, timeoutMs: 5000, tableElements: 10000, outputBytes: 1024 * 1024 }
const SMALL = Buffer.from(JSON.stringify({ text: 'The quick brown fox jumps over the lazy dog', n: [1, 2, 3], nested: { ok: true, ratio: 0.75 } }))

interface Plugin { module: WebAssembly.Module, memory: { initial: number, maximum: number } | undefined, abi: 'json' | 'wasi' | 'extism' }

async function load (fixture: string): Promise<Plugin> {
  const wabt = await wabtInit()
  const mod = wabt.parseWat(`${fixture}.wat`, readFileSync(join(root, 'test/fixtures/plugins', `${fixture}.wat`), 'utf8'), { multi_value: true, bulk_memory: true })
  const bytes = Buffer.from(mod.toBinary({}).buffer)
  mod.destroy()
  return loadBytes(bytes)
}

async function loadBytes (bytes: Uint8Array): Promise<Plugin> {
  const inspection = inspectModule(bytes, LIMITS, undefined, false)
  return { module: await WebAssembly.compile(inspection.rewritten as Uint8Array<ArrayBuffer>), memory: inspection.memory, abi: inspection.abi }
}

function call (p: Plugin, input: Uint8Array, extra: Partial<SandboxCall> = {}): SandboxCall {
  return {
    module: p.module,
    abi: p.abi,
    entry: p.abi === 'wasi' ? '_start' : 'execute',
    input,
    memory: p.memory,
    outputBytes: LIMITS.outputBytes,
    deadline: Date.now() + 60_000,
    wasi: undefined,
    ...extra
  }
}

/** An extism call's kernel grants (nothing granted) and its effects record (emptied before each call). */
function extismParts (entry: string): Partial<SandboxCall> {
  const spec = { config: {}, vars: [], varBytes: 4096, memoryBytes: LIMITS.memoryBytes, logLevel: 0, http: undefined }
  return {
    entry,
    extism: { spec, effects: { varWrites: [], logs: [], logsDropped: 0, http: [] }, http: undefined }
  }
}

/** Every call gets a new WebAssembly.Memory (each reserves ~10 GiB of address space). */
const freshMemories: MemorySource = {
  acquire: (initial, maximum) => new WebAssembly.Memory({ initial, maximum }),
  release: () => {}
}

/** Calls per second of `fn` over about `seconds`, after a short warm-up. */
function rate (fn: () => void, seconds: number): { callsPerSecond: number, perCallUs: number, calls: number } {
  const warm = performance.now() + 200
  while (performance.now() < warm) fn()
  let calls = 0
  const t0 = performance.now()
  const end = t0 + seconds * 1000
  let now = t0
  while (now < end) {
    for (let i = 0; i < 16; i++) fn()
    calls += 16
    now = performance.now()
  }
  const elapsed = (now - t0) / 1000
  return { callsPerSecond: calls / elapsed, perCallUs: elapsed * 1e6 / calls, calls }
}

async function cpuThread (body: Uint8Array, seconds: number): Promise<{ calls: number, seconds: number }> {
  const fnv = await load('bench-fnv')
  const pool = new MemoryPool()
  const r = rate(() => { runSandboxed(call(fnv, body), pool) }, seconds)
  return { calls: r.calls, seconds: r.calls * r.perCallUs / 1e6 }
}

async function cpuMode (threads: number, seconds: number, bodyFile: string | undefined): Promise<void> {
  const body = bodyFile !== undefined ? readFileSync(bodyFile) : SMALL
  const runs = await Promise.all(Array.from({ length: threads }, async () => new Promise<{ calls: number, seconds: number }>((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: { body, seconds, dist }, argv: [] })
    w.once('message', resolve)
    w.once('error', reject)
  })))
  const callsPerSecond = runs.reduce((n, r) => n + r.calls / r.seconds, 0)
  const perCallUs = runs.reduce((n, r) => n + r.seconds * 1e6 / r.calls, 0) / runs.length
  process.stdout.write(`${JSON.stringify({ threads, callsPerSecond, perCallUs })}\n`)
}

/** The 64 KiB body of bench/http.mts: records, as an API would send them. */
function records (bytes: number): Buffer {
  const items = []
  for (let i = 0; Buffer.byteLength(JSON.stringify({ items })) < bytes - 80; i++) {
    items.push({ id: i, name: `item-${i}`, tags: ['alpha', 'beta'], score: i * 1.5, active: i % 2 === 0 })
  }
  return Buffer.from(JSON.stringify({ items }))
}

async function table (seconds: number, rounds: number): Promise<void> {
  // The 100-byte rows use test/fixtures/plugins/echo.wat (1 page, the smallest memory to zero);
  // the 64 KiB rows bench-echo (2 pages, the input fits) and echo.wat again (alloc grows it).
  const echo = await load('bench-echo')
  const echoOnePage = await load('echo')
  const fnv = await load('bench-fnv')
  const wasiEcho = await load('bench-wasi-echo')
  const big = records(64 * 1024)
  const pool = new MemoryPool()
  const reused = typeof ReusedInstances === 'function' ? new ReusedInstances(pool) : undefined
  // Builds from before ReusedInstances existed (--dist) have no reuse row.
  const rows: Array<[string, () => void]> = [
    ['echo, fresh memory per call', () => { runSandboxed(call(echoOnePage, SMALL), freshMemories) }],
    ['echo, recycled memory (MemoryPool)', () => { runSandboxed(call(echoOnePage, SMALL), pool) }],
    ...(reused !== undefined ? [['echo, "instance": "reuse" (no instantiation)', () => { reused.run('echo', call(echo, SMALL)) }] as [string, () => void]] : []),
    ['echo 100 B, bench-echo (2 pages to zero), recycled memory', () => { runSandboxed(call(echo, SMALL), pool) }],
    [`echo ${(big.length / 1024).toFixed(0)} KiB of records, bench-echo, recycled memory`, () => { runSandboxed(call(echo, big), pool) }],
    [`echo ${(big.length / 1024).toFixed(0)} KiB, 1-page plugin: memory grows, so never recycled`, () => { runSandboxed(call(echoOnePage, big), pool) }],
    ['wasi echo, recycled memory', () => { runSandboxed(call(wasiEcho, SMALL), pool) }],
    ['cpu (FNV-1a), recycled memory', () => { runSandboxed(call(fnv, SMALL), pool) }]
  ]
  // Rounds interleave the rows, so a noisy neighbour slows all of them alike; medians.
  const results = rows.map(() => [] as Array<ReturnType<typeof rate>>)
  for (let r = 0; r < rounds; r++) rows.forEach(([, fn], i) => results[i]?.push(rate(fn, seconds)))
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN
  const perSecond = results.map(rs => med(rs.map(r => r.callsPerSecond)))
  console.log(`${availableParallelism()} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}, --no-liftoff, one thread, median of ${rounds} rounds of ${seconds} s`)
  console.log('')
  console.log('| in-process call (instantiate + write input + call + read output) | calls/s | µs per call |')
  console.log('| --- | ---: | ---: |')
  rows.forEach(([label], i) => console.log(`| ${label} | ${(perSecond[i] ?? NaN).toFixed(0)} | ${(1e6 / (perSecond[i] ?? NaN)).toFixed(1)} |`))
  console.log('')
  console.log(`recycled / fresh = **${((perSecond[1] ?? NaN) / (perSecond[0] ?? NaN)).toFixed(1)}x**`)
}

/** Per-call cost of a new instance against a reset one, for modules of growing size (issue 15). */
async function resetTable (seconds: number, rounds: number): Promise<void> {
  const { echoWithFunctions, rustWithFunctions } = await import('./many-functions.mts')
  const example = (path: string): Buffer | undefined => {
    try { return readFileSync(join(root, 'examples', path)) } catch { return undefined }
  }
  const modules: Array<[string, Uint8Array | undefined]> = [
    ['echo (json, 2 pages, 2 functions)', await echoWithFunctions(0)],
    ['echo + 3,000 functions', await echoWithFunctions(3000)],
    ['echo + 30,000 functions', await echoWithFunctions(30000)],
    ['C example (json, examples/c-json)', example('c-json/build/count_vowels.wasm')],
    ['Rust example (wasi, examples/rust-wasi, 207 functions, 17 pages)', example('rust-wasi/build/count_vowels.wasm')],
    ['Rust, 3,303 functions (wasi, bench/many-functions.mts)', rustWithFunctions(3000)],
    ['C Extism example (extism, examples/c-extism)', example('c-extism/build/count_vowels.wasm')],
    ['AssemblyScript Extism example (extism, @extism/as-pdk, examples/as-extism)', example('as-extism/build/count_vowels.wasm')]
  ]
  const pool = new MemoryPool()
  const resets = new ResetInstances(pool)
  const rows: Array<{ label: string, fresh: () => void, reset: () => void }> = []
  for (const [label, bytes] of modules) {
    if (bytes === undefined) { console.error(`skipping ${label}: not built (examples/*/build.sh, rustc)`); continue }
    const p = await loadBytes(bytes)
    const c = call(p, SMALL, p.abi === 'json' ? {} : p.abi === 'wasi' ? { entry: '_start' } : extismParts('count_vowels'))
    const key = label
    const effects = c.extism?.effects
    const empty = (): void => { if (effects !== undefined) { effects.varWrites.length = 0; effects.logs.length = 0; effects.logsDropped = 0; effects.http.length = 0 } }
    rows.push({ label, fresh: () => { empty(); runSandboxed(c, pool) }, reset: () => { empty(); resets.run(key, c) } })
  }
  const fresh = rows.map(() => [] as number[])
  const reset = rows.map(() => [] as number[])
  // Rounds interleave the rows and both ways, so a noisy neighbour slows all alike; medians.
  for (let r = 0; r < rounds; r++) {
    rows.forEach((row, i) => {
      fresh[i]?.push(rate(row.fresh, seconds).perCallUs)
      reset[i]?.push(rate(row.reset, seconds).perCallUs)
    })
  }
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN
  const echoReset = med(reset[0] ?? [])
  const echoFresh = med(fresh[0] ?? [])
  console.log(`${availableParallelism()} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}, --no-liftoff, one thread, median of ${rounds} rounds of ${seconds} s`)
  console.log('')
  console.log('| module | new instance, µs/call | reset instance, µs/call | new / reset | reset / echo reset | reset / echo new |')
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |')
  rows.forEach((row, i) => {
    const f = med(fresh[i] ?? [])
    const z = med(reset[i] ?? [])
    console.log(`| ${row.label} | ${f.toFixed(1)} | ${z.toFixed(1)} | ${(f / z).toFixed(1)}x | ${(z / echoReset).toFixed(2)} | ${(z / echoFresh).toFixed(2)} |`)
  })
  console.log('')
  console.log(`resets: ${JSON.stringify(resets.stats)}`)
}

if (!isMainThread) {
  const { body, seconds } = workerData as { body: Uint8Array, seconds: number }
  cpuThread(body, seconds).then(r => parentPort?.postMessage(r), (err: unknown) => { throw err })
} else {
  const seconds = Number(values.seconds ?? 1)
  const rounds = Number(values.rounds ?? 5)
  const run = values.cpu === true ? cpuMode(Number(values.threads ?? 1), seconds, values.body) : values.reset === true ? resetTable(seconds, rounds) : table(seconds, rounds)
  run.catch((err: unknown) => { console.error(err); process.exitCode = 1 })
}
