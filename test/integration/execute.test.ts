// The json ABI end to end through inject, with real worker threads.
import { buildTestApp, uploadBody } from '../helpers/build-app'
import type { TestApp } from '../helpers/build-app'
import { wat, watFixture } from '../helpers/fixtures'

let t: TestApp

beforeAll(async () => { t = await buildTestApp() })
afterAll(async () => { await t.close() })

async function install (name: string, wasm: Buffer, manifest: Record<string, unknown> = {}): Promise<void> {
  await t.app.inject({ method: 'DELETE', url: `/plugins/${name}` })
  const res = await t.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(wasm, { name, ...manifest }) })
  expect(res.statusCode).toBe(201)
}

function exec (name: string, payload: unknown, query = '', headers: Record<string, string> = { 'content-type': 'application/json' }) {
  return t.app.inject({ method: 'POST', url: `/plugins/${name}/execute${query}`, payload: typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : JSON.stringify(payload), headers })
}

describe('json ABI', () => {
  beforeAll(async () => {
    await install('echo', await watFixture('echo'), { version: '1.0.1' })
    await install('echo-i64', await watFixture('echo-i64'))
    await install('reactor', await watFixture('reactor'))
    await install('fresh', await watFixture('fresh'))
  })

  test('multi-value entry with alloc returns the input as JSON, with timing and version headers', async () => {
    const res = await exec('echo', { text: 'héllo wörld', n: [1, 2, 3] })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^application\/json/)
    expect(res.json()).toEqual({ text: 'héllo wörld', n: [1, 2, 3] })
    expect(res.headers['server-timing']).toMatch(/^plugin;dur=\d+(\.\d+)?$/)
    expect(res.headers['x-plugin-version']).toBe('1.0.1')
  })

  test('packed i64 entry (run fallback) with host-grown memory', async () => {
    const big = { s: 'x'.repeat(150_000) } // 1 page + 3 grown for the input <= max 4
    const res = await exec('echo-i64', big)
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual(big)
  })

  test('input that does not fit the memory limit is 413', async () => {
    // echo-i64 declares max 4 pages; the host grows memory for the input
    const res = await exec('echo-i64', { s: 'x'.repeat(300_000) })
    expect(res.statusCode).toBe(413)
    expect(res.json().code).toBe('PAYLOAD_TOO_LARGE')
  })

  test('_initialize runs before the entry; main is a fallback', async () => {
    const res = await exec('reactor', {})
    expect(res.json()).toEqual({ initialized: true })
  })

  test('?function= picks an export; unknown or ill-typed ones are 404 FUNCTION_NOT_FOUND', async () => {
    expect((await exec('echo', {}, '?function=constant')).json()).toEqual({ constant: 42 })
    const missing = await exec('echo', {}, '?function=nope')
    expect(missing.statusCode).toBe(404)
    expect(missing.json().code).toBe('FUNCTION_NOT_FOUND')
    const wrongType = await exec('echo', {}, '?function=not_an_entry')
    expect(wrongType.statusCode).toBe(404)
    expect(wrongType.json().message).toMatch(/not a json entry/)
  })

  test('a fresh instance and zeroed memory per call: nothing leaks between calls', async () => {
    for (let i = 0; i < 20; i++) {
      const res = await exec('fresh', {})
      expect(res.json()).toBe(true)
    }
  })

  test('400 INVALID_INPUT for a body that is not JSON, or empty', async () => {
    for (const body of ['{"unterminated', '', 'nan']) {
      const res = await exec('echo', body)
      expect(res.statusCode).toBe(400)
      expect(res.json().code).toBe('INVALID_INPUT')
    }
  })

  test('inputSchema and outputSchema are enforced', async () => {
    await install('typed', await watFixture('echo'), {
      inputSchema: { type: 'object', required: ['text'], properties: { text: { type: 'string' } } },
      outputSchema: { type: 'object', required: ['text'], properties: { text: { type: 'string', maxLength: 5 } } }
    })
    expect((await exec('typed', { text: 'abc' })).json()).toEqual({ text: 'abc' })
    const badIn = await exec('typed', { text: 1 })
    expect(badIn.statusCode).toBe(400)
    expect(badIn.json()).toMatchObject({ code: 'INVALID_INPUT' })
    expect(badIn.json().message).toMatch(/text/)
    const badOut = await exec('typed', { text: 'too long' })
    expect(badOut.statusCode).toBe(502)
    expect(badOut.json().code).toBe('PLUGIN_INVALID_OUTPUT')
  })

  test('413 PAYLOAD_TOO_LARGE for input over MAX_INPUT_BYTES (by one byte)', async () => {
    const small = await buildTestApp({ MAX_INPUT_BYTES: '16' })
    try {
      await small.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(await watFixture('echo'), { name: 'echo' }) })
      const ok = await small.app.inject({ method: 'POST', url: '/plugins/echo/execute', payload: '{"a":"12345678"}', headers: { 'content-type': 'application/json' } })
      expect(ok.statusCode).toBe(200)
      const over = await small.app.inject({ method: 'POST', url: '/plugins/echo/execute', payload: '{"a":"123456789"}', headers: { 'content-type': 'application/json' } })
      expect(over.statusCode).toBe(413)
      expect(over.json().code).toBe('PAYLOAD_TOO_LARGE')
    } finally {
      await small.close()
    }
  })

  test('404 PLUGIN_NOT_FOUND for an unknown plugin', async () => {
    const res = await exec('ghost', {})
    expect(res.statusCode).toBe(404)
    expect(res.json()).toEqual({ statusCode: 404, code: 'PLUGIN_NOT_FOUND', error: 'Not Found', message: "plugin 'ghost' not found" })
  })

  test('outputBytes limit: an output one byte over is refused', async () => {
    await install('limited', await watFixture('echo'), { limits: { outputBytes: 10 } })
    expect((await exec('limited', '"12345678"')).statusCode).toBe(200) // 10 bytes
    const over = await exec('limited', '"123456789"') // 11 bytes
    expect(over.statusCode).toBe(502)
    expect(over.json().code).toBe('PLUGIN_INVALID_OUTPUT')
  })

  test('a replace does not break the calls that follow', async () => {
    await install('swap', await watFixture('echo'), { version: '1.0.0' })
    const before = await exec('swap', { v: 1 })
    expect(before.headers['x-plugin-version']).toBe('1.0.0')
    const v2 = await wat(`(module (memory (export "memory") 1)
      (data (i32.const 0) "{\\"v\\":2}") (func (export "execute") (param i32 i32) (result i32 i32) (i32.const 0) (i32.const 7)))`)
    const put = await t.app.inject({ method: 'PUT', url: '/plugins/swap', ...uploadBody(v2, { version: '2.0.0' }) })
    expect(put.statusCode).toBe(200)
    const after = await exec('swap', { v: 1 })
    expect(after.json()).toEqual({ v: 2 })
    expect(after.headers['x-plugin-version']).toBe('2.0.0')
  })
})
