// Plugin administration through buildApp + inject, with a real pool and a temp data dir.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { buildTestApp, multipart, uploadBody } from '../helpers/build-app'
import type { TestApp } from '../helpers/build-app'
import { wat, watFixture } from '../helpers/fixtures'

let t: TestApp
let echo: Buffer

beforeAll(async () => { echo = await watFixture('echo') })
beforeEach(async () => { t = await buildTestApp() })
afterEach(async () => { await t.close() })

async function upload (wasm: Buffer, manifest?: unknown, filename?: string, method: 'POST' | 'PUT' = 'POST', url = '/plugins') {
  const body = uploadBody(wasm, manifest, filename)
  return t.app.inject({ method, url, ...body })
}

describe('POST /plugins', () => {
  test('uploads, describes and lists a plugin', async () => {
    const res = await upload(echo, { name: 'echo', version: '1.2.0' })
    expect(res.statusCode).toBe(201)
    const d = res.json()
    expect(d).toMatchObject({
      name: 'echo',
      version: '1.2.0',
      abi: 'json',
      size: echo.length,
      limits: { memoryBytes: 16 * 1024 * 1024, timeoutMs: 5000, tableElements: 10000, outputBytes: 1024 * 1024 },
      capabilities: {}
    })
    expect(d.sha256).toMatch(/^[0-9a-f]{64}$/)
    expect(d.entries).toEqual(expect.arrayContaining(['execute', 'constant']))
    expect(d.entries).not.toContain('not_an_entry')
    expect(d.exports).toEqual(expect.arrayContaining([{ name: 'memory', kind: 'memory' }, { name: 'alloc', kind: 'func' }]))
    expect(res.headers.location).toBe('/plugins/echo')

    const one = await t.app.inject({ method: 'GET', url: '/plugins/echo' })
    expect(one.statusCode).toBe(200)
    expect(one.json()).toEqual(d)
    const all = await t.app.inject({ method: 'GET', url: '/plugins' })
    expect(all.json()).toEqual({ plugins: [d] })
  })

  test('derives the name from the file name and the version from a custom section', async () => {
    // a `version` custom section: id 0, size, name "version", payload "3.1.4"
    const name = Buffer.from('version')
    const payload = Buffer.from('3.1.4')
    const section = Buffer.concat([Buffer.from([0, 1 + name.length + payload.length, name.length]), name, payload])
    const res = await upload(Buffer.concat([echo, section]), undefined, 'Count-Vowels.wasm')
    expect(res.statusCode).toBe(201)
    expect(res.json()).toMatchObject({ name: 'count-vowels', version: '3.1.4' })
  })

  test('409 PLUGIN_EXISTS for a second POST of the same name', async () => {
    expect((await upload(echo, { name: 'echo' })).statusCode).toBe(201)
    const res = await upload(echo, { name: 'echo' })
    expect(res.statusCode).toBe(409)
    expect(res.json()).toMatchObject({ statusCode: 409, code: 'PLUGIN_EXISTS', error: 'Conflict' })
  })

  test.each([
    ['garbage bytes', Buffer.from('this is not wasm at all'), /magic/],
    ['an empty file', Buffer.alloc(0), /magic/],
    ['a truncated module', Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 0x60]), /./],
    ['a module that fails to compile', Buffer.from('0061736d010000000105016000017f030201000a05010300000b', 'hex'), /./]
  ])('400 INVALID_MODULE for %s', async (_what, bytes, message) => {
    const res = await upload(bytes, { name: 'bad' })
    expect(res.statusCode).toBe(400)
    expect(res.json().code).toBe('INVALID_MODULE')
    expect(res.json().message).toMatch(message)
  })

  test('400 INVALID_MODULE names the ABI that was expected', async () => {
    const res = await upload(await wat('(module (func (export "nothing")))'), { name: 'nothing' })
    expect(res.statusCode).toBe(400)
    expect(res.json().message).toMatch(/WASI command.*json plugin/)
  })

  test.each([
    ['not JSON', '{name:', /not valid JSON/],
    ['an unknown field', { name: 'x', colour: 'red' }, /colour/],
    ['a bad name', { name: 'Bad Name' }, /name/],
    ['a bad abi', { abi: 'python' }, /abi/],
    ['a bad limit', { limits: { memoryBytes: 1000 } }, /memoryBytes/],
    ['an invalid inputSchema', { inputSchema: { type: 'nonsense' } }, /inputSchema/]
  ])('400 INVALID_MANIFEST for %s', async (_what, manifest, message) => {
    const parts = [{ name: 'module', filename: 'x.wasm', content: echo },
      { name: 'manifest', content: typeof manifest === 'string' ? manifest : JSON.stringify(manifest) }]
    const res = await t.app.inject({ method: 'POST', url: '/plugins', ...multipart(parts) })
    expect(res.statusCode).toBe(400)
    expect(res.json().code).toBe('INVALID_MANIFEST')
    expect(res.json().message).toMatch(message)
  })

  test('400 INVALID_MANIFEST when no name can be derived', async () => {
    const res = await upload(echo, undefined, '!!!.wasm')
    expect(res.statusCode).toBe(400)
    expect(res.json().code).toBe('INVALID_MANIFEST')
  })

  test('422 CAPABILITY_DENIED for an import outside the grant, listing it', async () => {
    const mod = await wat(`(module (import "env" "system" (func (param i32) (result i32)))
      (memory (export "memory") 1) (func (export "execute") (param i32 i32) (result i32 i32) (i32.const 0) (i32.const 0)))`)
    const res = await upload(mod, { name: 'sneaky' })
    expect(res.statusCode).toBe(422)
    expect(res.json()).toMatchObject({ code: 'CAPABILITY_DENIED', details: { imports: [{ module: 'env', name: 'system', kind: 'func' }] } })
  })

  test('422 CAPABILITY_DENIED for WASI imports without a grant (json ABI)', async () => {
    const mod = await wat(`(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1) (func (export "execute") (param i32 i32) (result i32 i32) (i32.const 0) (i32.const 0)))`)
    const denied = await upload(mod, { name: 'reactor' })
    expect(denied.statusCode).toBe(422)
    expect(denied.json().message).toMatch(/fd_write/)
    const granted = await upload(mod, { name: 'reactor', capabilities: { wasi: {} } })
    expect(granted.statusCode).toBe(201)
  })

  test('422 CAPABILITY_DENIED for limits above the operator maximum (by one unit)', async () => {
    const over = [
      { memoryBytes: 256 * 1024 * 1024 + 65536 },
      { timeoutMs: 30001 },
      { tableElements: 10001 },
      { outputBytes: 16 * 1024 * 1024 + 1 }
    ]
    for (const limits of over) {
      const res = await upload(echo, { name: 'greedy', limits })
      expect(res.statusCode).toBe(422)
      expect(res.json()).toMatchObject({ code: 'CAPABILITY_DENIED', details: { limit: Object.keys(limits)[0] } })
    }
    const atMax = await upload(echo, { name: 'greedy', limits: { memoryBytes: 256 * 1024 * 1024, timeoutMs: 30000, tableElements: 10000, outputBytes: 16 * 1024 * 1024 } })
    expect(atMax.statusCode).toBe(201)
  })

  test('422 CAPABILITY_DENIED for an undeclared volume or a disallowed env var', async () => {
    const vol = await upload(echo, { name: 'v', capabilities: { wasi: { preopens: [{ guest: '/data', volume: 'secrets' }] } } })
    expect(vol.statusCode).toBe(422)
    expect(vol.json().details).toEqual({ volume: 'secrets' })
    const env = await upload(echo, { name: 'e', capabilities: { wasi: { env: { PATH: '/bin' } } } })
    expect(env.statusCode).toBe(422)
    expect(env.json().details).toEqual({ env: ['PATH'] })
  })

  test('400 INVALID_MODULE for initial memory above the limit, table above the limit', async () => {
    const bigMem = await upload(await wat('(module (memory (export "memory") 257) (func (export "execute") (param i32 i32) (result i32 i32) (i32.const 0) (i32.const 0)))'), { name: 'bigmem' })
    expect(bigMem.statusCode).toBe(400)
    expect(bigMem.json().message).toMatch(/257/)
    const atLimit = await upload(await wat('(module (memory (export "memory") 256) (func (export "execute") (param i32 i32) (result i32 i32) (i32.const 0) (i32.const 0)))'), { name: 'atmem' })
    expect(atLimit.statusCode).toBe(201)
    const hugeTable = await upload(await wat('(module (table 10000000 funcref) (memory (export "memory") 1) (func (export "execute") (param i32 i32) (result i32 i32) (i32.const 0) (i32.const 0)))'), { name: 'table' })
    expect(hugeTable.statusCode).toBe(400)
    expect(hugeTable.json().message).toMatch(/table/)
    const tableAtLimit = await upload(await wat('(module (table 10000 funcref) (memory (export "memory") 1) (func (export "execute") (param i32 i32) (result i32 i32) (i32.const 0) (i32.const 0)))'), { name: 'table' })
    expect(tableAtLimit.statusCode).toBe(201)
    const tableOver = await upload(await wat('(module (table 10001 funcref) (memory (export "memory") 1) (func (export "execute") (param i32 i32) (result i32 i32) (i32.const 0) (i32.const 0)))'), { name: 'table2' })
    expect(tableOver.statusCode).toBe(400)
  })

  test('413 PAYLOAD_TOO_LARGE for an upload over MAX_UPLOAD_BYTES (by one byte)', async () => {
    await t.close()
    t = await buildTestApp({ MAX_UPLOAD_BYTES: String(echo.length) })
    expect((await upload(echo, { name: 'fits' })).statusCode).toBe(201)
    const res = await upload(Buffer.concat([echo, Buffer.from([0, 1, 0])]).subarray(0, echo.length + 1), { name: 'big' })
    expect(res.statusCode).toBe(413)
    expect(res.json().code).toBe('PAYLOAD_TOO_LARGE')
  })

  test('400 INVALID_REQUEST without a module part; 415 for a non-multipart body', async () => {
    const none = await t.app.inject({ method: 'POST', url: '/plugins', ...multipart([{ name: 'manifest', content: '{}' }]) })
    expect(none.statusCode).toBe(400)
    expect(none.json().code).toBe('INVALID_REQUEST')
    const twoFiles = await t.app.inject({ method: 'POST', url: '/plugins', ...multipart([{ name: 'module', filename: 'a.wasm', content: echo }, { name: 'module', filename: 'b.wasm', content: echo }]) })
    expect(twoFiles.statusCode).toBeGreaterThanOrEqual(400)
    expect(twoFiles.statusCode).toBeLessThan(500)
    const json = await t.app.inject({ method: 'POST', url: '/plugins', payload: { a: 1 } })
    expect(json.statusCode).toBe(415)
    expect(json.json().code).toBe('UNSUPPORTED_MEDIA_TYPE')
  })
})

