// Many replicas, one registry: three real service processes (`node dist/main.js`, each with
// its own PORT and DATA_DIR) against a real PostgreSQL, driven over HTTP as a user would.
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { removeDir, tempDir } from '../helpers/build-app'
import { sendUpload, withCustomSection } from '../helpers/client'
import type { Answer } from '../helpers/client'
import { cSource, hasClang, watFixture } from '../helpers/fixtures'
import { startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'
import { canRestartPostgres, createDatabase, describePostgres, dropDatabase, sql, startPrivateCluster, terminateBackends } from '../helpers/postgres'
import type { PrivateCluster } from '../helpers/postgres'
import { MIGRATIONS } from '../../src/registry/pg-backend'
import { sha } from '../../src/registry/store'

jest.setTimeout(120_000)

const ENV = { WORKERS: '1', LOG_LEVEL: 'warn' }

interface Replica { server: RunningServer, dataDir: string }

/** A replica of the service on the registry at `url`. */
async function startReplica (url: string, dataDir = tempDir('wph-replica-')): Promise<Replica> {
  // Three node processes starting at once on a busy 2-core machine (the suite runs two test
  // files in parallel) may need more than the helper's usual 15 s.
  return { server: await startServer({ ...ENV, REGISTRY_URL: url }, dataDir, 60_000), dataDir }
}

const withVolume = (name: string, extra: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ name, capabilities: { wasi: { preopens: [{ guest: '/data', volume: '@plugin', mode: 'rw' }] } }, ...extra })

async function get (url: string): Promise<Answer> {
  const res = await request(url)
  return { status: res.statusCode, text: await res.body.text(), headers: res.headers }
}

async function send (url: string, method: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  const res = await request(url, { method, headers, ...(body !== undefined ? { body } : {}) })
  return { status: res.statusCode, text: await res.body.text(), headers: res.headers }
}

async function execute (url: string, name: string, input: unknown): Promise<Answer> {
  return send(`${url}/plugins/${name}/execute`, 'POST', { 'content-type': 'application/json' }, JSON.stringify(input))
}

/** The sha256 a replica serves for `name` (undefined: 404). */
async function served (r: Replica, name: string): Promise<string | undefined> {
  const a = await get(`${r.server.url}/plugins/${name}`)
  if (a.status === 404) return undefined
  expect(a.status).toBe(200)
  return (JSON.parse(a.text) as { sha256: string }).sha256
}

