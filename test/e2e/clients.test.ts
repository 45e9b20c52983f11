// Hostile and broken clients against the real server: slow bodies (request timeout), slow or
// endless headers (header timeout, slowloris), idle connections, multipart limits, body
// limits, prototype poisoning, malformed HTTP. Raw `node:net` sockets play the clients undici
// will not imitate. Timeouts are short here (REQUEST_TIMEOUT_MS=2000, HEADERS_TIMEOUT_MS=1000,
// KEEP_ALIVE_TIMEOUT_MS=1000); lower bounds are checked exactly (never cut before the
// timeout), upper bounds with slack for a loaded machine.
//
// Authentication (401/403, execute-only tokens) is tested in service.test.ts; auth.ts compares
// tokens in constant time (SHA-256 digests + timingSafeEqual, no early exit) and is unchanged.
import { Readable } from 'node:stream'
import { Client, request } from 'undici'
import { buildTestApp, multipart, removeDir, uploadBody } from '../helpers/build-app'
import { errorShapeProblem, parseRawResponse, rawClient, sendUpload, sleep } from '../helpers/client'
import type { RawClient } from '../helpers/client'
import { wat, watFixture } from '../helpers/fixtures'
import { startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'

jest.setTimeout(60_000)

const REQUEST_TIMEOUT_MS = 2000
const HEADERS_TIMEOUT_MS = 1000
const KEEP_ALIVE_TIMEOUT_MS = 1000
const MAX_INPUT_BYTES = 1024
const MAX_UPLOAD_BYTES = 64 * 1024
const MANIFEST_FIELD_BYTES = 64 * 1024
/** How late a timeout may fire on a loaded machine (node sweeps every HEADERS_TIMEOUT_MS / 4). */
const SLACK_MS = 3000

let server: RunningServer
let echo: Buffer

beforeAll(async () => {
  echo = await watFixture('echo')
  server = await startServer({
    REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
    HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
    KEEP_ALIVE_TIMEOUT_MS: String(KEEP_ALIVE_TIMEOUT_MS),
    MAX_INPUT_BYTES: String(MAX_INPUT_BYTES),
    MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES),
    MAX_TIMEOUT_MS: '20000'
  })
  expect((await sendUpload(server.url, 'POST', '/plugins', echo, { name: 'echo' })).status).toBe(201)
})

afterAll(async () => {
  if (server === undefined) return
  await server.stop()
  removeDir(server.dataDir)
  // Nothing a client did here is a bug of ours: no error (level 50) was logged.
  expect(server.output()).not.toMatch(/"level":50/)
})

const host = (): string => new URL(server.url).host

/** The documented error shape, read off a raw HTTP answer. */
function expectRawError (raw: string, status: number): void {
  const res = parseRawResponse(raw)
  if (res === undefined) throw new Error(`not an HTTP answer: ${JSON.stringify(raw.slice(0, 300))}`)
  expect(res.status).toBe(status)
  expect(errorShapeProblem(status, res.body)).toBeUndefined()
}

async function healthy (): Promise<number> {
  const t0 = performance.now()
  const res = await request(`${server.url}/healthz`)
  await res.body.dump()
  expect(res.statusCode).toBe(200)
  return performance.now() - t0
}

/** A json plugin that sleeps `ms` (WASI poll_oneoff on the monotonic clock), then answers {"slept":true}. */
async function sleeperPlugin (ms: number): Promise<Buffer> {
  return wat(`(module
    (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 200) "{\\"slept\\":true}")
    (func (export "execute") (param i32 i32) (result i32 i32)
      (i32.store8 (i32.const 8) (i32.const 0))
      (i32.store (i32.const 16) (i32.const 1))
      (i64.store (i32.const 24) (i64.const ${ms * 1_000_000}))
      (i64.store (i32.const 32) (i64.const 0))
      (i32.store16 (i32.const 40) (i32.const 0))
      (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
      (i32.const 200) (i32.const 14)))`)
}

