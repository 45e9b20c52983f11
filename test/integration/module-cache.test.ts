// Many active plugins stay compiled: 150 plugins called round-robin compile once each (at
// upload), not once per call. With a 64-module count bound every call past the 64th plugin
// recompiled; the byte budget (MODULE_CACHE_BYTES, 256 MiB by default) holds them all.
import { buildTestApp, uploadBody } from '../helpers/build-app'
import type { TestApp } from '../helpers/build-app'
import { withCustomSection } from '../helpers/client'
import { watFixture } from '../helpers/fixtures'

const PLUGINS = 150

/** The module with a custom section `salt` holding `i`: distinct bytes and cache keys, same code. */
function salted (base: Buffer, i: number): Buffer {
  return withCustomSection(base, Buffer.from(String(i)), 'salt')
}

function value (body: string, series: string): number {
  const line = body.split('\n').find(l => l.startsWith(`${series} `))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

let t: TestApp
beforeAll(async () => { t = await buildTestApp() })
afterAll(async () => { await t.close() })

test('hundreds of plugins called round-robin are compiled once each, on the defaults', async () => {
  const echo = await watFixture('echo')
  for (let i = 0; i < PLUGINS; i++) {
    const res = await t.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(salted(echo, i), { name: `p${i}` }) })
    expect(res.statusCode).toBe(201)
  }
  const compiledAtUpload = value((await t.app.inject({ method: 'GET', url: '/metrics' })).body, 'plugin_compile_duration_seconds_count')
  expect(compiledAtUpload).toBe(PLUGINS)
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < PLUGINS; i++) {
      const res = await t.app.inject({ method: 'POST', url: `/plugins/p${i}/execute`, payload: `{"i":${i}}`, headers: { 'content-type': 'application/json' } })
      expect(res.statusCode).toBe(200)
      expect(res.body).toBe(`{"i":${i}}`)
    }
  }
  const body = (await t.app.inject({ method: 'GET', url: '/metrics' })).body
  expect(value(body, 'plugin_compile_duration_seconds_count')).toBe(PLUGINS)
  expect(value(body, 'module_cache_lookups_total{result="hit"}')).toBe(2 * PLUGINS)
  expect(value(body, 'module_cache_lookups_total{result="miss"}')).toBe(0)
  expect(value(body, 'module_cache_bytes')).toBeGreaterThan(PLUGINS * 16 * 1024)
})

test('a small budget evicts by bytes and a miss compiles once for the calls waiting on it', async () => {
  // Budget for about 2 echo modules: 3 plugins round-robin miss on every call.
  const small = await buildTestApp({ MODULE_CACHE_BYTES: String(40 * 1024) })
  try {
    const echo = await watFixture('echo')
    for (let i = 0; i < 3; i++) {
      expect((await small.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(salted(echo, i), { name: `q${i}` }) })).statusCode).toBe(201)
    }
    // q0 was evicted by q1 and q2: 8 concurrent calls of it share one compile.
    const answers = await Promise.all(Array.from({ length: 8 }, async () =>
      small.app.inject({ method: 'POST', url: '/plugins/q0/execute', payload: '{}', headers: { 'content-type': 'application/json' } })))
    expect(answers.map(a => a.statusCode)).toEqual(Array(8).fill(200))
    const body = (await small.app.inject({ method: 'GET', url: '/metrics' })).body
    expect(value(body, 'plugin_compile_duration_seconds_count')).toBe(4)
    expect(value(body, 'module_cache_lookups_total{result="miss"}')).toBe(1)
    expect(value(body, 'module_cache_bytes')).toBeLessThanOrEqual(40 * 1024)
  } finally {
    await small.close()
  }
})