describe('PUT and DELETE /plugins/:name', () => {
  test('replaces a plugin atomically and keeps createdAt', async () => {
    const first = (await upload(echo, { name: 'p', version: '1.0.0' })).json()
    const res = await upload(await watFixture('echo-i64'), { version: '2.0.0' }, 'x.wasm', 'PUT', '/plugins/p')
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ name: 'p', version: '2.0.0', createdAt: first.createdAt })
    expect(res.json().sha256).not.toBe(first.sha256)
    // the old module file was collected, the new one is on disk
    expect(readdirSync(join(t.dataDir, 'modules'))).toEqual([`${res.json().sha256 as string}.wasm`])
  })

  test('PUT of a missing plugin is 404; a mismatched manifest name is 400', async () => {
    expect((await upload(echo, {}, 'x.wasm', 'PUT', '/plugins/nope')).statusCode).toBe(404)
    await upload(echo, { name: 'p' })
    const res = await upload(echo, { name: 'other' }, 'x.wasm', 'PUT', '/plugins/p')
    expect(res.statusCode).toBe(400)
    expect(res.json().code).toBe('INVALID_MANIFEST')
  })

  test('DELETE unloads; later calls get 404; files are removed', async () => {
    const d = (await upload(echo, { name: 'gone' })).json()
    expect((await t.app.inject({ method: 'DELETE', url: '/plugins/gone' })).statusCode).toBe(204)
    expect((await t.app.inject({ method: 'GET', url: '/plugins/gone' })).json().code).toBe('PLUGIN_NOT_FOUND')
    const exec = await t.app.inject({ method: 'POST', url: '/plugins/gone/execute', payload: {} })
    expect(exec.statusCode).toBe(404)
    expect(exec.json().code).toBe('PLUGIN_NOT_FOUND')
    expect(existsSync(join(t.dataDir, 'modules', `${d.sha256 as string}.wasm`))).toBe(false)
    expect(existsSync(join(t.dataDir, 'plugins', 'gone.json'))).toBe(false)
    expect((await t.app.inject({ method: 'DELETE', url: '/plugins/gone' })).statusCode).toBe(404)
  })
})

