// Fairness under a runaway or flooding neighbour, with real threads.
import { buildTestApp, uploadBody } from '../helpers/build-app'
import type { TestApp } from '../helpers/build-app'
import { watFixture } from '../helpers/fixtures'

let t: TestApp | undefined
afterEach(async () => { await t?.close(); t = undefined })

async function setup (env: Record<string, string>): Promise<TestApp> {
  const app = await buildTestApp({ WORKERS: '2', ...env })
  t = app
  for (const [name, fixture, manifest] of [['echo', 'echo', {}], ['runaway', 'hostile', { limits: { timeoutMs: 150 } }], ['spin', 'spin', {}]] as const) {
    const res = await app.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(await watFixture(fixture), { name, ...manifest }) })
    expect(res.statusCode).toBe(201)
  }
  return app
}

const call = (app: TestApp, name: string, payload = '{}', query = '') =>
  app.app.inject({ method: 'POST', url: `/plugins/${name}/execute${query}`, payload, headers: { 'content-type': 'application/json' } })

test('a plugin that keeps hitting its deadline is paused with 429 and retry-after; others run', async () => {
  const app = await setup({ BREAKER_THRESHOLD: '3', BREAKER_COOLDOWN_MS: '600' })
  for (let i = 0; i < 3; i++) expect((await call(app, 'runaway', '{}', '?function=loop')).statusCode).toBe(504)
  const paused = await call(app, 'runaway', '{}', '?function=loop')
  expect(paused.statusCode).toBe(429)
  expect(paused.json()).toMatchObject({ code: 'PLUGIN_THROTTLED', details: { reason: 'deadline breaker' } })
  expect(Number(paused.headers['retry-after'])).toBeGreaterThanOrEqual(1)
  expect((await call(app, 'echo', '{"still":"served"}')).statusCode).toBe(200)
  // a well-behaved call of the same plugin is refused too while paused
  expect((await call(app, 'runaway')).statusCode).toBe(429)
  await new Promise(resolve => setTimeout(resolve, 700))
  // after the cool-down one probe runs; it succeeds, so the breaker closes
  expect((await call(app, 'runaway')).statusCode).toBe(200)
  expect((await call(app, 'runaway')).statusCode).toBe(200)
})

test('a runaway suspect cannot hold every thread: another plugin is served at once', async () => {
  const app = await setup({ BREAKER_THRESHOLD: '100' })
  expect((await call(app, 'runaway', '{}', '?function=loop')).statusCode).toBe(504) // now a suspect
  const flood = Array.from({ length: 6 }, async () => call(app, 'runaway', '{}', '?function=loop'))
  await new Promise(resolve => setTimeout(resolve, 50))
  const t0 = performance.now()
  const healthy = await call(app, 'echo', '{"n":1}')
  const waited = performance.now() - t0
  expect(healthy.statusCode).toBe(200)
  // one thread is always left to others: no wait for a 150 ms deadline, let alone six
  expect(waited).toBeLessThan(140)
  expect((await Promise.all(flood)).map(r => r.statusCode)).toEqual([504, 504, 504, 504, 504, 504])
})

test('one plugin\'s flood does not delay another plugin\'s call behind it', async () => {
  const app = await setup({})
  // 12 calls of ~0.1-0.3 s each from one plugin queue up on 2 threads (a second or more of work)
  const flood = Array.from({ length: 12 }, async () => call(app, 'spin', '4'))
  await new Promise(resolve => setTimeout(resolve, 30))
  const t0 = performance.now()
  expect((await call(app, 'echo', '{"fair":true}')).statusCode).toBe(200)
  const waited = performance.now() - t0
  const t1 = performance.now()
  await Promise.all(flood)
  const drain = performance.now() - t1
  // served after at most one in-flight spin call, not after the whole flood
  expect(waited).toBeLessThan(drain / 2)
})