/** Writes `data` one byte every `everyMs` until the socket closes (or the data runs out). */
async function trickle (c: RawClient, data: string, everyMs: number): Promise<void> {
  let open = true
  c.closed.then(() => { open = false }, () => {})
  for (const ch of data) {
    if (!open) return
    c.write(ch)
    await sleep(everyMs)
  }
}

describe('timeouts', () => {
  test('a body trickled slower than REQUEST_TIMEOUT_MS is cut off with 408 (execute and upload)', async () => {
    const requests = [
      `POST /plugins/echo/execute HTTP/1.1\r\nhost: ${host()}\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n`,
      `POST /plugins HTTP/1.1\r\nhost: ${host()}\r\ncontent-type: multipart/form-data; boundary=b\r\ncontent-length: 100000\r\n\r\n`
    ]
    await Promise.all(requests.map(async (head) => {
      const c = await rawClient(server.url)
      c.write(head)
      trickle(c, '-'.repeat(1000), 200).catch(() => {})
      const closedAt = await c.closed
      expect(closedAt).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 50)
      expect(closedAt).toBeLessThan(REQUEST_TIMEOUT_MS + SLACK_MS)
      expectRawError(c.received(), 408)
    }))
    await healthy()
  })

  test('headers that never end are cut off after HEADERS_TIMEOUT_MS with 408', async () => {
    const c = await rawClient(server.url)
    c.write(`GET /healthz HTTP/1.1\r\nhost: ${host()}\r\n`)
    trickle(c, 'x-slow: 1\r\n'.repeat(100), 100).catch(() => {})
    const closedAt = await c.closed
    expect(closedAt).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50)
    expect(closedAt).toBeLessThan(HEADERS_TIMEOUT_MS + SLACK_MS)
    expectRawError(c.received(), 408)
  })

  test('slowloris: 40 connections dripping their headers are all closed, and others are served meanwhile', async () => {
    const clients = await Promise.all(Array.from({ length: 40 }, async () => rawClient(server.url)))
    for (const c of clients) {
      c.write('GET /healthz HTTP/1.1\r\n')
      trickle(c, 'x-drip: ' + 'a'.repeat(200), 150).catch(() => {})
    }
    const latencies: number[] = []
    const served = (async () => {
      for (let i = 0; i < 10; i++) {
        latencies.push(await healthy())
        await sleep(50)
      }
    })()
    const closed = await Promise.all(clients.map(async c => c.closed))
    await served
    for (const at of closed) {
      expect(at).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50)
      expect(at).toBeLessThan(HEADERS_TIMEOUT_MS + SLACK_MS)
    }
    expect(Math.max(...latencies)).toBeLessThan(1000)
  })

  test('a connection that sends nothing is closed after HEADERS_TIMEOUT_MS', async () => {
    const c = await rawClient(server.url)
    const closedAt = await c.closed
    expect(closedAt).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 50)
    expect(closedAt).toBeLessThan(HEADERS_TIMEOUT_MS + SLACK_MS)
  })

  test('an idle keep-alive connection is closed after KEEP_ALIVE_TIMEOUT_MS', async () => {
    const c = await rawClient(server.url)
    c.write(`GET /healthz HTTP/1.1\r\nhost: ${host()}\r\n\r\n`)
    while (!c.received().includes('{"status":"ok"}')) await sleep(10)
    const answeredAt = performance.now()
    await c.closed
    const idle = performance.now() - answeredAt
    expect(parseRawResponse(c.received())?.status).toBe(200)
    expect(idle).toBeGreaterThanOrEqual(KEEP_ALIVE_TIMEOUT_MS - 100)
    expect(idle).toBeLessThan(KEEP_ALIVE_TIMEOUT_MS + SLACK_MS)
  })

  test('a call that runs longer than the request timeout is answered: the socket is not cut while the plugin runs', async () => {
    // A json plugin that sleeps for 13 s, past REQUEST_TIMEOUT_MS + 10 s, what the
    // connection's inactivity timeout used to be.
    const sleeper = await sleeperPlugin(13_000)
    expect((await sendUpload(server.url, 'POST', '/plugins', sleeper, { name: 'sleeper', limits: { timeoutMs: 20_000 }, capabilities: { wasi: {} } })).status).toBe(201)
    const t0 = performance.now()
    const res = await request(`${server.url}/plugins/sleeper/execute`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' }, headersTimeout: 30_000 })
    expect(res.statusCode).toBe(200)
    expect(await res.body.json()).toEqual({ slept: true })
    expect(performance.now() - t0).toBeGreaterThanOrEqual(12_900)
  }, 40_000)
})