/** Polls until `check` holds (a propagation bound is the benchmark's job: here, correctness). */
async function eventually (what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<number> {
  const t0 = performance.now()
  while (!(await check())) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
  return performance.now() - t0
}

/** Runs `during` while every replica is called back to back; the statuses of those calls. */
async function whileExecuting (replicas: Replica[], name: string, during: () => Promise<void>): Promise<number[]> {
  const stop = { now: false }
  const statuses: number[] = []
  const clients = replicas.map(async r => {
    while (!stop.now) statuses.push((await execute(r.server.url, name, { ok: true })).status)
  })
  try {
    await during()
  } finally {
    stop.now = true
    await Promise.all(clients)
  }
  return statuses
}

async function listing (r: Replica): Promise<Array<[string, string]>> {
  const a = await get(`${r.server.url}/plugins`)
  expect(a.status).toBe(200)
  return (JSON.parse(a.text) as { plugins: Array<{ name: string, sha256: string }> }).plugins.map(p => [p.name, p.sha256] as [string, string]).sort()
}

async function metric (r: Replica, name: string): Promise<number> {
  const text = (await get(`${r.server.url}/metrics`)).text
  const line = text.split('\n').find(l => l.startsWith(`${name} `))
  return Number(line?.split(' ')[1] ?? NaN)
}

describePostgres('many replicas, one PostgreSQL registry', () => {
  let url: string
  let replicas: Replica[] = []
  let echo: Buffer
  const delays: number[] = []

  const start = async (dataDir?: string): Promise<Replica> => startReplica(url, dataDir)

  beforeAll(async () => {
    echo = await watFixture('echo')
    url = await createDatabase()
    // Three replicas starting at once on an empty database: one migrates, the others wait.
    replicas = await Promise.all([start(), start(), start()])
  })

  afterAll(async () => {
    for (const r of replicas) { await r.server.stop(); removeDir(r.dataDir) }
    if (url !== undefined) await dropDatabase(url)
    if (delays.length > 0) console.log(`replicas.test: ${delays.length} propagations observed by polling, max ${Math.max(...delays).toFixed(0)} ms`)
  })

  const A = (): Replica => replicas[0] as Replica
  const B = (): Replica => replicas[1] as Replica
  const C = (): Replica => replicas[2] as Replica

  test('three replicas started at once on an empty database: one schema, all ready', async () => {
    const versions = await sql(url, 'SELECT version FROM wph_schema_migrations ORDER BY version')
    expect(versions.map(v => v.version)).toEqual(MIGRATIONS.map((_, i) => i + 1))
    for (const r of replicas) {
      expect((await get(`${r.server.url}/readyz`)).status).toBe(200)
      expect(await metric(r, 'registry_connected')).toBe(1)
    }
  })

  test('an upload on A is served by B and C; a replace on B and a delete on C propagate; the @plugin volume goes everywhere', async () => {
    const up = await sendUpload(A().server.url, 'POST', '/plugins', echo, withVolume('spread', { version: '1.0.0' }))
    expect(up.status).toBe(201)
    expect(up.headers.etag).toBe(`"${sha(echo)}"`)
    for (const r of [B(), C()]) {
      delays.push(await eventually('create on A served by B and C', async () => await served(r, 'spread') === sha(echo)))
      const run = await execute(r.server.url, 'spread', { from: 'A' })
      expect(run.status).toBe(200)
      expect(run.text).toBe('{"from":"A"}')
      expect(run.headers['x-plugin-version']).toBe('1.0.0')
      expect(existsSync(join(r.dataDir, 'volumes', 'spread'))).toBe(true)
    }
    const v2 = withCustomSection(echo, Buffer.from('v2'))
    expect((await sendUpload(B().server.url, 'PUT', '/plugins/spread', v2, withVolume('spread', { version: '2.0.0' }))).status).toBe(200)
    for (const r of [A(), C()]) {
      delays.push(await eventually('replace on B', async () => await served(r, 'spread') === sha(v2)))
      expect((await execute(r.server.url, 'spread', {})).headers['x-plugin-version']).toBe('2.0.0')
    }
    expect((await send(`${C().server.url}/plugins/spread`, 'DELETE')).status).toBe(204)
    for (const r of [A(), B()]) {
      delays.push(await eventually('delete on C', async () => await served(r, 'spread') === undefined))
      expect((await execute(r.server.url, 'spread', {})).status).toBe(404)
    }
    for (const r of replicas) await eventually('volume removed', async () => !existsSync(join(r.dataDir, 'volumes', 'spread')))
  })

  test('20 simultaneous POSTs of one name spread over the replicas: one 201, nineteen 409', async () => {
    const answers = await Promise.all(Array.from({ length: 20 }, async (_, i) =>
      sendUpload((replicas[i % 3] as Replica).server.url, 'POST', '/plugins', withCustomSection(echo, Buffer.from(`race-${i}`)), { name: 'race' })))
    const statuses = answers.map(a => a.status)
    expect(statuses.filter(s => s === 201)).toHaveLength(1)
    expect(statuses.filter(s => s === 409)).toHaveLength(19)
    for (const a of answers.filter(a => a.status === 409)) expect(JSON.parse(a.text).code).toBe('PLUGIN_EXISTS')
    const winner = JSON.parse((answers.find(a => a.status === 201) as Answer).text).sha256 as string
    for (const r of replicas) await eventually('the winner everywhere', async () => await served(r, 'race') === winner)
  })

  test('If-Match: a write based on a version another replica replaced is 412; with the current sha256 it passes', async () => {
    const v1 = withCustomSection(echo, Buffer.from('m1'))
    const v2 = withCustomSection(echo, Buffer.from('m2'))
    expect((await sendUpload(A().server.url, 'POST', '/plugins', v1, { name: 'match' })).status).toBe(201)
    // B replaces it...
    expect((await sendUpload(B().server.url, 'PUT', '/plugins/match', v2, undefined, { 'if-match': `"${sha(v1)}"` })).status).toBe(200)
    // ...so C's write based on v1 fails, at once, whether or not C has seen B's write yet.
    const stale = await sendUpload(C().server.url, 'PUT', '/plugins/match', echo, undefined, { 'if-match': `"${sha(v1)}"` })
    expect(stale.status).toBe(412)
    expect(JSON.parse(stale.text)).toMatchObject({ code: 'PRECONDITION_FAILED', details: { sha256: sha(v2) } })
    const staleDelete = await send(`${A().server.url}/plugins/match`, 'DELETE', { 'if-match': `"${sha(v1)}"` })
    expect(staleDelete.status).toBe(412)
    expect((await send(`${A().server.url}/plugins/match`, 'DELETE', { 'if-match': `"${sha(v2)}"` })).status).toBe(204)
    expect((await send(`${A().server.url}/plugins/match`, 'DELETE', { 'if-match': 'not-quoted' })).status).toBe(400)
  })

  const withC = hasClang() || process.env.REQUIRE_TOOLCHAINS === '1' ? test : test.skip
  withC('a call in flight on A finishes on the version it started with while B replaces the plugin; A\'s next call runs the new one', async () => {
    // Each version waits (busy) for a file the test creates in A's copy of the @plugin volume,
    // then prints its name: the call is in flight for as long as the test wants, no timing.
    const version = (tag: string): Buffer => cSource(`#include <stdio.h>
#include <unistd.h>
int main(void) { while (access("/data/go", F_OK) != 0) {} fputs("${tag}", stdout); return 0; }`)
    const v1 = version('v1')
    const v2 = version('v2')
    expect((await sendUpload(A().server.url, 'POST', '/plugins', v1, withVolume('inflight', { abi: 'wasi', limits: { timeoutMs: 20_000 } }))).status).toBe(201)
    for (const r of replicas) await eventually('v1 everywhere', async () => await served(r, 'inflight') === sha(v1))
    const go = join(A().dataDir, 'volumes', 'inflight', 'go')
    expect(existsSync(go)).toBe(false)
    const running = execute(A().server.url, 'inflight', {})
    await eventually('the call runs on A', async () => await metric(A(), 'plugin_calls_in_flight{plugin="inflight"}') === 1)
    expect((await sendUpload(B().server.url, 'PUT', '/plugins/inflight', v2)).status).toBe(200)
    await eventually('A serves v2', async () => await served(A(), 'inflight') === sha(v2))
    expect(await metric(A(), 'plugin_calls_in_flight{plugin="inflight"}')).toBe(1) // still running v1
    writeFileSync(go, '')
    const first = await running
    expect(first.status).toBe(200)
    expect(first.text).toBe('v1')
    expect(first.headers['x-plugin-version']).toBeDefined()
    const next = await execute(A().server.url, 'inflight', {})
    expect(next.status).toBe(200)
    expect(next.text).toBe('v2')
    // Gone everywhere: on B and C (no `go` file there) it would wait out its deadline.
    expect((await send(`${A().server.url}/plugins/inflight`, 'DELETE')).status).toBe(204)
    for (const r of replicas) await eventually('deleted everywhere', async () => await served(r, 'inflight') === undefined)
  })

  test('a replica SIGKILLed during a stream of writes and restarted serves exactly what the others list', async () => {
    const stop = { now: false }
    let n = 0
    const writer = (async () => {
      while (!stop.now) {
        const name = `stream-${n % 6}`
        const target = (n % 2 === 0 ? A() : B()).server.url
        const bytes = withCustomSection(echo, Buffer.from(`s${n++}`))
        const put = await sendUpload(target, 'PUT', `/plugins/${name}`, bytes, { name })
        if (put.status === 404) await sendUpload(target, 'POST', '/plugins', bytes, { name })
        if (n % 5 === 0) await send(`${target}/plugins/${name}`, 'DELETE')
      }
    })()
    await new Promise(resolve => setTimeout(resolve, 300))
    const victim = C()
    victim.server.child.kill('SIGKILL')
    await victim.server.stop()
    await new Promise(resolve => setTimeout(resolve, 300))
    replicas[2] = await start(victim.dataDir)
    await new Promise(resolve => setTimeout(resolve, 300))
    stop.now = true
    await writer
    expect(n).toBeGreaterThan(5)
    // The database is the truth once the writes stopped; every replica, the restarted one too,
    // converges on it (A and B may still be applying the last writes of each other).
    const truth = (await sql<{ name: string, sha256: string }>(url, 'SELECT name, sha256 FROM wph_plugins ORDER BY name')).map(r => [r.name, r.sha256])
    for (const r of replicas) await eventually('replicas agree', async () => JSON.stringify(await listing(r)) === JSON.stringify(truth))
  })

  test('backends terminated (pg_terminate_backend) while clients execute: executions answer 200, the replicas reconnect and resync', async () => {
    expect((await sendUpload(A().server.url, 'POST', '/plugins', echo, { name: 'steady' })).status).toBe(201)
    for (const r of replicas) await eventually('steady everywhere', async () => await served(r, 'steady') === sha(echo))
    const resyncs = await Promise.all(replicas.map(async r => metric(r, 'registry_resyncs_total')))
    const statuses = await whileExecuting(replicas, 'steady', async () => {
      expect(await terminateBackends(url)).toBeGreaterThanOrEqual(3)
      for (const [i, r] of replicas.entries()) {
        await eventually('resynced', async () => await metric(r, 'registry_resyncs_total') > (resyncs[i] as number))
        await eventually('connected', async () => await metric(r, 'registry_connected') === 1)
      }
    })
    expect(statuses.length).toBeGreaterThan(0)
    expect(statuses.filter(s => s !== 200)).toEqual([])
    // writes work again, everywhere
    const v = withCustomSection(echo, Buffer.from('after-terminate'))
    expect((await sendUpload(B().server.url, 'PUT', '/plugins/steady', v)).status).toBe(200)
    for (const r of replicas) await eventually('converged', async () => await served(r, 'steady') === sha(v))
  })

  test('every replica restarted: nothing lost (the same sha256 everywhere, and in the database)', async () => {
    const before = await listing(A())
    expect(before.length).toBeGreaterThan(0)
    for (const r of replicas) await r.server.stop()
    replicas = await Promise.all(replicas.map(async r => start(r.dataDir)))
    const rows = (await sql(url, 'SELECT name, sha256 FROM wph_plugins ORDER BY name')).map(r => [r.name, r.sha256])
    for (const r of replicas) {
      expect(await listing(r)).toEqual(before)
      for (const [name] of before) expect((await execute(r.server.url, name, { back: true })).status).toBe(200)
    }
    expect(rows).toEqual(before)
    for (const { sha256, bytes } of await sql<{ sha256: string, bytes: Buffer }>(url, 'SELECT sha256, bytes FROM wph_modules')) expect(sha(bytes)).toBe(sha256)
  })
})

// Stopping PostgreSQL cuts off everyone on it, so this test stops a cluster of its own
// (with replicas of their own), never the one the other suites share.
const describeRestart = canRestartPostgres ? describePostgres : describe.skip
describeRestart('many replicas, PostgreSQL itself restarted', () => {
  let cluster: PrivateCluster
  let replicas: Replica[] = []
  let echo: Buffer

  beforeAll(async () => {
    echo = await watFixture('echo')
    cluster = await startPrivateCluster()
    replicas = await Promise.all([0, 1, 2].map(async () => startReplica(cluster.url)))
  })

  afterAll(async () => {
    for (const r of replicas) { await r.server.stop(); removeDir(r.dataDir) }
    cluster?.remove()
  })

  test('PostgreSQL restarted while clients execute: executions answer 200, writes 503 + retry-after during the outage, convergence after', async () => {
    expect((await sendUpload((replicas[0] as Replica).server.url, 'POST', '/plugins', echo, { name: 'outage' })).status).toBe(201)
    for (const r of replicas) await eventually('outage everywhere', async () => await served(r, 'outage') === sha(echo))
    const statuses = await whileExecuting(replicas, 'outage', async () => {
      cluster.ctl('stop')
      try {
        for (const r of replicas) await eventually('disconnected', async () => await metric(r, 'registry_connected') === 0)
        for (const r of replicas) {
          const w = await sendUpload(r.server.url, 'PUT', '/plugins/outage', withCustomSection(echo, Buffer.from('during')))
          expect(w.status).toBe(503)
          expect(JSON.parse(w.text).code).toBe('REGISTRY_UNAVAILABLE')
          expect(Number(w.headers['retry-after'])).toBeGreaterThan(0)
          expect((await send(`${r.server.url}/plugins/outage`, 'DELETE')).status).toBe(503)
          // reads and readiness go on from memory
          expect(await served(r, 'outage')).toBe(sha(echo))
          expect((await get(`${r.server.url}/readyz`)).status).toBe(200)
        }
      } finally {
        cluster.ctl('start')
      }
      for (const r of replicas) await eventually('reconnected', async () => await metric(r, 'registry_connected') === 1, 20_000)
    })
    expect(statuses.length).toBeGreaterThan(0)
    expect(statuses.filter(s => s !== 200)).toEqual([])
    const after = withCustomSection(echo, Buffer.from('after-restart'))
    expect((await sendUpload((replicas[2] as Replica).server.url, 'PUT', '/plugins/outage', after)).status).toBe(200)
    for (const r of replicas) await eventually('converged', async () => await served(r, 'outage') === sha(after))
  })
})
