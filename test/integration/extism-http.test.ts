// http_request of extism plugins against servers on 127.0.0.1: allowed hosts, refused hosts
// (the server never sees the request), private addresses, redirects, the body cap, the
// requests-per-call cap, and a slow server past the deadline.
import { readdirSync } from 'node:fs'
import { createServer } from 'node:http'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { buildTestApp, uploadBody } from '../helpers/build-app'
import type { TestApp } from '../helpers/build-app'
import { watFixture } from '../helpers/fixtures'

let server: Server
let port = 0
const hits: Record<string, number> = {}
const openSockets = new Set<unknown>()
let open: TestApp
let strict: TestApp
let wasm: Buffer

beforeAll(async () => {
  server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] as string
    hits[path] = (hits[path] ?? 0) + 1
    if (path === '/hello') { res.setHeader('x-test', 'yes'); res.end('hello from 127.0.0.1'); return }
    if (path === '/echo') { const chunks: Buffer[] = []; req.on('data', (c: Buffer) => chunks.push(c)); req.on('end', () => res.end(`${req.method ?? ''} ${Buffer.concat(chunks).toString()}`)); return }
    if (path === '/redirect') { res.statusCode = 302; res.setHeader('location', '/hello'); res.end('moved'); return }
    if (path === '/big') { res.end('x'.repeat(5000)); return }
    if (path === '/slow') return // never answers
    res.statusCode = 404
    res.end('no')
  })
  server.on('connection', (socket) => { openSockets.add(socket); socket.on('close', () => openSockets.delete(socket)) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  port = (server.address() as AddressInfo).port
  wasm = await watFixture('extism-host')
  open = await buildTestApp({ ALLOWED_HOSTS: '127.0.0.1,localhost', HTTP_ALLOW_PRIVATE: 'true', BREAKER_THRESHOLD: '0' })
  strict = await buildTestApp({ ALLOWED_HOSTS: '127.0.0.1,localhost', HTTP_ALLOW_PRIVATE: 'false' })
})
afterAll(async () => {
  await open.close()
  await strict.close()
  server.closeAllConnections()
  await new Promise(resolve => server.close(resolve))
})

async function upload (t: TestApp, name: string, manifest: Record<string, unknown>): Promise<void> {
  const res = await t.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(wasm, { name, ...manifest }) })
  expect(res.statusCode).toBe(201)
}

function call (t: TestApp, name: string, fn: string, request: Record<string, unknown>) {
  return t.app.inject({ method: 'POST', url: `/plugins/${name}/execute?function=${fn}`, payload: JSON.stringify(request), headers: { 'content-type': 'application/json' } })
}

const url = (path: string, host = '127.0.0.1'): string => `http://${host}:${port}${path}`

test('an allowed host: body, status, a POST body, and headers only when responseHeaders is granted', async () => {
  await upload(open, 'web', { capabilities: { http: { allowedHosts: ['127.0.0.1'] } } })
  const get = await call(open, 'web', 'get', { url: url('/hello') })
  expect(get.statusCode).toBe(200)
  expect(get.body).toBe('hello from 127.0.0.1')
  expect((await call(open, 'web', 'status', { url: url('/nothing') })).rawPayload.readBigUInt64LE(0)).toBe(404n)
  expect((await call(open, 'web', 'post', { url: url('/echo'), method: 'POST', headers: { 'content-type': 'text/plain' } })).body).toBe('POST posted body')
  expect((await call(open, 'web', 'headers', { url: url('/hello') })).body).toBe('none')
  await upload(open, 'web-headers', { capabilities: { http: { allowedHosts: ['127.0.0.1'], responseHeaders: true } } })
  expect(JSON.parse((await call(open, 'web-headers', 'headers', { url: url('/hello') })).body)).toMatchObject({ 'x-test': 'yes' })
})

test('a host the plugin was not granted: CAPABILITY_DENIED naming it, and the server never sees the request', async () => {
  const before = hits['/hello'] ?? 0
  const res = await call(open, 'web', 'get', { url: url('/hello', 'localhost') })
  expect(res.json()).toMatchObject({ statusCode: 422, code: 'CAPABILITY_DENIED', details: { host: 'localhost' } })
  expect((await call(open, 'web', 'get', { url: 'file:///etc/passwd' })).json()).toMatchObject({ code: 'CAPABILITY_DENIED' })
  expect(hits['/hello'] ?? 0).toBe(before)
})