describe('limits', () => {
  /** One keep-alive connection: a refused request must not wedge the next one on it. */
  let client: Client

  beforeAll(() => { client = new Client(server.url, { pipelining: 1, connections: 1 } as Client.Options) })
  afterAll(async () => { await client.close() })

  async function send (method: 'POST' | 'PUT' | 'DELETE', path: string, body: { payload: Buffer, headers: Record<string, string> } | undefined): Promise<{ status: number, json: Record<string, unknown> }> {
    const res = await client.request({ method, path, ...(body !== undefined ? { body: body.payload, headers: body.headers } : {}), headersTimeout: 5000 })
    const text = await res.body.text()
    if (res.statusCode >= 400) expect(errorShapeProblem(res.statusCode, text)).toBeUndefined()
    // and the connection is still good for the next request
    const next = await client.request({ method: 'GET', path: '/healthz', headersTimeout: 5000 })
    expect(next.statusCode).toBe(200)
    await next.body.dump()
    return { status: res.statusCode, json: text === '' ? {} : JSON.parse(text) as Record<string, unknown> }
  }

  const file = (name = 'module', content: Buffer = echo): { name: string, filename: string, content: Buffer } => ({ name, filename: 'x.wasm', content })

  test('one file part only: a second file part is refused', async () => {
    const res = await send('POST', '/plugins', multipart([file(), file('module', echo), { name: 'manifest', content: '{"name":"two-files"}' }]))
    expect([400, 413]).toContain(res.status)
    const other = await send('POST', '/plugins', multipart([file(), file('other')]))
    expect([400, 413]).toContain(other.status)
    expect((await request(`${server.url}/plugins/two-files`)).statusCode).toBe(404)
  })

  test('fields: only `manifest` is accepted', async () => {
    const res = await send('POST', '/plugins', multipart([file(), { name: 'note', content: 'hello' }]))
    expect(res.status).toBe(400)
    expect(res.json.code).toBe('INVALID_REQUEST')
    const asField = await send('POST', '/plugins', multipart([{ name: 'module', content: echo }]))
    expect(asField.status).toBe(400)
  })

  test('a manifest field over 64 KiB is 413, before or after the module', async () => {
    const big = JSON.stringify({ name: 'big', version: 'v'.repeat(MANIFEST_FIELD_BYTES) })
    for (const parts of [[file(), { name: 'manifest', content: big }], [{ name: 'manifest', content: big }, file()]]) {
      const res = await send('POST', '/plugins', multipart(parts))
      expect(res.status).toBe(413)
      expect(res.json.code).toBe('PAYLOAD_TOO_LARGE')
    }
  })

  test('more parts than allowed is 413', async () => {
    const manifest = (i: number): { name: string, content: string } => ({ name: 'manifest', content: `{"name":"parts-${i}"}` })
    for (const parts of [
      [file(), ...Array.from({ length: 10 }, (_, i) => manifest(i))],
      [manifest(0), file(), manifest(1)],
      [manifest(0), file(), file()]
    ]) {
      const res = await send('POST', '/plugins', multipart(parts))
      expect(res.status).toBe(413)
      expect(res.json.code).toBe('PAYLOAD_TOO_LARGE')
    }
  })

  test('a module over MAX_UPLOAD_BYTES is 413', async () => {
    const res = await send('POST', '/plugins', multipart([file('module', Buffer.alloc(MAX_UPLOAD_BYTES + 1)), { name: 'manifest', content: '{"name":"huge"}' }]))
    expect(res.status).toBe(413)
    expect(res.json.code).toBe('PAYLOAD_TOO_LARGE')
  })

  test('broken multipart (no boundary, truncated body) is 400, not 500', async () => {
    const { payload, headers } = uploadBody(echo, { name: 'cut' })
    const truncated = await send('POST', '/plugins', { payload: payload.subarray(0, payload.length - 30), headers })
    expect(truncated.status).toBe(400)
    const noBoundary = await send('PUT', '/plugins/cut', { payload, headers: { 'content-type': 'multipart/form-data' } })
    expect(noBoundary.status).toBe(400)
  })

  test('execute: MAX_INPUT_BYTES is accepted, one byte more is 413 (with or without content-length)', async () => {
    const fits = `{"p":"${'x'.repeat(MAX_INPUT_BYTES - 8)}"}`
    expect(fits.length).toBe(MAX_INPUT_BYTES)
    const ok = await request(`${server.url}/plugins/echo/execute`, { method: 'POST', body: fits, headers: { 'content-type': 'application/json' } })
    expect(ok.statusCode).toBe(200)
    expect(await ok.body.text()).toBe(fits)
    const over = `{"p":"${'x'.repeat(MAX_INPUT_BYTES - 7)}"}`
    for (const body of [over, Readable.from([Buffer.from(over.slice(0, 500)), Buffer.from(over.slice(500))])]) {
      const res = await request(`${server.url}/plugins/echo/execute`, { method: 'POST', body, headers: { 'content-type': 'application/json' } })
      const text = await res.body.text()
      expect(res.statusCode).toBe(413)
      expect(JSON.parse(text).code).toBe('PAYLOAD_TOO_LARGE')
      expect(errorShapeProblem(413, text)).toBeUndefined()
    }
  })
})

