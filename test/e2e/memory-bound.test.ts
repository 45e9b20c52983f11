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
