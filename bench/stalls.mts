// Event-loop stalls under schema attacks (security issue 16, items 3 and 9): each attack runs
// against the real service while a client times GET /healthz back to back (one request at a
// time, 5 ms apart); the longest /healthz answer during an attack is the main thread's worst
// stall, as a client sees it. Then N PUTs of a 64 KiB schema, with the server's RSS before and
// after. `npm run bench:stalls`; BENCH_DIST=/other/dist runs another build (before/after);
// STALL_PHASES=regex,unique,wide,output,puts picks phases; STALL_PUTS (400) the PUT count.
import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import { FormData, request } from 'undici'
import { rssMiB, startService, upload, watFixture } from './service.mts'

const PHASES = new Set((process.env.STALL_PHASES ?? 'idle,regex,unique,wide,output,puts').split(','))
const PUTS = Number(process.env.STALL_PUTS ?? 400)
const MiB = 1024 * 1024

const service = await startService({ WORKERS: '2', MAX_INPUT_BYTES: String(17 * MiB), BREAKER_THRESHOLD: '0', QUEUE_TIMEOUT_MS: '60000' })
const pid = service.child.pid ?? 0

/**
 * Times /healthz back to back (one request at a time, 5 ms apart) in a thread of its own: in
 * this thread the attack's own client work (sending 16 MiB, reading the answer) would stall the
 * timer and be blamed on the server.
 */
const PINGER = `
const { parentPort, workerData } = require('node:worker_threads')
const { request } = require(workerData.undici)
const times = []
let on = true
parentPort.on('message', () => { on = false })
;(async () => {
  while (on) {
    const t0 = performance.now()
    const res = await request(workerData.url + '/healthz')
    await res.body.dump()
    times.push(performance.now() - t0)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
  parentPort.postMessage(times)
})()
`

/** Runs `attack` while timing /healthz; returns the longest and median /healthz times (ms). */
async function underAttack (attack: () => Promise<string>): Promise<{ maxMs: number, p50Ms: number, samples: number, outcome: string, attackMs: number }> {
  const pinger = new Worker(PINGER, { eval: true, workerData: { url: service.url, undici: createRequire(import.meta.url).resolve('undici') } })
  const timesP = new Promise<number[]>(resolve => pinger.once('message', resolve))
  await new Promise(resolve => setTimeout(resolve, 100))
  const t0 = performance.now()
  const outcome = await attack()
  const attackMs = performance.now() - t0
  await new Promise(resolve => setTimeout(resolve, 100))
  pinger.postMessage('stop')
  const times = await timesP
  await pinger.terminate()
  const sorted = [...times].sort((a, b) => a - b)
  return { maxMs: sorted[sorted.length - 1] ?? NaN, p50Ms: sorted[Math.floor(sorted.length / 2)] ?? NaN, samples: times.length, outcome, attackMs }
}

async function execute (name: string, body: string | Buffer): Promise<string> {
  const res = await request(`${service.url}/plugins/${name}/execute`, { method: 'POST', body, headers: { 'content-type': 'application/json' }, headersTimeout: 0, bodyTimeout: 0 })
  // Only an error's small body is parsed (for its code): a 16 MiB answer is only counted.
  let code = ''
  if (res.statusCode >= 400) {
    try { code = (JSON.parse(await res.body.text()) as { code?: string }).code ?? '' } catch {}
  } else {
    let bytes = 0
    for await (const chunk of res.body) bytes += (chunk as Buffer).length
    code = `(${(bytes / 1024 / 1024).toFixed(1)} MiB)`
  }
  return `${res.statusCode}${code !== '' ? ` ${code}` : ''}`
}

/** A schema of about 64 KiB: properties, each with a pattern (the issue's item 9). */
function bigSchema (variant: number): Record<string, unknown> {
  const properties: Record<string, unknown> = {}
  for (let i = 0; JSON.stringify(properties).length < 62_000; i++) properties[`p${i}`] = { type: 'string', pattern: `^[a-z]+${i}(x|y)*$`, maxLength: 100 + variant }
  return { type: 'object', properties }
}