describe('prototype poisoning', () => {
  const poisoned = [
    '{"name":"p1","__proto__":{"polluted":true}}',
    '{"name":"p2","constructor":{"prototype":{"polluted":true}}}',
    '{"name":"p3","inputSchema":{"type":"object","__proto__":{"polluted":true}}}',
    '{"name":"p4","inputSchema":{"properties":{"x":{"constructor":{"prototype":{"polluted":true}}}}}}'
  ]

  test('a manifest with "__proto__" or "constructor.prototype" anywhere is refused (as text or as a JSON field)', async () => {
    for (const manifest of poisoned) {
      for (const type of ['text/plain', 'application/json']) {
        const { payload, headers } = multipart([{ name: 'module', filename: 'p.wasm', content: echo }, { name: 'manifest', content: manifest, type }])
        const res = await request(`${server.url}/plugins`, { method: 'POST', body: payload, headers })
        const text = await res.body.text()
        expect({ manifest, type, status: res.statusCode }).toEqual({ manifest, type, status: 400 })
        expect(JSON.parse(text).code).toBe('INVALID_MANIFEST')
      }
    }
    const list = await request(`${server.url}/plugins`)
    expect((await list.body.json() as { plugins: Array<{ name: string }> }).plugins.map(p => p.name)).not.toEqual(expect.arrayContaining(['p1']))
  })

  test('a JSON body with "__proto__" is refused where the service parses JSON', async () => {
    for (const [method, path] of [['POST', '/plugins'], ['PUT', '/plugins/echo'], ['DELETE', '/plugins/echo']] as const) {
      const res = await request(`${server.url}${path}`, { method, body: '{"__proto__":{"polluted":true}}', headers: { 'content-type': 'application/json' } })
      const text = await res.body.text()
      expect(res.statusCode).toBe(400)
      expect(errorShapeProblem(400, text)).toBeUndefined()
    }
    expect((await request(`${server.url}/plugins/echo`)).statusCode).toBe(200)
  })

  test('nothing pollutes Object.prototype: poisoned manifests, upload bodies and execute inputs, in process', async () => {
    const t = await buildTestApp()
    try {
      expect((await t.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(echo, { name: 'echo', inputSchema: { type: 'object' } }) })).statusCode).toBe(201)
      for (const manifest of poisoned) {
        const { payload, headers } = multipart([{ name: 'module', filename: 'p.wasm', content: echo }, { name: 'manifest', content: manifest }])
        await t.app.inject({ method: 'POST', url: '/plugins', payload, headers })
      }
      for (const body of ['{"__proto__":{"polluted":true}}', '{"constructor":{"prototype":{"polluted":true}}}', '{"a":{"__proto__":{"polluted":true}}}']) {
        await t.app.inject({ method: 'POST', url: '/plugins', payload: body, headers: { 'content-type': 'application/json' } })
        // execute passes its body to the plugin as bytes; the host parses it only to check
        // the inputSchema (JSON.parse makes "__proto__" an own property; ajv only reads)
        const res = await t.app.inject({ method: 'POST', url: '/plugins/echo/execute', payload: body, headers: { 'content-type': 'application/json' } })
        expect(res.statusCode).toBe(200)
      }
      expect(({} as Record<string, unknown>).polluted).toBeUndefined()
      expect(Object.prototype).not.toHaveProperty('polluted')
    } finally {
      await t.close()
      removeDir(t.dataDir)
    }
  })
})

