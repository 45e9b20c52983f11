// Security issue 16, item 5: what a worker keeps between calls (recycled memories, kept
// instances) is bounded by bytes. Before the bound, 8 plugins with distinct ~256 MiB memory
// shapes, 2 calls each, took the service's RSS from ~225 MiB to 4.3 GiB, and it stayed there:
// every recycled memory was zeroed whole (committing all of its pages) and kept, one per shape.
import { FormData, request } from 'undici'
import { removeDir } from '../helpers/build-app'
import { wat } from '../helpers/fixtures'
import { startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'

const MiB = 1024 * 1024
const PLUGINS = 8

let server: RunningServer | undefined
afterEach(async () => {
  if (server !== undefined) {
    await server.stop()
    removeDir(server.dataDir)
    server = undefined
  }
})

/** A json echo with a memory of `pages` pages that touches one byte at its top on every call. */
function bigEcho (pages: number): Promise<Buffer> {
  return wat(`(module
    (memory (export "memory") ${pages})
    (global $heap (mut i32) (i32.const 1024))
    (func (export "alloc") (param $n i32) (result i32)
      (local $p i32)
      (local.set $p (global.get $heap))
      (global.set $heap (i32.add (local.get $p) (local.get $n)))
      (local.get $p))
    (func (export "execute") (param $p i32) (param $n i32) (result i32 i32)
      (i32.store8 (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 1)) (i32.const 1))
      (local.get $p) (local.get $n)))`)
}

async function metric (url: string, name: string): Promise<number> {
  const res = await request(`${url}/metrics`)
  const text = await res.body.text()
  const line = text.split('\n').find(l => l.startsWith(`${name} `))
  if (line === undefined) throw new Error(`no metric ${name}`)
  return Number(line.split(' ')[1])
}

test('8 plugins of distinct ~256 MiB memories, 2 calls each: RSS stays bounded, and so does what the workers keep', async () => {
  server = await startServer({ MAX_MEMORY_BYTES: String(512 * MiB), MAX_TIMEOUT_MS: '60000', WORKERS: '2' })
  const url = server.url
  for (let i = 0; i < PLUGINS; i++) {
    const form = new FormData()
    form.append('module', new Blob([new Uint8Array(await bigEcho(4000 + i))], { type: 'application/wasm' }), 'big.wasm')
    form.append('manifest', JSON.stringify({ name: `big-${i}`, limits: { memoryBytes: 512 * MiB, timeoutMs: 60_000 } }))
    const res = await request(`${url}/plugins`, { method: 'POST', body: form })
    expect(res.statusCode).toBe(201)
    await res.body.dump()
  }
  const before = await metric(url, 'process_resident_memory_bytes')
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < PLUGINS; i++) {
      const res = await request(`${url}/plugins/big-${i}/execute`, { method: 'POST', body: '{"n":1}', headers: { 'content-type': 'application/json' } })
      expect(await res.body.text()).toBe('{"n":1}')
    }
  }
  const after = await metric(url, 'process_resident_memory_bytes')
  // 16 calls of ~250 MiB memories: before the bound, RSS grew by ~4 GiB and stayed.
  expect(after - before).toBeLessThan(512 * MiB)
  // Each thread keeps at most its budget (64 MiB): none of these memories fits, none is kept.
  expect(await metric(url, 'worker_kept_bytes')).toBeLessThanOrEqual(2 * 64 * MiB)
}, 600_000)

test('released on idle: after IDLE_RELEASE_MS without a call the threads keep nothing, and the pages go back to the OS', async () => {
  server = await startServer({ WORKERS: '2', IDLE_RELEASE_MS: '1000', MAX_MEMORY_BYTES: String(64 * MiB) })
  const url = server.url
  // 48 MiB memories: within the 64 MiB a thread may keep, so after a call each is kept.
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(await bigEcho(768))], { type: 'application/wasm' }), 'kept.wasm')
  form.append('manifest', JSON.stringify({ name: 'kept', limits: { memoryBytes: 48 * MiB } }))
  const up = await request(`${url}/plugins`, { method: 'POST', body: form })
  expect(up.statusCode).toBe(201)
  await up.body.dump()
  const idleRss = await metric(url, 'process_resident_memory_bytes')
  // Calls keep coming (more often than the idle check) until both threads keep a memory.
  const t0 = Date.now()
  while (await metric(url, 'worker_kept_bytes') < 2 * 48 * MiB) {
    await Promise.all([0, 1, 2, 3].map(async () => {
      const res = await request(`${url}/plugins/kept/execute`, { method: 'POST', body: '[1]', headers: { 'content-type': 'application/json' } })
      expect(await res.body.text()).toBe('[1]')
    }))
    if (Date.now() - t0 > 30_000) throw new Error('the threads never kept both memories')
  }
  const busyRss = await metric(url, 'process_resident_memory_bytes')
  // Then nothing: within a few idle checks, everything kept is let go.
  const t1 = Date.now()
  while (await metric(url, 'worker_kept_bytes') > 0) {
    if (Date.now() - t1 > 20_000) throw new Error('kept bytes never went back to 0')
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  await new Promise(resolve => setTimeout(resolve, 500))
  const releasedRss = await metric(url, 'process_resident_memory_bytes')
  console.log(`memory-bound (idle release): RSS ${(idleRss / MiB).toFixed(0)} MiB before the calls, ${(busyRss / MiB).toFixed(0)} MiB with 2 x 48 MiB kept, ${(releasedRss / MiB).toFixed(0)} MiB after the release`)
  expect(busyRss - releasedRss).toBeGreaterThan(64 * MiB)
  // and the plugin still runs (a new memory)
  const res = await request(`${url}/plugins/kept/execute`, { method: 'POST', body: '[2]', headers: { 'content-type': 'application/json' } })
  expect(await res.body.text()).toBe('[2]')
}, 120_000)
