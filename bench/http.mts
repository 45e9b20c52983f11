// The service against its ceiling, over real HTTP, in one run: `npm run bench`.
//
// Starts `node --no-liftoff --max-semi-space-size=16 dist/main.js` (the service, default
// WORKERS) and bench/ceiling.mts (a plain fastify route that parses and returns the same JSON
// body) on 127.0.0.1, then drives them with autocannon from a third process (bench/load.mts),
// trials interleaved (ceiling, echo, ceiling, cpu, ... repeated), so that a noisy, shared
// machine moves both sides alike. Each scenario's ratio is the median, over trials, of its
// req/s over the ceiling trial run just before it with the same body. The CPU-bound plugin is
// also run in-process, without the service, by bench/sandbox.mts with as many threads as the
// service has workers. The floor (bench/floor.mts) is the ceiling's route plus a piscina round
// trip and nothing else: the most a design with a worker hop per call can reach here.
// Writes bench/results/latest.json and prints a markdown table.
//   BENCH_SECONDS=5 BENCH_TRIALS=3 BENCH_ONLY=echo,cpu WORKERS=2 LOG_LEVEL=warn
//   BENCH_DIST=/elsewhere/dist: run another build of the service (before/after a change);
//   BENCH_OUT=file.json: where the JSON result goes (default bench/results/latest.json)
//   BENCH_SERVICE_ENV=NAME=value,...: more environment for the service (e.g. QUEUE_MAX=512)
import { execFileSync, spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { FormData, request } from 'undici'
import wabtInit from 'wabt'
import { rustWithFunctions } from './many-functions.mts'

const root = resolve(import.meta.dirname, '..')
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const TRIALS = Number(process.env.BENCH_TRIALS ?? 3)
const CONNECTIONS = 16
const WORKERS = Number(process.env.WORKERS ?? availableParallelism())
const LOG_LEVEL = process.env.LOG_LEVEL ?? 'warn'
const ONLY = process.env.BENCH_ONLY?.split(',')
const DIST = resolve(process.env.BENCH_DIST ?? join(root, 'dist'))
const OUT = resolve(process.env.BENCH_OUT ?? join(root, 'bench/results/latest.json'))
const SERVICE_ENV = Object.fromEntries((process.env.BENCH_SERVICE_ENV ?? '').split(',').filter(kv => kv.includes('=')).map(kv => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))

interface Trial { rps: number, p50: number, p90: number, p99: number, max: number, ok: number, non2xx: number, errors: number, mainCpuUs?: number }
/** `build`: bytes made at run time instead of a fixture (undefined: the toolchain is missing). */
interface Plugin { name: string, fixture: string, manifest: Record<string, unknown>, build?: () => Buffer | undefined }
/**
 * `floor`: bench/floor.mts instead of the service (a piscina round trip, no wasm). `sdk`: the
 * same Extism plugin through bench/extism-sdk.mts (the Extism JS SDK behind a fastify route).
 */
interface Scenario { id: string, label: string, plugin: string, body: Buffer, contentType?: string, floor?: boolean, sdk?: 'per-call' | 'worker' }

/** The count-vowels Extism plugin (examples/c-extism), built by its own build.sh. */
const extismWasm = (): Buffer => {
  execFileSync('bash', [join(root, 'examples/c-extism/build.sh')], { stdio: ['ignore', 'ignore', 'inherit'] })
  return readFileSync(join(root, 'examples/c-extism/build/count_vowels.wasm'))
}

const plugins: Plugin[] = [
  { name: 'echo', fixture: 'bench-echo', manifest: {} },
  { name: 'fnv', fixture: 'bench-fnv', manifest: {} },
  { name: 'wasi-echo', fixture: 'bench-wasi-echo', manifest: {} },
  { name: 'echo-reuse', fixture: 'bench-echo', manifest: { instance: 'reuse' } },
  // Issue 15: a Rust plugin of thousands of functions, served by a reset instance.
  { name: 'rust-many', fixture: 'rust-many-3000', manifest: {}, build: () => rustWithFunctions(3000) },
  { name: 'extism-vowels', fixture: 'count_vowels', manifest: { abi: 'extism', entry: 'count_vowels' }, build: extismWasm }
]

const small = Buffer.from(JSON.stringify({ text: 'The quick brown fox jumps over the lazy dog', n: [1, 2, 3], nested: { ok: true, ratio: 0.75 } }))
const big = ((): Buffer => {
  const items = []
  for (let i = 0; Buffer.byteLength(JSON.stringify({ items })) < 64 * 1024 - 80; i++) {
    items.push({ id: i, name: `item-${i}`, tags: ['alpha', 'beta'], score: i * 1.5, active: i % 2 === 0 })
  }
  return Buffer.from(JSON.stringify({ items }))
})()

const scenarios: Scenario[] = ([
  { id: 'echo', label: 'echo (json ABI)', plugin: 'echo', body: small },
  { id: 'cpu', label: 'cpu (FNV-1a, fixed work)', plugin: 'fnv', body: small },
  { id: 'echo-64k', label: `echo, ${(big.length / 1024).toFixed(0)} KiB input`, plugin: 'echo', body: big },
  { id: 'wasi-echo', label: 'wasi echo (stdin -> stdout)', plugin: 'wasi-echo', body: small },
  { id: 'echo-reuse', label: 'echo, "instance": "reuse"', plugin: 'echo-reuse', body: small },
  { id: 'rust-many', label: 'Rust, 3,303 functions (wasi), reset instance', plugin: 'rust-many', body: small },
  { id: 'floor', label: 'floor: piscina round trip, no wasm', plugin: '', body: small, floor: true },
  { id: 'extism', label: 'extism count-vowels (c-extism), service', plugin: 'extism-vowels', body: small },
  { id: 'extism-sdk-call', label: 'extism count-vowels, Extism JS SDK, a plugin per call', plugin: '', body: small, sdk: 'per-call' },
  { id: 'extism-sdk-worker', label: 'extism count-vowels, Extism JS SDK, one plugin, runInWorker', plugin: '', body: small, sdk: 'worker' }
] satisfies Scenario[] as Scenario[]).filter(s => ONLY === undefined || ONLY.includes(s.id))

async function compileFixture (wabt: Awaited<ReturnType<typeof wabtInit>>, name: string): Promise<Buffer> {
  const source = readFileSync(join(root, 'test/fixtures/plugins', `${name}.wat`), 'utf8')
  const mod = wabt.parseWat(`${name}.wat`, source, { multi_value: true, bulk_memory: true })
  try { return Buffer.from(mod.toBinary({}).buffer) } finally { mod.destroy() }
}

/** The service's flags (package.json `start`), for the ceiling too: the same process kind. */
const SERVER_FLAGS = ['--no-liftoff', '--max-semi-space-size=16']

function node (args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [...SERVER_FLAGS, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
}

async function firstLine (child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      text += chunk.toString()
      const nl = text.indexOf('\n')
      if (nl >= 0) resolve(text.slice(0, nl))
    })
    child.once('exit', code => reject(new Error(`exited with ${code} before printing`)))
  })
}