describe('shutdown', () => {
  test('a request completed on an open connection while the server drains is refused in the documented shape', async () => {
    const draining = await startServer()
    try {
      expect((await sendUpload(draining.url, 'POST', '/plugins', await sleeperPlugin(1500), { name: 'sleeper', capabilities: { wasi: {} } })).status).toBe(201)
      const head = `host: ${new URL(draining.url).host}\r\n`
      // A call in flight keeps the server draining; a second connection has begun a request
      // (so it is not idle, and not closed as idle connections are) and ends it after SIGTERM.
      const inFlight = request(`${draining.url}/plugins/sleeper/execute`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })
      const late = await rawClient(draining.url)
      late.write(`GET /plugins HTTP/1.1\r\n${head}`)
      await sleep(300)
      const exit = draining.stop('SIGTERM')
      await sleep(300)
      late.write('\r\n')
      await late.closed
      expectRawError(late.received(), 503)
      expect(JSON.parse(parseRawResponse(late.received())?.body ?? '').code).toBe('NOT_READY')
      const res = await inFlight
      expect(res.statusCode).toBe(200)
      expect(await res.body.json()).toEqual({ slept: true })
      expect(await exit).toBe(0)
    } finally {
      await draining.stop()
      removeDir(draining.dataDir)
    }
  })
})

describe('malformed HTTP', () => {
  test.each([
    ['an unknown method', 'BREW /plugins HTTP/1.1\r\nhost: x\r\n\r\n', 400],
    ['a garbage request line', 'hello there\r\n\r\n', 400],
    ['a bad header line', 'GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n', 400],
    ['headers over 16 KiB', `GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
    ['both content-length and chunked', 'POST /plugins/echo/execute HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n', 400]
  ])('%s: answered in the documented shape, then closed', async (_what, raw, status) => {
    const c = await rawClient(server.url)
    c.write(raw)
    await c.closed
    expectRawError(c.received(), status)
  })

  test('a bad percent-encoding or an over-long path parameter is 400 INVALID_REQUEST', async () => {
    for (const path of ['/plugins/%E0%A4%A', `/plugins/${'a'.repeat(500)}`, `/plugins/${'a'.repeat(500)}/execute`]) {
      const res = await request(`${server.url}${path}`, { method: path.endsWith('execute') ? 'POST' : 'GET' })
      const text = await res.body.text()
      expect({ path: path.slice(0, 40), status: res.statusCode }).toEqual({ path: path.slice(0, 40), status: 400 })
      expect(JSON.parse(text).code).toBe('INVALID_REQUEST')
      expect(res.headers['x-request-id']).toBeDefined()
    }
  })
})
