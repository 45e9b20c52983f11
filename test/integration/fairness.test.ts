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
  const app = await setup({ BREAKER_THRESHOLD: '3', BREAKER_COOLDOWN_MS: '3000' })
  for (let i = 0; i < 3; i++) expect((await call(app, 'runaway', '{}', '?function=loop')).statusCode).toBe(504)
  const opened = Date.now()
  const paused = await call(app, 'runaway', '{}', '?function=loop')
  expect(paused.statusCode).toBe(429)
  expect(paused.json()).toMatchObject({ code: 'PLUGIN_THROTTLED', details: { reason: 'deadline breaker' } })
  expect(Number(paused.headers['retry-after'])).toBeGreaterThanOrEqual(1)
  // the refusal was held back (a tarpit for clients that ignore retry-after)
  expect(Date.now() - opened).toBeGreaterThanOrEqual(900)
  expect((await call(app, 'echo', '{"still":"served"}')).statusCode).toBe(200)
  // a well-behaved call of the same plugin is refused too while paused
  expect((await call(app, 'runaway')).statusCode).toBe(429)
  await new Promise(resolve => setTimeout(resolve, Math.max(0, opened + 3100 - Date.now())))
  // after the cool-down one probe runs; it succeeds, so the breaker closes
  expect((await call(app, 'runaway')).statusCode).toBe(200)
  expect((await call(app, 'runaway')).statusCode).toBe(200)
}, 30_000)

// These two compare the order in which calls complete, not wall-clock times, so a loaded
// machine slows them down without making them fail.
function track<T> (promise: Promise<T>, order: string[], label: string): Promise<T> {
  return promise.then(value => { order.push(label); return value })
}

test('a runaway suspect cannot hold every thread: another plugin is served before the flood', async () => {
  const app = await setup({ BREAKER_THRESHOLD: '100', QUEUE_TIMEOUT_MS: '60000' })
  expect((await call(app, 'runaway', '{}', '?function=loop')).statusCode).toBe(504) // now a suspect
  const order: string[] = []
  const flood = Array.from({ length: 6 }, async (_, i) => track(call(app, 'runaway', '{}', '?function=loop'), order, `runaway${i}`))
  await new Promise(resolve => setTimeout(resolve, 20))
  const healthy = await track(call(app, 'echo', '{"n":1}'), order, 'echo')
  expect(healthy.statusCode).toBe(200)
  expect((await Promise.all(flood)).map(r => r.statusCode)).toEqual([504, 504, 504, 504, 504, 504])
  // one thread is always left to others: echo does not wait for the runaway calls to drain
  expect(order.indexOf('echo')).toBeLessThanOrEqual(1)
}, 60_000)

test('one plugin\'s flood does not delay another plugin\'s call behind it', async () => {
  const app = await setup({ QUEUE_TIMEOUT_MS: '60000' })
  const order: string[] = []
  // 12 calls of one plugin queue up on 2 threads
  const flood = Array.from({ length: 12 }, async (_, i) => track(call(app, 'spin', '4'), order, `spin${i}`))
  await new Promise(resolve => setTimeout(resolve, 20))
  expect((await track(call(app, 'echo', '{"fair":true}'), order, 'echo')).statusCode).toBe(200)
  expect((await Promise.all(flood)).every(r => r.statusCode === 200)).toBe(true)
  // served after at most the calls already running (and one more), not after the flood
  expect(order.indexOf('echo')).toBeLessThanOrEqual(3)
}, 60_000)

test('replacing a paused plugin closes its breaker', async () => {
  const app = await setup({ BREAKER_THRESHOLD: '2', BREAKER_COOLDOWN_MS: '60000' })
  for (let i = 0; i < 2; i++) expect((await call(app, 'runaway', '{}', '?function=loop')).statusCode).toBe(504)
  expect((await call(app, 'runaway')).statusCode).toBe(429)
  const put = await app.app.inject({ method: 'PUT', url: '/plugins/runaway', ...uploadBody(await watFixture('echo'), {}) })
  expect(put.statusCode).toBe(200)
  expect((await call(app, 'runaway', '{"fixed":true}')).json()).toEqual({ fixed: true })
})

test('calls of a fast plugin never wait behind a runaway call on its thread', async () => {
  // echo is fast, so the pool queues several of its calls per thread; one of them may land
  // behind a runaway call that had only just started. None may wait for the runaway's deadline.
  const app = await setup({ QUEUE_TIMEOUT_MS: '60000' })
  await app.app.inject({ method: 'PUT', url: '/plugins/runaway', ...uploadBody(await watFixture('hostile'), { limits: { timeoutMs: 3000 } }) })
  for (let i = 0; i < 20; i++) expect((await call(app, 'echo', '{"warm":true}')).statusCode).toBe(200)
  const order: string[] = []
  const echo = async (i: number) => track(call(app, 'echo', `{"i":${i}}`), order, `echo${i}`)
  const echoes = Array.from({ length: 20 }, async (_, i) => echo(i))
  const runaway = track(call(app, 'runaway', '{}', '?function=loop'), order, 'runaway')
  for (let i = 20; i < 60; i++) {
    echoes.push(echo(i))
    if (i % 8 === 0) await new Promise(resolve => setImmediate(resolve))
  }
  const answered = await Promise.all(echoes)
  expect([...new Set(answered.map(r => r.statusCode))]).toEqual([200])
  expect((await runaway).statusCode).toBe(504)
  expect(order.at(-1)).toBe('runaway')
}, 30_000)

test('an answer is not held back or lost by the runaway call after it on the same thread', async () => {
  // One thread: the echo and the runaway call are posted to it together, so the thread reads
  // both at once. The echo's answer must be posted before the runaway starts, or it is lost
  // when the thread is killed at the runaway's deadline.
  const app = await setup({ WORKERS: '1', QUEUE_TIMEOUT_MS: '60000', BREAKER_THRESHOLD: '0' })
  await app.app.inject({ method: 'PUT', url: '/plugins/runaway', ...uploadBody(await watFixture('hostile'), { limits: { timeoutMs: 1000 } }) })
  for (let i = 0; i < 20; i++) expect((await call(app, 'echo', '{"warm":true}')).statusCode).toBe(200)
  // (Which of the two reaches the thread first is up to the event loop; when the runaway call
  // is first, the echo waits for the kill and is posted again, and still answers 200.)
  for (let round = 0; round < 4; round++) {
    const [echo, runaway] = await Promise.all([
      call(app, 'echo', `{"round":${round}}`),
      call(app, 'runaway', '{}', '?function=loop')
    ])
    expect([echo.statusCode, runaway.statusCode]).toEqual([200, 504])
  }
}, 30_000)
