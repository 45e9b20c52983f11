// "instance": "reuse": one kept instance per plugin version per worker, replaced after 1000
// calls or any failure; the default stays a fresh instance per call. One worker, so every
// call meets the same instance.
import { buildTestApp, uploadBody } from '../helpers/build-app'
import type { TestApp } from '../helpers/build-app'
import { watFixture } from '../helpers/fixtures'

let t: TestApp

beforeAll(async () => { t = await buildTestApp({ WORKERS: '1' }) })
afterAll(async () => { await t.close() })

async function install (name: string, fixture: string, manifest: Record<string, unknown> = {}, method: 'POST' | 'PUT' = 'POST') {
  return t.app.inject({ method, url: method === 'POST' ? '/plugins' : `/plugins/${name}`, ...uploadBody(await watFixture(fixture), { name, ...manifest }) })
}

async function calls (name: string, query = ''): Promise<number | string> {
  const res = await t.app.inject({ method: 'POST', url: `/plugins/${name}/execute${query}`, payload: '{}', headers: { 'content-type': 'application/json' } })
  return res.statusCode === 200 ? (res.json() as { calls: number }).calls : (res.json() as { code: string }).code
}

describe('instance policy', () => {
  beforeAll(async () => {
    expect((await install('counter-reuse', 'bench-counter', { instance: 'reuse' })).statusCode).toBe(201)
    expect((await install('counter-fresh', 'bench-counter')).statusCode).toBe(201)
    expect((await install('fresh-reuse', 'fresh', { instance: 'reuse' })).statusCode).toBe(201)
  })

  test('the descriptor shows the policy; fresh is the default', async () => {
    expect((await t.app.inject({ url: '/plugins/counter-reuse' })).json().instance).toBe('reuse')
    expect((await t.app.inject({ url: '/plugins/counter-fresh' })).json().instance).toBe('fresh')
  })

  test('with the default, every call is a fresh instance', async () => {
    for (let i = 0; i < 10; i++) expect(await calls('counter-fresh')).toBe(1)
  })

  test('with reuse, a global persists across calls, and memory too', async () => {
    const first = await calls('counter-reuse')
    expect(typeof first).toBe('number')
    for (let i = 1; i <= 10; i++) expect(await calls('counter-reuse')).toBe((first as number) + i)
    // fresh.wat answers true only when its global and byte 50000 are still zero
    const seen = []
    for (let i = 0; i < 3; i++) seen.push((await t.app.inject({ method: 'POST', url: '/plugins/fresh-reuse/execute', payload: '{}' })).json())
    expect(seen).toEqual([true, false, false])
  })

  test('after a trap the instance is replaced', async () => {
    await calls('counter-reuse')
    expect(await calls('counter-reuse')).toBeGreaterThan(1)
    expect(await calls('counter-reuse', '?function=trap')).toBe('PLUGIN_TRAP')
    expect(await calls('counter-reuse')).toBe(1)
    expect(await calls('counter-reuse')).toBe(2)
  })

  test('an instance is replaced after 1000 calls', async () => {
    await calls('counter-reuse', '?function=trap') // start from a new instance
    let last: number | string = 0
    for (let i = 1; i <= 1000; i++) {
      last = await calls('counter-reuse')
      if (last !== i) break
    }
    expect(last).toBe(1000)
    expect(await calls('counter-reuse')).toBe(1)
  })

  test('a replaced plugin (PUT) gets a new instance', async () => {
    await calls('counter-reuse')
    expect(await calls('counter-reuse')).toBeGreaterThan(1)
    expect((await install('counter-reuse', 'bench-counter', { instance: 'reuse' }, 'PUT')).statusCode).toBe(200)
    expect(await calls('counter-reuse')).toBe(1)
  })

  test('a reused instance without alloc writes each input over the same region: memory does not run out', async () => {
    // bench-counter has a 4-page maximum: 200 KB inputs (4 pages each) would fail on the
    // second call if every call grew memory again.
    const payload = JSON.stringify({ s: 'x'.repeat(150_000) })
    await calls('counter-reuse', '?function=trap')
    for (let i = 1; i <= 5; i++) {
      const res = await t.app.inject({ method: 'POST', url: '/plugins/counter-reuse/execute', payload, headers: { 'content-type': 'application/json' } })
      expect([res.statusCode, res.json()]).toEqual([200, { calls: i }])
    }
  })

  test('reuse is refused for the wasi ABI and for plugins granted WASI; unknown values are refused', async () => {
    for (const [fixture, manifest] of [
      ['bench-wasi-echo', { instance: 'reuse' }],
      ['bench-counter', { instance: 'reuse', capabilities: { wasi: {} } }],
      ['bench-counter', { instance: 'shared' }]
    ] as const) {
      const res = await install('refused', fixture, manifest)
      expect([res.statusCode, res.json().code]).toEqual([400, 'INVALID_MANIFEST'])
    }
  })
})