test('HTTP_ALLOW_PRIVATE=false: a loopback address, literal or resolved, is refused before any connection', async () => {
  await upload(strict, 'web', { capabilities: { http: { allowedHosts: ['127.0.0.1', 'localhost'] } } })
  const before = hits['/hello'] ?? 0
  const literal = await call(strict, 'web', 'get', { url: url('/hello') })
  expect(literal.json()).toMatchObject({ code: 'CAPABILITY_DENIED', details: { host: '127.0.0.1' } })
  const resolved = await call(strict, 'web', 'get', { url: url('/hello', 'localhost') })
  expect(resolved.json()).toMatchObject({ code: 'CAPABILITY_DENIED', details: { host: 'localhost' } })
  expect(resolved.json().message).toMatch(/resolves to/)
  expect(hits['/hello'] ?? 0).toBe(before)
})

test('a redirect is returned to the plugin, not followed', async () => {
  const before = hits['/hello'] ?? 0
  expect((await call(open, 'web', 'status', { url: url('/redirect') })).rawPayload.readBigUInt64LE(0)).toBe(302n)
  expect((await call(open, 'web', 'get', { url: url('/redirect') })).body).toBe('moved')
  expect(hits['/hello'] ?? 0).toBe(before)
})

test('a body over limits.httpResponseBytes fails the call', async () => {
  await upload(open, 'capped', { capabilities: { http: { allowedHosts: ['127.0.0.1'] } }, limits: { httpResponseBytes: 1000 } })
  const res = await call(open, 'capped', 'get', { url: url('/big') })
  expect(res.json()).toMatchObject({ code: 'PLUGIN_ERROR' })
  expect(res.json().message).toMatch(/httpResponseBytes/)
})

test('http_request in a loop stops at limits.httpRequests; requests are counted by outcome', async () => {
  await upload(open, 'loop', { capabilities: { http: { allowedHosts: ['127.0.0.1'] } }, limits: { httpRequests: 3 } })
  const before = hits['/hello'] ?? 0
  const res = await call(open, 'loop', 'http_loop', { url: url('/hello') })
  expect(res.json()).toMatchObject({ code: 'PLUGIN_ERROR' })
  expect(res.json().message).toMatch(/httpRequests/)
  expect((hits['/hello'] ?? 0) - before).toBe(3)
  const metrics = (await open.app.inject({ method: 'GET', url: '/metrics' })).body
  expect(metrics).toContain('plugin_http_requests_total{plugin="loop",outcome="ok"} 3')
  expect(metrics).toContain('plugin_http_requests_total{plugin="loop",outcome="plugin_error"} 1')
})

test('a slow server past the deadline: 504, the worker replaced, the socket closed, fds back to baseline', async () => {
  await upload(open, 'slow', { capabilities: { http: { allowedHosts: ['127.0.0.1'] } }, limits: { timeoutMs: 500 } })
  // Pooled keep-alive sockets of the earlier tests close within 4 s; start from a quiet state.
  await waitFor(() => openSockets.size === 0, 10_000)
  const baseline = readdirSync('/proc/self/fd').length
  const res = await call(open, 'slow', 'get', { url: url('/slow') })
  expect(res.json()).toMatchObject({ statusCode: 504, code: 'DEADLINE_EXCEEDED' })
  expect(hits['/slow']).toBe(1)
  const metrics = (await open.app.inject({ method: 'GET', url: '/metrics' })).body
  expect(metrics).toMatch(/worker_terminations_total\{reason="deadline"\} 1/)
  await waitFor(() => openSockets.size === 0, 5000)
  await waitFor(() => readdirSync('/proc/self/fd').length <= baseline, 5000)
  expect(readdirSync('/proc/self/fd').length).toBeLessThanOrEqual(baseline)
  // The replacement thread serves the next call.
  expect((await call(open, 'web', 'get', { url: url('/hello') })).body).toBe('hello from 127.0.0.1')
})

async function waitFor (condition: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms
  while (!condition() && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 50))
}
