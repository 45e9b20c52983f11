// What a dashboard and an alert need (issue 17): HTTP totals by route and status (uploads,
// 401/413/415 included), module-cache lookups, paused plugins, calls in flight per plugin, a
// build-info series; and the Prometheus alert rules name only metrics the service exports.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { buildTestApp, uploadBody } from '../helpers/build-app'
import type { TestApp } from '../helpers/build-app'
import { watFixture } from '../helpers/fixtures'
import { exportedNames, metricNames } from '../helpers/promql'

const ADMIN = 'admin-token-0123456789'
const auth = { authorization: `Bearer ${ADMIN}` }
let t: TestApp

beforeAll(async () => {
  t = await buildTestApp({ AUTH_TOKEN: ADMIN, BREAKER_THRESHOLD: '1', BREAKER_COOLDOWN_MS: '60000' })
  for (const [name, fixture, manifest] of [['echo', 'echo', {}], ['hostile', 'hostile', { limits: { timeoutMs: 100 } }], ['spin', 'spin', { limits: { timeoutMs: 20_000 } }]] as const) {
    const { headers, payload } = uploadBody(await watFixture(fixture), { name, ...manifest })
    const res = await t.app.inject({ method: 'POST', url: '/plugins', headers: { ...auth, ...headers }, payload })
    expect(res.statusCode).toBe(201)
  }
})
afterAll(async () => { await t.close() })

function value (body: string, series: string): number | undefined {
  const line = body.split('\n').find(l => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

async function scrape (): Promise<string> {
  return (await t.app.inject({ method: 'GET', url: '/metrics' })).body
}

test('HTTP requests are counted by route pattern, method and status', async () => {
  const before = await scrape()
  const denied = await t.app.inject({ method: 'GET', url: '/plugins' })
  expect(denied.statusCode).toBe(401)
  const unsupported = await t.app.inject({ method: 'POST', url: '/plugins', headers: { ...auth, 'content-type': 'application/json' }, payload: '{}' })
  expect(unsupported.statusCode).toBe(415)
  const ok = await t.app.inject({ method: 'POST', url: '/plugins/echo/execute', headers: { ...auth, 'content-type': 'application/json' }, payload: '{}' })
  expect(ok.statusCode).toBe(200)
  await t.app.inject({ method: 'GET', url: '/no/such/route', headers: auth })
  const body = await scrape()
  const delta = (series: string): number => (value(body, series) ?? 0) - (value(before, series) ?? 0)
  expect(delta('http_requests_total{route="/plugins",method="GET",status="401"}')).toBe(1)
  expect(delta('http_requests_total{route="/plugins",method="POST",status="415"}')).toBe(1)
  expect(delta('http_requests_total{route="/plugins/:name/execute",method="POST",status="200"}')).toBe(1)
  expect(delta('http_requests_total{route="unmatched",method="GET",status="404"}')).toBe(1)
  // the upload of beforeAll
  expect(value(body, 'http_requests_total{route="/plugins",method="POST",status="201"}')).toBe(3)
  expect(body).not.toContain('/plugins/echo/execute"')
})

test('build info, cache lookups, calls in flight and paused plugins', async () => {
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }
  expect((await t.app.inject({ method: 'POST', url: '/plugins/echo/execute', headers: { ...auth, 'content-type': 'application/json' }, payload: '{}' })).statusCode).toBe(200)
  let body = await scrape()
  expect(value(body, `wasm_plugin_host_build_info{version="${pkg.version}",node="${process.versions.node}"}`)).toBe(1)
  expect(value(body, 'module_cache_lookups_total{result="hit"}')).toBeGreaterThanOrEqual(1)
  expect(value(body, 'plugins_paused')).toBe(0)

  // A call running now is in flight until it answers.
  const running = t.app.inject({ method: 'POST', url: '/plugins/spin/execute', headers: { ...auth, 'content-type': 'application/json' }, payload: '9' })
  for (let i = 0; i < 200 && value(body, 'plugin_calls_in_flight{plugin="spin"}') !== 1; i++) {
    await new Promise(resolve => setTimeout(resolve, 10))
    body = await scrape()
  }
  expect(value(body, 'plugin_calls_in_flight{plugin="spin"}')).toBe(1)
  expect((await running).statusCode).toBe(200)
  body = await scrape()
  expect(value(body, 'plugin_calls_in_flight{plugin="spin"}')).toBeUndefined()

  // One deadline kill opens the breaker (BREAKER_THRESHOLD=1): the plugin is paused.
  const killed = await t.app.inject({ method: 'POST', url: '/plugins/hostile/execute?function=loop', headers: { ...auth, 'content-type': 'application/json' }, payload: '{}' })
  expect(killed.statusCode).toBe(504)
  body = await scrape()
  expect(value(body, 'plugins_paused')).toBe(1)
})

test('every alert rule names only metrics the service exports', async () => {
  const exported = exportedNames(await scrape())
  const rules = parse(readFileSync(join(__dirname, '..', '..', 'deploy', 'prometheus', 'alerts.yaml'), 'utf8')) as { groups: Array<{ rules: Array<{ alert: string, expr: string }> }> }
  const all = rules.groups.flatMap(g => g.rules)
  expect(all.length).toBeGreaterThanOrEqual(5)
  for (const rule of all) {
    const names = metricNames(rule.expr)
    expect(names.length).toBeGreaterThan(0)
    for (const name of names) expect([rule.alert, name, exported.has(name)]).toEqual([rule.alert, name, true])
  }
})

test('the PromQL name extractor finds names and only names', () => {
  expect(metricNames('histogram_quantile(0.99, sum by (instance, le) (rate(plugin_queue_wait_seconds_bucket{a="b"}[5m]))) > 0.5'))
    .toEqual(['plugin_queue_wait_seconds_bucket'])
  expect(metricNames('sum(rate(http_requests_total{status=~"5.."}[5m])) / sum(rate(http_requests_total[5m])) > bool 0'))
    .toEqual(['http_requests_total'])
  expect(metricNames('max(plugins_paused) and on(instance) up')).toEqual(['plugins_paused', 'up'])
})

test('every metric the README documents is exported', async () => {
  const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8')
  const section = /\n## Metrics\n([\s\S]*?)\n## /.exec(readme)?.[1] ?? ''
  const documented = [...section.matchAll(/`([a-z_:][a-z0-9_:]*)(?:\{[^`]*\})?`/g)].map(m => m[1] as string)
    .filter(name => /_(total|seconds|bytes|size|threads|loaded|paused|connected|in_flight|info)$/.test(name))
  expect(documented.length).toBeGreaterThanOrEqual(14)
  const exported = exportedNames(await scrape())
  expect(documented.filter(name => !exported.has(name))).toEqual([])
})
