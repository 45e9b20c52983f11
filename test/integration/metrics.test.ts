// /metrics after calls of every outcome: each series with the right labels, counted once.
import { buildTestApp, uploadBody } from '../helpers/build-app'
import type { TestApp } from '../helpers/build-app'
import { watFixture } from '../helpers/fixtures'

let t: TestApp

beforeAll(async () => {
  t = await buildTestApp()
  for (const [name, fixture, manifest] of [['echo', 'echo', {}], ['hostile', 'hostile', { limits: { timeoutMs: 200, outputBytes: 64 } }]] as const) {
    const res = await t.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(await watFixture(fixture), { name, ...manifest }) })
    expect(res.statusCode).toBe(201)
  }
})
afterAll(async () => { await t.close() })

function value (body: string, series: string): number | undefined {
  const line = body.split('\n').find(l => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

test('every outcome is counted under its lower-cased code', async () => {
  const calls: Array<[string, string, unknown]> = [
    ['echo', '', { ok: 1 }],
    ['echo', '', { ok: 2 }],
    ['echo', '', 'not json'],
    ['echo', '?function=nope', {}],
    ['hostile', '?function=unreachable', {}],
    ['hostile', '?function=out_huge', {}],
    ['hostile', '?function=loop', {}]
  ]
  for (const [name, query, payload] of calls) {
    await t.app.inject({ method: 'POST', url: `/plugins/${name}/execute${query}`, payload: typeof payload === 'string' ? payload : JSON.stringify(payload), headers: { 'content-type': 'application/json' } })
  }
  const body = (await t.app.inject({ method: 'GET', url: '/metrics' })).body
  expect(value(body, 'plugin_executions_total{plugin="echo",outcome="ok"}')).toBe(2)
  expect(value(body, 'plugin_executions_total{plugin="echo",outcome="invalid_input"}')).toBe(1)
  expect(value(body, 'plugin_executions_total{plugin="echo",outcome="function_not_found"}')).toBe(1)
  expect(value(body, 'plugin_executions_total{plugin="hostile",outcome="plugin_trap"}')).toBe(1)
  expect(value(body, 'plugin_executions_total{plugin="hostile",outcome="plugin_invalid_output"}')).toBe(1)
  expect(value(body, 'plugin_executions_total{plugin="hostile",outcome="deadline_exceeded"}')).toBe(1)
  expect(value(body, 'plugin_execution_duration_seconds_count{plugin="echo"}')).toBe(2)
  expect(value(body, 'worker_terminations_total{reason="deadline"}')).toBe(1)
  expect(value(body, 'plugins_loaded')).toBe(2)
  expect(value(body, 'worker_pool_threads')).toBe(2)
  expect(value(body, 'worker_pool_queue_size')).toBe(0)
  expect(value(body, 'plugin_compile_duration_seconds_count')).toBe(2)
  expect(value(body, 'plugin_queue_wait_seconds_count')).toBeGreaterThanOrEqual(5)
})

test('a deleted plugin\'s series are removed; plugins_loaded follows', async () => {
  const up = await t.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(await watFixture('echo'), { name: 'temporary' }) })
  expect(up.statusCode).toBe(201)
  await t.app.inject({ method: 'POST', url: '/plugins/temporary/execute', payload: {} })
  let body = (await t.app.inject({ method: 'GET', url: '/metrics' })).body
  expect(value(body, 'plugin_executions_total{plugin="temporary",outcome="ok"}')).toBe(1)
  expect(value(body, 'plugins_loaded')).toBe(3)
  await t.app.inject({ method: 'DELETE', url: '/plugins/temporary' })
  await new Promise(resolve => setImmediate(resolve))
  body = (await t.app.inject({ method: 'GET', url: '/metrics' })).body
  expect(body).not.toContain('plugin="temporary"')
  expect(value(body, 'plugins_loaded')).toBe(2)
})