const echo = await watFixture('echo')
const rows: Array<[string, Awaited<ReturnType<typeof underAttack>>]> = []
try {
  if (PHASES.has('idle')) rows.push(['idle (no attack)', await underAttack(async () => { await new Promise(resolve => setTimeout(resolve, 2000)); return '-' })])
  if (PHASES.has('regex')) {
    await upload(service.url, 'regex', echo, { inputSchema: { type: 'object', properties: { s: { type: 'string', pattern: '^(a+)+$' } } } })
    // 2^n steps for a backtracking engine: 28 "a" took ~2 s before; the issue's 30 took 8.8 s.
    const body = JSON.stringify({ s: 'a'.repeat(28) + '!' })
    rows.push(['pattern ^(a+)+$, 28 a + !', await underAttack(async () => execute('regex', body))])
  }
  if (PHASES.has('unique')) {
    await upload(service.url, 'unique', echo, { limits: { timeoutMs: 2000 }, inputSchema: { type: 'array', uniqueItems: true } })
    const body = JSON.stringify(Array.from({ length: 20_000 }, (_, i) => [i]))
    rows.push(['uniqueItems, 20,000 small arrays', await underAttack(async () => execute('unique', body))])
  }
  if (PHASES.has('wide')) {
    await upload(service.url, 'wide', echo, { limits: { memoryBytes: 64 * MiB }, inputSchema: { type: 'array' } })
    const body = Buffer.from('[' + Array.from({ length: Math.floor(10 * MiB / 3) }, () => '[]').join(',') + ']')
    rows.push([`${(body.length / MiB).toFixed(1)} MiB body of nested arrays`, await underAttack(async () => execute('wide', body))])
  }
  if (PHASES.has('output')) {
    await upload(service.url, 'output', echo, { limits: { memoryBytes: 64 * MiB, outputBytes: 16 * MiB }, outputSchema: { type: 'array', items: { type: 'array' } } })
    // Within the depth and value caps: validated, in the worker after the fix.
    const inner = '[' + Array.from({ length: 16 }, () => '"abcdefghijklmnopqrstuvwxyz0123456789"').join(',') + ']'
    const body = Buffer.from('[' + Array.from({ length: Math.floor(16 * MiB / (inner.length + 1)) }, () => inner).join(',') + ']')
    rows.push([`outputSchema over ${(body.length / MiB).toFixed(1)} MiB of nested output`, await underAttack(async () => execute('output', body))])
  }
  if (PHASES.has('puts')) {
    await upload(service.url, 'big', echo, { inputSchema: bigSchema(0) })
    const rssBefore = rssMiB(pid)
    const durations: number[] = []
    const result = await underAttack(async () => {
      let statuses = ''
      for (let i = 1; i <= PUTS; i++) {
        const form = new FormData()
        form.append('module', new Blob([new Uint8Array(echo)]), 'big.wasm')
        form.append('manifest', JSON.stringify({ name: 'big', inputSchema: bigSchema(i) }))
        const t0 = performance.now()
        const res = await request(`${service.url}/plugins/big`, { method: 'PUT', body: form, headersTimeout: 0, bodyTimeout: 0 })
        await res.body.dump()
        durations.push(performance.now() - t0)
        if (res.statusCode !== 200) statuses = `${res.statusCode}`
        if (i % 25 === 0) console.error(`PUT ${i}: RSS ${rssMiB(pid).toFixed(0)} MiB`)
      }
      return statuses === '' ? '200' : statuses
    })
    const rssAfter = rssMiB(pid)
    await new Promise(resolve => setTimeout(resolve, 5000))
    const rssIdle = rssMiB(pid)
    const sorted = [...durations].sort((a, b) => a - b)
    rows.push([`${PUTS} PUTs of a ${(JSON.stringify(bigSchema(0)).length / 1024).toFixed(0)} KiB schema`, result])
    console.log(`\nPUTs: RSS ${rssBefore.toFixed(0)} MiB before, ${rssAfter.toFixed(0)} MiB after, ${rssIdle.toFixed(0)} MiB 5 s later; PUT p50 ${sorted[Math.floor(sorted.length / 2)]?.toFixed(0)} ms, max ${sorted[sorted.length - 1]?.toFixed(0)} ms`)
  }
  console.log(`\n## Event-loop stalls under schema attacks (${process.env.BENCH_DIST ?? 'this build'})\n`)
  console.log('| attack | answer | attack took (ms) | /healthz max (ms) | /healthz p50 (ms) | samples |\n| --- | --- | --- | --- | --- | --- |')
  for (const [label, r] of rows) console.log(`| ${label} | ${r.outcome} | ${r.attackMs.toFixed(0)} | ${r.maxMs.toFixed(1)} | ${r.p50Ms.toFixed(1)} | ${r.samples} |`)
} finally {
  await service.stop()
}
