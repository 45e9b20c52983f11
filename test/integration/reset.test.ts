// Fresh state by reset, through the service: the descriptor says how a plugin gets the state of
// a new instance, calls that change every kind of state and fail in every way still leave the
// next call the initial state, and fallbacks are counted. One worker: every call meets the
// same kept instance.
import { buildTestApp, uploadBody } from '../helpers/build-app'
import type { TestApp } from '../helpers/build-app'
import { wat, watFixture } from '../helpers/fixtures'

let t: TestApp

beforeAll(async () => {
  t = await buildTestApp({ WORKERS: '1' })
  const install = async (name: string, wasm: Buffer, manifest: Record<string, unknown> = {}): Promise<void> => {
    const res = await t.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(wasm, { name, ...manifest }) })
    expect(res.statusCode).toBe(201)
  }
  await install('state', await watFixture('state-json'))
  await install('state-wasi', await watFixture('state-wasi'))
  await install('passive', await wat(`(module (memory (export "memory") 1) (data "7")
    (global $heap (mut i32) (i32.const 1024))
    (func (export "alloc") (param i32) (result i32) (global.get $heap))
    (func (export "execute") (param i32 i32) (result i32 i32) (memory.init 0 (i32.const 16) (i32.const 0) (i32.const 1)) (data.drop 0) (i32.const 16) (i32.const 1)))`))
})
afterAll(async () => { await t.close() })

async function call (name: string, fn: string, payload = '"probe"'): Promise<{ status: number, body: string }> {
  const query = fn === '' ? '' : `?function=${fn}`
  const res = await t.app.inject({ method: 'POST', url: `/plugins/${name}/execute${query}`, payload, headers: { 'content-type': 'application/json' } })
  return { status: res.statusCode, body: res.body }
}

test('the descriptor says whether calls get a reset instance or a new one, and why', async () => {
  expect((await t.app.inject({ url: '/plugins/state' })).json().reset).toEqual({ mode: 'reset' })
  expect((await t.app.inject({ url: '/plugins/state-wasi' })).json().reset).toEqual({ mode: 'reset' })
  expect((await t.app.inject({ url: '/plugins/passive' })).json().reset).toMatchObject({ mode: 'new-instance', reason: 'passive_data_segments', detail: expect.stringMatching(/data.drop/) })
})

test('whatever a call did (writes, grow, table grow, trap, limit, stack overflow), the next one sees the initial state', async () => {
  const baseline = await call('state', 'observe')
  expect(baseline.status).toBe(200)
  for (const fn of ['write', 'trap', 'grow', 'overflow', 'tgrow', 'deep', 'write', 'write']) {
    const res = await call('state', fn, `"${fn}"`)
    expect([200, 422, 502]).toContain(res.status)
    expect(await call('state', 'observe')).toEqual(baseline)
  }
})

test('wasi: a proc_exit or a trap half-way leaves nothing behind', async () => {
  const baseline = await call('state-wasi', '', 'o')
  expect(baseline.status).toBe(200)
  for (const op of ['w1', 'e2', 't3', 'z4', 'g5']) {
    await call('state-wasi', '', op)
    expect(await call('state-wasi', '', 'o')).toEqual(baseline)
  }
})

test('a plugin that cannot be reset still gets a new instance per call, counted by reason', async () => {
  // data.drop on a kept instance would make the second call trap.
  for (let i = 0; i < 3; i++) expect((await call('passive', '')).body).toBe('7')
  const metrics = (await t.app.inject({ url: '/metrics' })).body
  expect(metrics).toMatch(/^plugin_instance_fallbacks_total\{reason="passive_data_segments"\} 3$/m)
  expect(Number(/^worker_kept_bytes (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0)
})