describe('persistence', () => {
  test('plugins survive a restart; crash leftovers are swept', async () => {
    const d = (await upload(echo, { name: 'keep', inputSchema: { type: 'object' } })).json()
    const descriptorOnDisk = JSON.parse(readFileSync(join(t.dataDir, 'plugins', 'keep.json'), 'utf8'))
    expect(descriptorOnDisk.descriptor).toEqual(d)
    await t.close()
    // leftovers of a crash: a temp file and an unreferenced module
    writeFileSync(join(t.dataDir, 'tmp', 'keep.json.abc'), '{"half')
    writeFileSync(join(t.dataDir, 'modules', `${'0'.repeat(64)}.wasm`), 'orphan')
    t = await buildTestApp({}, t.dataDir)
    expect((await t.app.inject({ method: 'GET', url: '/plugins/keep' })).json()).toEqual(d)
    expect(readdirSync(join(t.dataDir, 'tmp'))).toEqual([])
    expect(readdirSync(join(t.dataDir, 'modules'))).toEqual([`${d.sha256 as string}.wasm`])
    const exec = await t.app.inject({ method: 'POST', url: '/plugins/keep/execute', payload: { after: 'restart' } })
    expect(exec.statusCode).toBe(200)
    expect(exec.json()).toEqual({ after: 'restart' })
    // the inputSchema survived too
    expect((await t.app.inject({ method: 'POST', url: '/plugins/keep/execute', payload: [1] })).json().code).toBe('INVALID_INPUT')
  })

  test('a corrupt descriptor or module is skipped at start, not fatal', async () => {
    const d = (await upload(echo, { name: 'good' })).json()
    await upload(await watFixture('echo-i64'), { name: 'bad' })
    await t.close()
    writeFileSync(join(t.dataDir, 'plugins', 'broken.json'), '{not json')
    const bad = JSON.parse(readFileSync(join(t.dataDir, 'plugins', 'bad.json'), 'utf8'))
    writeFileSync(join(t.dataDir, 'modules', `${bad.descriptor.sha256 as string}.wasm`), 'corrupted')
    t = await buildTestApp({}, t.dataDir)
    const list = (await t.app.inject({ method: 'GET', url: '/plugins' })).json()
    expect(list.plugins.map((p: { name: string }) => p.name)).toEqual([d.name])
  })
})
