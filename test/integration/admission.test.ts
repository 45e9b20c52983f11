// Admission limits: the bounded queue (OVERLOADED), queue wait (OVERLOADED), per-plugin
// concurrency (PLUGIN_THROTTLED), the registry size (INSUFFICIENT_STORAGE), unknown routes.
import { buildTestApp, uploadBody } from '../helpers/build-app'
import type { TestApp } from '../helpers/build-app'
import { watFixture } from '../helpers/fixtures'

let t: TestApp | undefined
afterEach(async () => { await t?.close(); t = undefined })

async function setup (env: Record<string, string>): Promise<TestApp> {
  t = await buildTestApp(env)
  for (const [name, manifest] of [['hostile', { limits: { timeoutMs: 600 } }], ['echo', {}]] as const) {
    const res = await t.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(await watFixture(name === 'echo' ? 'echo' : 'hostile'), { name, ...manifest }) })
    expect(res.statusCode).toBe(201)
  }
  return t
}

const loop = (app: TestApp) => app.app.inject({ method: 'POST', url: '/plugins/hostile/execute?function=loop', payload: {} })
const echo = (app: TestApp) => app.app.inject({ method: 'POST', url: '/plugins/echo/execute', payload: {} })

test('a full queue answers 503 OVERLOADED with retry-after at once', async () => {
  const app = await setup({ WORKERS: '1', QUEUE_MAX: '1', QUEUE_TIMEOUT_MS: '5000' })
  const running = loop(app) // occupies the only thread
  await new Promise(resolve => setTimeout(resolve, 100))
  const queued = echo(app) // fills the queue
  await new Promise(resolve => setTimeout(resolve, 20))
  const refused = await echo(app)
  expect(refused.statusCode).toBe(503)
  expect(refused.json().code).toBe('OVERLOADED')
  expect(refused.headers['retry-after']).toBe('1')
  expect((await running).statusCode).toBe(504)
  expect((await queued).statusCode).toBe(200)
})

test('a call that waits past QUEUE_TIMEOUT_MS gets 503 OVERLOADED', async () => {
  const app = await setup({ WORKERS: '1', QUEUE_MAX: '10', QUEUE_TIMEOUT_MS: '100' })
  // The loop must be running, not itself waiting past 100 ms for a thread that is still
  // starting (seen on a loaded machine): first wait until a call gets through.
  for (let i = 0; i < 100 && (await echo(app)).statusCode !== 200; i++) await new Promise(resolve => setTimeout(resolve, 50))
  const running = loop(app)
  await new Promise(resolve => setTimeout(resolve, 50))
  const t0 = performance.now()
  const waited = await echo(app)
  expect(waited.statusCode).toBe(503)
  expect(waited.json().message).toMatch(/within 100 ms/)
  expect(performance.now() - t0).toBeLessThan(550)
  expect((await running).statusCode).toBe(504)
  await new Promise(resolve => setTimeout(resolve, 500)) // the replacement thread starts
  expect((await echo(app)).statusCode).toBe(200) // the cancelled task never ran, the pool is fine
})

test('PLUGIN_CONCURRENCY bounds one plugin: 429 PLUGIN_THROTTLED, others unaffected', async () => {
  const app = await setup({ WORKERS: '2', PLUGIN_CONCURRENCY: '1' })
  const running = loop(app)
  await new Promise(resolve => setTimeout(resolve, 50))
  const throttled = await loop(app)
  expect(throttled.statusCode).toBe(429)
  expect(throttled.json().code).toBe('PLUGIN_THROTTLED')
  expect(throttled.headers['retry-after']).toBe('1')
  expect((await echo(app)).statusCode).toBe(200)
  expect((await running).statusCode).toBe(504)
})

test('MAX_PLUGINS: one more upload is 507 INSUFFICIENT_STORAGE; unknown routes are 404 ROUTE_NOT_FOUND', async () => {
  const app = await setup({ MAX_PLUGINS: '2' })
  const res = await app.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(await watFixture('echo'), { name: 'third' }) })
  expect(res.statusCode).toBe(507)
  expect(res.json().code).toBe('INSUFFICIENT_STORAGE')
  const missing = await app.app.inject({ method: 'GET', url: '/nope' })
  expect(missing.statusCode).toBe(404)
  expect(missing.json()).toMatchObject({ code: 'ROUTE_NOT_FOUND', error: 'Not Found' })
  const badName = await app.app.inject({ method: 'GET', url: '/plugins/Not%20A%20Name' })
  expect(badName.statusCode).toBe(400)
  expect(badName.json().code).toBe('INVALID_REQUEST')
})

test('readyz is 503 NOT_READY while shutting down', async () => {
  const app = await setup({})
  expect((await app.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200)
  const closing = app.app.close()
  t = undefined
  await closing
})