async function waitReady (url: string): Promise<void> {
  for (let i = 0; ; i++) {
    try { const r = await request(`${url}/readyz`); await r.body.dump(); if (r.statusCode === 200) return } catch {}
    if (i > 400) throw new Error(`${url} did not become ready`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

async function upload (url: string, p: Plugin, wasm: Buffer): Promise<boolean> {
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(wasm)]), `${p.fixture}.wasm`)
  form.append('manifest', JSON.stringify({ name: p.name, ...p.manifest }))
  const res = await request(`${url}/plugins`, { method: 'POST', body: form })
  const text = await res.body.text()
  if (res.statusCode === 201) return true
  console.error(`upload of ${p.name}: ${res.statusCode} ${text}`)
  return false
}

async function check (url: string, body: Buffer, contentType = 'application/json'): Promise<void> {
  const res = await request(url, { method: 'POST', body, headers: { 'content-type': contentType } })
  const text = await res.body.text()
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${text.slice(0, 200)}`)
}

function runNode (args: string[]): string {
  return execFileSync(process.execPath, ['--no-liftoff', ...args], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
}

/** CPU time (user + system, in clock ticks of 10 ms) of a process's main thread so far. */
function mainThreadTicks (pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${pid ?? 0}/task/${pid ?? 0}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return NaN
  }
}

/**
 * One trial. With `server`, also the CPU its main thread spent per request: the thread every
 * request crosses (HTTP parsing, routing, the hop to a worker and back, the reply).
 */
function load (url: string, bodyFile: string, seconds = SECONDS, connections = CONNECTIONS, server?: ChildProcess): Trial {
  const before = mainThreadTicks(server?.pid)
  const trial = JSON.parse(runNode([join(root, 'bench/load.mts'), JSON.stringify({ url, bodyFile, seconds, connections })])) as Trial
  const ticks = mainThreadTicks(server?.pid) - before
  if (server !== undefined && Number.isFinite(ticks) && trial.ok > 0) trial.mainCpuUs = ticks * 10_000 / (trial.ok + trial.non2xx)
  return trial
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] ?? NaN : ((s[m - 1] ?? NaN) + (s[m] ?? NaN)) / 2
}

async function main (): Promise<void> {
  const wabt = await wabtInit()
  const wasm = new Map<string, Buffer>()
  for (const p of plugins) {
    if (p.build === undefined) { wasm.set(p.fixture, await compileFixture(wabt, p.fixture)); continue }
    const bytes = p.build()
    if (bytes !== undefined) wasm.set(p.fixture, bytes)
  }
  const work = mkdtempSync(join(tmpdir(), 'wph-bench-'))
  const port = await freePort()
  const service = node([join(DIST, 'main.js')], {
    HOST: '127.0.0.1', PORT: String(port), DATA_DIR: join(work, 'data'), LOG_LEVEL, WORKERS: String(WORKERS), ...SERVICE_ENV
  })
  const ceiling = node([join(root, 'bench/ceiling.mts')], { PORT: '0' })
  const floor = node([join(root, 'bench/floor.mts')], { PORT: '0', WORKERS: String(WORKERS) })
  const sdk = scenarios.some(s => s.sdk !== undefined)
    ? node([join(root, 'bench/extism-sdk.mts')], { PORT: '0', WASM: join(root, 'examples/c-extism/build/count_vowels.wasm'), FUNCTION: 'count_vowels' })
    : undefined
  try {
    const sdkUrl = sdk === undefined ? '' : `http://127.0.0.1:${(JSON.parse(await firstLine(sdk)) as { port: number }).port}`
    const ceilingPort = (JSON.parse(await firstLine(ceiling)) as { port: number }).port
    const floorUrl = `http://127.0.0.1:${(JSON.parse(await firstLine(floor)) as { port: number }).port}/echo`
    const target = (s: Scenario): string => s.sdk !== undefined ? `${sdkUrl}/${s.sdk}` : s.floor === true ? floorUrl : `${serviceUrl}/plugins/${s.plugin}/execute`
    const serverOf = (s: Scenario): ChildProcess | undefined => s.sdk !== undefined ? sdk : s.floor === true ? floor : service
    const ceilingUrl = `http://127.0.0.1:${ceilingPort}/echo`
    const serviceUrl = `http://127.0.0.1:${port}`
    await waitReady(serviceUrl)
    for (const p of plugins) {
      const bytes = wasm.get(p.fixture)
      if (bytes === undefined || !await upload(serviceUrl, p, bytes)) {
        const i = scenarios.findIndex(s => s.plugin === p.name)
        if (i >= 0) { console.error(`skipping scenario ${scenarios[i]?.id ?? ''}`); scenarios.splice(i, 1) }
      }
    }
    const bodies = new Map<Scenario, string>()
    for (const s of scenarios) {
      const file = join(work, `${s.id}.json`)
      writeFileSync(file, s.body)
      bodies.set(s, file)
      await check(target(s), s.body)
      await check(ceilingUrl, s.body)
    }

    // Warm-up (JIT, memory pools, connection setup): one short trial of each, not recorded.
    for (const s of scenarios) {
      load(ceilingUrl, bodies.get(s) as string, 1)
      load(target(s), bodies.get(s) as string, 1)
    }

    const results = new Map<string, { trials: Trial[], ceilings: Trial[], ratios: number[] }>()
    const inProcess: Array<{ callsPerSecond: number, perCallUs: number }> = []
    const sequential: Array<{ serviceP50Ms: number, inProcessMs: number }> = []
    for (let t = 0; t < TRIALS; t++) {
      for (const s of scenarios) {
        const c = load(ceilingUrl, bodies.get(s) as string, SECONDS, CONNECTIONS, ceiling)
        const r = load(target(s), bodies.get(s) as string, SECONDS, CONNECTIONS, serverOf(s))
        if (r.non2xx > 0 || r.errors > 0) console.error(`${s.id}: ${r.non2xx} non-2xx, ${r.errors} errors`)
        const entry = results.get(s.id) ?? { trials: [], ceilings: [], ratios: [] }
        entry.trials.push(r)
        entry.ceilings.push(c)
        entry.ratios.push(r.rps / c.rps)
        results.set(s.id, entry)
        console.error(`trial ${t + 1}/${TRIALS} ${s.id.padEnd(11)} ${r.rps.toFixed(0).padStart(6)} req/s p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} ms | ceiling ${c.rps.toFixed(0)} req/s | ratio ${(r.rps / c.rps).toFixed(2)} | main-thread CPU per request ${(r.mainCpuUs ?? NaN).toFixed(0)} / ${(c.mainCpuUs ?? NaN).toFixed(0)} µs`)
        if (s.id === 'cpu') {
          // The same wasm in-process, as many threads as the service has workers, same body.
          const out = runNode([join(root, 'bench/sandbox.mts'), '--cpu', `--dist=${DIST}`, `--threads=${WORKERS}`, `--seconds=${SECONDS}`, `--body=${bodies.get(s) as string}`])
          const ip = JSON.parse(out) as { callsPerSecond: number, perCallUs: number }
          inProcess.push(ip)
          console.error(`trial ${t + 1}/${TRIALS} cpu in-process ${ip.callsPerSecond.toFixed(0)} calls/s (${WORKERS} threads), ${ip.perCallUs.toFixed(0)} µs per call`)
          // One call at a time: the service's latency against one in-process call, which a
          // neighbour's load disturbs less than a throughput race on 2 shared cores.
          const one = load(`${serviceUrl}/plugins/${s.plugin}/execute`, bodies.get(s) as string, SECONDS, 1)
          const single = JSON.parse(runNode([join(root, 'bench/sandbox.mts'), '--cpu', `--dist=${DIST}`, '--threads=1', `--seconds=${SECONDS}`, `--body=${bodies.get(s) as string}`])) as { callsPerSecond: number, perCallUs: number }
          sequential.push({ serviceP50Ms: one.p50, inProcessMs: single.perCallUs / 1000 })
          console.error(`trial ${t + 1}/${TRIALS} cpu one at a time: service p50 ${one.p50.toFixed(2)} ms, in-process ${(single.perCallUs / 1000).toFixed(2)} ms per call`)
        }
      }
    }

    const summary = scenarios.map(s => {
      const e = results.get(s.id) as { trials: Trial[], ceilings: Trial[], ratios: number[] }
      const p50 = median(e.trials.map(x => x.p50))
      const p99 = median(e.trials.map(x => x.p99))
      return {
        id: s.id,
        label: s.label,
        bodyBytes: s.body.length,
        rps: median(e.trials.map(x => x.rps)),
        p50,
        p99,
        p99OverP50: p99 / p50,
        ceilingRps: median(e.ceilings.map(x => x.rps)),
        ceilingP50: median(e.ceilings.map(x => x.p50)),
        ceilingP99: median(e.ceilings.map(x => x.p99)),
        ratio: median(e.ratios),
        mainCpuUs: median(e.trials.map(x => x.mainCpuUs ?? NaN)),
        ceilingMainCpuUs: median(e.ceilings.map(x => x.mainCpuUs ?? NaN)),
        failures: e.trials.reduce((n, x) => n + x.non2xx + x.errors, 0)
      }
    })
    const cpu = summary.find(s => s.id === 'cpu')
    // The same Extism plugin: the service's req/s over the SDK's, per trial (interleaved), medians.
    const extismVs = (other: string): number | undefined => {
      const a = results.get('extism')
      const b = results.get(other)
      if (a === undefined || b === undefined) return undefined
      return median(a.trials.map((t, i) => t.rps / (b.trials[i]?.rps ?? NaN)))
    }
    const extism = { serviceOverSdkPerCall: extismVs('extism-sdk-call'), serviceOverSdkWorker: extismVs('extism-sdk-worker') }
    const inProcessRps = inProcess.length > 0 ? median(inProcess.map(x => x.callsPerSecond)) : undefined
    const machine = {
      nproc: availableParallelism(),
      cpu: cpus()[0]?.model ?? 'unknown',
      node: process.version,
      workers: WORKERS,
      connections: CONNECTIONS,
      seconds: SECONDS,
      trials: TRIALS,
      logLevel: LOG_LEVEL,
      dist: DIST,
      serviceEnv: SERVICE_ENV,
      loadAverage: loadavg()
    }
    const result = {
      date: new Date().toISOString(),
      machine,
      summary,
      cpuInProcess: inProcessRps === undefined || cpu === undefined
        ? undefined
        : {
            callsPerSecond: inProcessRps,
            perCallUs: median(inProcess.map(x => x.perCallUs)),
            serviceRps: cpu.rps,
            inProcessOverService: inProcessRps / cpu.rps,
            oneAtATime: {
              serviceP50Ms: median(sequential.map(x => x.serviceP50Ms)),
              inProcessMs: median(sequential.map(x => x.inProcessMs)),
              serviceOverInProcess: median(sequential.map(x => x.serviceP50Ms / x.inProcessMs))
            }
          },
      extism,
      raw: { ...Object.fromEntries(results), cpuInProcess: inProcess, cpuOneAtATime: sequential }
    }
    mkdirSync(dirname(OUT), { recursive: true })
    writeFileSync(OUT, `${JSON.stringify(result, null, 2)}\n`)

    const lines = [
      `${machine.nproc} cores (${machine.cpu}), node ${machine.node}, WORKERS=${WORKERS}, ${CONNECTIONS} connections, ${TRIALS} x ${SECONDS} s trials interleaved, medians`,
      '',
      '| scenario | body | req/s | p50 ms | p99 ms | p99/p50 | ceiling req/s | ceiling p50/p99 ms | ratio to ceiling | main-thread CPU µs/req, service / ceiling |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...summary.map(s => `| ${s.label} | ${s.bodyBytes} B | ${s.rps.toFixed(0)} | ${s.p50.toFixed(2)} | ${s.p99.toFixed(2)} | ${s.p99OverP50.toFixed(1)} | ${s.ceilingRps.toFixed(0)} | ${s.ceilingP50.toFixed(2)} / ${s.ceilingP99.toFixed(2)} | **${s.ratio.toFixed(2)}x**${s.failures > 0 ? ` (${s.failures} failures)` : ''} | ${s.mainCpuUs.toFixed(0)} / ${s.ceilingMainCpuUs.toFixed(0)} |`)
    ]
    if (result.cpuInProcess !== undefined) {
      const c = result.cpuInProcess
      lines.push('', 'cpu plugin, the same wasm in-process (bench/sandbox.mts, same body), medians:', '',
        `- throughput, ${WORKERS} threads vs ${CONNECTIONS} connections: in-process ${c.callsPerSecond.toFixed(0)} calls/s, service ${c.serviceRps.toFixed(0)} req/s: in-process / service = **${c.inProcessOverService.toFixed(2)}x**`,
        `- one call at a time: in-process ${c.oneAtATime.inProcessMs.toFixed(2)} ms per call, service p50 ${c.oneAtATime.serviceP50Ms.toFixed(2)} ms (1 connection): service / in-process = **${c.oneAtATime.serviceOverInProcess.toFixed(2)}x**`)
    }
    if (extism.serviceOverSdkPerCall !== undefined || extism.serviceOverSdkWorker !== undefined) {
      lines.push('', 'the same Extism plugin (examples/c-extism), service req/s over the Extism JS SDK behind fastify, per trial, medians:', '',
        `- a plugin created per call: **${(extism.serviceOverSdkPerCall ?? NaN).toFixed(2)}x**`,
        `- one plugin reused, runInWorker: **${(extism.serviceOverSdkWorker ?? NaN).toFixed(2)}x**`)
    }
    console.log(lines.join('\n'))
  } finally {
    service.kill('SIGTERM')
    ceiling.kill('SIGTERM')
    floor.kill('SIGTERM')
    sdk?.kill('SIGTERM')
    rmSync(work, { recursive: true, force: true })
  }
}

/** A port the OS has just handed out (the service logs its address only at LOG_LEVEL=info). */
async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise(resolve => server.close(resolve))
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

main().catch((err: unknown) => { console.error(err); process.exitCode = 1 })
