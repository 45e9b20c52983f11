// npm run bench:replicas: propagation delay of the shared PostgreSQL registry. Three replicas
// (`node dist/main.js`, own ports and DATA_DIRs, one database); WRITES replaces (default
// 1,000) spread round-robin over the three; after each acknowledged write, the two other
// replicas are polled (GET /plugins/:name, back to back) until they serve the new sha256.
// Delay = first poll that sees it - the writer's 2xx: an upper bound of the real delay (by
// about one poll round trip). Also reported: each replica's registry_sync_seconds (commit ->
// swapped in, measured inside the service).
//
// Needs PostgreSQL: BENCH_DATABASE_URL (used as is, must be empty) or TEST_DATABASE_URL (a
// fresh database is created on that cluster and dropped after), e.g.
//   eval "$(scripts/pg-test-cluster.sh start)" && npm run bench:replicas
import { randomBytes } from 'node:crypto'
import { FormData, request } from 'undici'
import pg from 'pg'
import { quantile, startService, upload, watFixture } from './service.mts'
import type { Service } from './service.mts'

const WRITES = Number(process.env.BENCH_WRITES ?? 1000)
const NAMES = 20

function nonce (wasm: Buffer, payload: string): Buffer {
  // a custom section: another sha256, same behaviour
  const name = Buffer.from('nonce')
  const content = Buffer.concat([Buffer.from([name.length]), name, Buffer.from(payload)])
  return Buffer.concat([wasm, Buffer.from([0, content.length]), content])
}

async function admin (url: string, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try { await c.query(sql) } finally { await c.end() }
}

async function served (url: string, name: string): Promise<string | undefined> {
  const res = await request(`${url}/plugins/${name}`)
  await res.body.dump()
  return res.headers.etag as string | undefined
}

async function put (url: string, name: string, bytes: Buffer): Promise<string> {
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(bytes)]), `${name}.wasm`)
  const res = await request(`${url}/plugins/${name}`, { method: 'PUT', body: form })
  const text = await res.body.text()
  if (res.statusCode !== 200) throw new Error(`PUT ${name}: ${res.statusCode} ${text}`)
  return res.headers.etag as string
}

async function syncSeconds (url: string): Promise<{ count: number, sum: number, under100ms: number, under1s: number }> {
  const text = await (await request(`${url}/metrics`)).body.text()
  const value = (re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN)
  return {
    count: value(/^registry_sync_seconds_count (\S+)$/m),
    sum: value(/^registry_sync_seconds_sum (\S+)$/m),
    under100ms: value(/^registry_sync_seconds_bucket\{le="0.1"\} (\S+)$/m),
    under1s: value(/^registry_sync_seconds_bucket\{le="1"\} (\S+)$/m)
  }
}

let registryUrl = process.env.BENCH_DATABASE_URL
let created: string | undefined
if (registryUrl === undefined) {
  const base = process.env.TEST_DATABASE_URL
  if (base === undefined) throw new Error('set BENCH_DATABASE_URL or TEST_DATABASE_URL (eval "$(scripts/pg-test-cluster.sh start)")')
  created = `wph_bench_${randomBytes(4).toString('hex')}`
  await admin(base, `CREATE DATABASE ${created}`)
  const u = new URL(base)
  u.pathname = `/${created}`
  registryUrl = u.toString()
}

const replicas: Service[] = []
try {
  for (let i = 0; i < 3; i++) replicas.push(await startService({ REGISTRY_URL: registryUrl, WORKERS: '1' }))
  const echo = await watFixture('echo')
  const names = Array.from({ length: NAMES }, (_, i) => `bench-${i}`)
  for (const name of names) await upload((replicas[0] as Service).url, name, echo)
  for (const r of replicas) for (const name of names) while (await served(r.url, name) === undefined) await new Promise(resolve => setTimeout(resolve, 5))

  const delays: number[] = []
  const writeMs: number[] = []
  const t0 = performance.now()
  for (let i = 0; i < WRITES; i++) {
    const writer = replicas[i % 3] as Service
    const name = names[i % NAMES] as string
    const w0 = performance.now()
    const etag = await put(writer.url, name, nonce(echo, `w${i}`))
    const acked = performance.now()
    writeMs.push(acked - w0)
    await Promise.all(replicas.filter(r => r !== writer).map(async (r) => {
      while (await served(r.url, name) !== etag) {
        if (performance.now() - acked > 10_000) throw new Error(`write ${i} not served by ${r.url} within 10 s`)
      }
      delays.push(performance.now() - acked)
    }))
  }
  const seconds = (performance.now() - t0) / 1000
  const sorted = [...delays].sort((a, b) => a - b)
  const w = [...writeMs].sort((a, b) => a - b)
  const inside = await Promise.all(replicas.map(async r => syncSeconds(r.url)))
  const total = inside.reduce((a, b) => ({ count: a.count + b.count, sum: a.sum + b.sum, under100ms: a.under100ms + b.under100ms, under1s: a.under1s + b.under1s }))
  console.log(JSON.stringify({
    writes: WRITES,
    observations: delays.length,
    seconds: Number(seconds.toFixed(1)),
    propagationMs: { p50: +quantile(sorted, 0.5).toFixed(1), p99: +quantile(sorted, 0.99).toFixed(1), max: +(sorted.at(-1) ?? NaN).toFixed(1), over1s: sorted.filter(d => d > 1000).length },
    writeMs: { p50: +quantile(w, 0.5).toFixed(1), p99: +quantile(w, 0.99).toFixed(1) },
    registrySyncSeconds: { count: total.count, meanMs: +(total.sum / total.count * 1000).toFixed(1), under100ms: total.under100ms, under1s: total.under1s }
  }, null, 2))
} finally {
  for (const r of replicas) await r.stop()
  if (created !== undefined) await admin(process.env.TEST_DATABASE_URL as string, `DROP DATABASE IF EXISTS ${created} WITH (FORCE)`)
}
