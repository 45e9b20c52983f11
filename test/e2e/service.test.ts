// The real server on 127.0.0.1, driven with undici as a user would.
import { spawnSync } from 'node:child_process'
import { FormData, request } from 'undici'
import { startServer, MAIN } from '../helpers/http'
import type { RunningServer } from '../helpers/http'
import { wat, watFixture } from '../helpers/fixtures'
import { removeDir } from '../helpers/build-app'

let server: RunningServer

afterEach(async () => {
  if (server !== undefined) {
    await server.stop()
    removeDir(server.dataDir)
  }
})

async function upload (url: string, wasm: Buffer, manifest: unknown, method = 'POST', path = '/plugins', token?: string) {
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(wasm)], { type: 'application/wasm' }), 'plugin.wasm')
  form.append('manifest', JSON.stringify(manifest))
  const res = await request(`${url}${path}`, { method: method as 'POST', body: form, headers: token !== undefined ? { authorization: `Bearer ${token}` } : {} })
  return { status: res.statusCode, body: await res.body.json() as Record<string, unknown> }
}

async function execute (url: string, name: string, payload: string, query = '', headers: Record<string, string> = {}) {
  const res = await request(`${url}/plugins/${name}/execute${query}`, { method: 'POST', body: payload, headers: { 'content-type': 'application/json', ...headers } })
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

test('a user session: upload, list, execute, replace, delete, over real HTTP', async () => {
  server = await startServer()
  const echo = await watFixture('echo')
  const up = await upload(server.url, echo, { name: 'echo', version: '1.0.0' })
  expect(up.status).toBe(201)
  const list = await request(`${server.url}/plugins`)
  expect((await list.body.json() as { plugins: unknown[] }).plugins).toHaveLength(1)

  const res = await execute(server.url, 'echo', '{"hello":"world"}')
  expect(res.status).toBe(200)
  expect(JSON.parse(res.text)).toEqual({ hello: 'world' })
  expect(res.headers['x-plugin-version']).toBe('1.0.0')
  expect(String(res.headers['server-timing'])).toMatch(/^plugin;dur=/)
  expect(res.headers['x-request-id']).toBeDefined()

  const concurrent = await Promise.all(Array.from({ length: 50 }, async (_, i) => execute(server.url, 'echo', JSON.stringify({ i }))))
  expect(concurrent.map(r => JSON.parse(r.text).i)).toEqual(Array.from({ length: 50 }, (_, i) => i))

  expect((await upload(server.url, await watFixture('echo-i64'), { version: '2.0.0' }, 'PUT', '/plugins/echo')).status).toBe(200)
  expect((await execute(server.url, 'echo', '[1]')).headers['x-plugin-version']).toBe('2.0.0')

  const del = await request(`${server.url}/plugins/echo`, { method: 'DELETE' })
  expect(del.statusCode).toBe(204)
  await del.body.dump()
  expect((await execute(server.url, 'echo', '{}')).status).toBe(404)

  const spec = await request(`${server.url}/openapi.yaml`)
  expect(await spec.body.text()).toMatch(/^openapi: 3/)
})

test('a runaway plugin gets 504 shortly after its deadline, and the service goes on', async () => {
  server = await startServer()
  expect((await upload(server.url, await watFixture('hostile'), { name: 'hostile', limits: { timeoutMs: 250 } })).status).toBe(201)
  expect((await upload(server.url, await watFixture('echo'), { name: 'echo' })).status).toBe(201)
  for (const fn of ['loop', 'fill_loop']) {
    const t0 = performance.now()
    const res = await execute(server.url, 'hostile', '{}', `?function=${fn}`)
    const elapsed = performance.now() - t0
    expect(res.status).toBe(504)
    expect(JSON.parse(res.text).code).toBe('DEADLINE_EXCEEDED')
    expect(elapsed).toBeGreaterThanOrEqual(250)
    expect(elapsed).toBeLessThan(5000)
  }
  expect((await execute(server.url, 'echo', '{"after":"kill"}')).status).toBe(200)
  expect(server.child.exitCode).toBeNull()
})

test('SIGTERM lets a call in flight finish, then exits 0', async () => {
  server = await startServer()
  // a plugin that spins for ~400 ms of wall time, then answers: `loop` with a 10 s deadline would
  // never finish, so use a bounded busy loop instead
  const slow = await wat(`(module (memory (export "memory") 1) (data (i32.const 0) "{\\"done\\":true}")
    (func (export "execute") (param i32 i32) (result i32 i32) (local $i i64)
      (loop $l (local.set $i (i64.add (local.get $i) (i64.const 1))) (br_if $l (i64.lt_u (local.get $i) (i64.const 400000000))))
      (i32.const 0) (i32.const 13)))`)
  expect((await upload(server.url, slow, { name: 'slow' })).status).toBe(201)
  const inFlight = execute(server.url, 'slow', '{}')
  await new Promise(resolve => setTimeout(resolve, 100))
  const exit = server.stop('SIGTERM')
  const res = await inFlight
  expect(res.status).toBe(200)
  expect(JSON.parse(res.text)).toEqual({ done: true })
  expect(await exit).toBe(0)
})

test('a bad configuration stops the process with a message naming the variable', () => {
  const run = spawnSync(process.execPath, [MAIN], { env: { PATH: process.env.PATH ?? '', PORT: 'eighty' }, encoding: 'utf8', timeout: 10_000 })
  expect(run.status).toBe(2)
  expect(run.stderr).toMatch(/PORT/)
  const volumes = spawnSync(process.execPath, [MAIN], { env: { PATH: process.env.PATH ?? '', VOLUMES: 'fixtures=relative/path' }, encoding: 'utf8', timeout: 10_000 })
  expect(volumes.status).toBe(2)
  expect(volumes.stderr).toMatch(/VOLUMES/)
})

test('auth: admin token, execute-only tokens, 401 and 403', async () => {
  const admin = 'admin-token-0123456789'
  const exec = 'exec-token-0123456789ab'
  server = await startServer({ AUTH_TOKEN: admin, EXECUTE_TOKENS: exec })
  const echo = await watFixture('echo')
  expect((await upload(server.url, echo, { name: 'echo' })).status).toBe(401)
  expect((await upload(server.url, echo, { name: 'echo' }, 'POST', '/plugins', exec)).status).toBe(403)
  expect((await upload(server.url, echo, { name: 'echo' }, 'POST', '/plugins', admin)).status).toBe(201)
  expect((await execute(server.url, 'echo', '{}')).status).toBe(401)
  expect((await execute(server.url, 'echo', '{}', '', { authorization: 'Bearer wrong-token-0123456789' })).status).toBe(401)
  expect((await execute(server.url, 'echo', '{"a":1}', '', { authorization: `Bearer ${exec}` })).status).toBe(200)
  expect((await execute(server.url, 'echo', '{"a":1}', '', { authorization: `Bearer ${admin}` })).status).toBe(200)
  const health = await request(`${server.url}/healthz`)
  expect(health.statusCode).toBe(200)
  await health.body.dump()
  const metrics = await request(`${server.url}/metrics`)
  expect(metrics.statusCode).toBe(200)
  await metrics.body.dump()
})
