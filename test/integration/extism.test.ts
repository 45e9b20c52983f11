// The extism ABI through the service, for what the differential test cannot ask the SDK:
// detection, entry selection, content types, the kernel functions the SDK 1.0.3 lacks, the
// bounds (memory, vars, logs, output), bad offsets, vars across PUT/DELETE, upload refusals.
import { buildApp } from '../../src/app'
import { loadConfig } from '../../src/config'
import { buildTestApp, removeDir, tempDir, uploadBody } from '../helpers/build-app'
import type { TestApp } from '../helpers/build-app'
import { wat, watFixture } from '../helpers/fixtures'

let t: TestApp
let kernel: Buffer
let host: Buffer

beforeAll(async () => {
  t = await buildTestApp({ ALLOWED_HOSTS: '*.example.org,api.example.com', PLUGIN_LOG_LEVEL: 'info' })
  kernel = await watFixture('extism-kernel')
  host = await watFixture('extism-host')
})
afterAll(async () => { await t.close() })

async function upload (name: string, wasm: Buffer, manifest: Record<string, unknown> = {}, method: 'POST' | 'PUT' = 'POST') {
  return t.app.inject({ method, url: method === 'POST' ? '/plugins' : `/plugins/${name}`, ...uploadBody(wasm, { name, ...manifest }) })
}

function exec (name: string, fn: string | undefined, payload: string | Buffer = '', contentType = 'application/octet-stream') {
  const query = fn === undefined ? '' : `?function=${fn}`
  return t.app.inject({ method: 'POST', url: `/plugins/${name}/execute${query}`, payload, headers: { 'content-type': contentType } })
}

const u64 = (body: Buffer): bigint => body.readBigUInt64LE(0)

test('detected from extism:host/env imports; entries are the () -> i32 and () -> () exports', async () => {
  const res = await upload('kernel', kernel)
  expect(res.statusCode).toBe(201)
  const d = res.json()
  expect(d.abi).toBe('extism')
  expect(d.entries).toEqual(expect.arrayContaining(['echo', 'fail_void', 'void_ok', 'oob_error_set']))
  expect(d.limits).toMatchObject({ varBytes: 1048576, httpRequests: 16, httpResponseBytes: 10485760 })
})

test('?function= picks an export; several and none named: 404 FUNCTION_NOT_FOUND listing them; manifest entry is the default', async () => {
  const none = await exec('kernel', undefined, 'x')
  expect(none.statusCode).toBe(404)
  expect(none.json()).toMatchObject({ code: 'FUNCTION_NOT_FOUND', details: { functions: expect.arrayContaining(['echo', 'config']) } })
  const missing = await exec('kernel', 'nope', 'x')
  expect(missing.json()).toMatchObject({ code: 'FUNCTION_NOT_FOUND', details: { functions: expect.arrayContaining(['echo']) } })
  expect((await upload('kernel-entry', kernel, { entry: 'echo' })).statusCode).toBe(201)
  const res = await exec('kernel-entry', undefined, 'by default')
  expect(res.statusCode).toBe(200)
  expect(res.body).toBe('by default')
  const bad = await upload('kernel-bad-entry', kernel, { entry: 'nope' })
  expect(bad.json()).toMatchObject({ code: 'INVALID_MANIFEST' })
})

test('input is raw bytes of any content type; output content type: JSON, UTF-8 text, else octet-stream', async () => {
  const json = await exec('kernel', 'echo', '{"a":1}', 'application/json')
  expect(json.headers['content-type']).toBe('application/json')
  expect(json.body).toBe('{"a":1}')
  const text = await exec('kernel', 'echo', 'plain words', 'text/plain')
  expect(text.headers['content-type']).toBe('text/plain; charset=utf-8')
  const bin = await exec('kernel', 'echo', Buffer.from([0xff, 0xfe, 0x00, 0x80]), 'image/png')
  expect(bin.headers['content-type']).toBe('application/octet-stream')
  expect(bin.rawPayload).toEqual(Buffer.from([0xff, 0xfe, 0x00, 0x80]))
  expect(bin.headers['x-plugin-version']).toBe('0.0.0')
})

test('non-zero return and error_set: 422 PLUGIN_ERROR {message, returnCode}', async () => {
  expect((await exec('kernel', 'fail')).json()).toMatchObject({ statusCode: 422, code: 'PLUGIN_ERROR', details: { message: 'boom', returnCode: 7 } })
  expect((await exec('kernel', 'fail_rc')).json()).toMatchObject({ code: 'PLUGIN_ERROR', details: { message: 'plugin returned 3', returnCode: 3 } })
  expect((await exec('kernel', 'fail_void')).json()).toMatchObject({ code: 'PLUGIN_ERROR', details: { message: 'void failed', returnCode: 0 } })
})

test('error_get answers what error_set set, and error_set(0) clears it; get_log_level answers PLUGIN_LOG_LEVEL', async () => {
  expect((await upload('host', host)).statusCode).toBe(201)
  const rt = await exec('host', 'error_roundtrip')
  expect(rt.statusCode).toBe(200)
  expect(rt.body).toBe('oops')
  expect(u64((await exec('host', 'error_get_none')).rawPayload)).toBe(0n)
  expect(u64((await exec('host', 'log_level')).rawPayload)).toBe(2n) // info
})

test('kernel memory counts against limits.memoryBytes: an alloc loop gets 0, the host does not grow', async () => {
  expect((await upload('alloc', host, { limits: { memoryBytes: 4 * 1048576 } })).statusCode).toBe(201)
  const res = await exec('alloc', 'alloc_loop')
  expect(res.statusCode).toBe(200)
  // 4 MiB less the plugin's own 64 KiB page and the input: three 1 MiB blocks.
  expect(u64(res.rawPayload)).toBe(3n)
})

test('an input the memory limit cannot hold (beside the plugin\'s own memory) is 413', async () => {
  expect((await upload('small', host, { limits: { memoryBytes: 131072 } })).statusCode).toBe(201)
  expect((await exec('small', 'error_get_none', Buffer.alloc(60_000))).statusCode).toBe(200)
  const res = await exec('small', 'error_get_none', Buffer.alloc(70_000))
  expect(res.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' })
})

test('output_set over outputBytes is 502 PLUGIN_INVALID_OUTPUT', async () => {
  const res = await exec('host', 'output_over')
  expect(res.json()).toMatchObject({ statusCode: 502, code: 'PLUGIN_INVALID_OUTPUT' })
})

test('a var flood fails the call at limits.varBytes', async () => {
  expect((await upload('flood', host, { limits: { varBytes: 65536 } })).statusCode).toBe(201)
  const res = await exec('flood', 'var_flood')
  expect(res.json()).toMatchObject({ code: 'PLUGIN_ERROR', details: { returnCode: null } })
  expect(res.json().message).toMatch(/varBytes/)
})

test('a log flood keeps 64 KiB of lines per call and counts the rest as dropped', async () => {
  const res = await exec('host', 'log_flood')
  expect(res.statusCode).toBe(200)
  const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body
  expect(metrics).toMatch(/^plugin_log_lines_dropped_total 935$/m)
})

test('a bad offset traps the call for every kernel function that reads a block; length answers 0', async () => {
  expect(u64((await exec('host', 'bad_length')).rawPayload)).toBe(0n)
  for (const fn of ['bad_config', 'bad_var_get', 'bad_var_set', 'bad_log', 'bad_http', 'bad_http_body']) {
    const res = await exec('host', fn, '{"url":"http://api.example.com/"}')
    expect({ fn, body: res.json() }).toMatchObject({ fn, body: { statusCode: 422, code: 'PLUGIN_TRAP', details: { trap: 'out of bounds memory access' } } })
  }
})

test('vars persist across calls and are cleared by PUT and DELETE', async () => {
  expect((await upload('counter', kernel)).statusCode).toBe(201)
  expect((await exec('counter', 'var_count')).rawPayload).toEqual(Buffer.from([1]))
  expect((await exec('counter', 'var_count')).rawPayload).toEqual(Buffer.from([2]))
  expect((await upload('counter', kernel, {}, 'PUT')).statusCode).toBe(200)
  expect((await exec('counter', 'var_count')).rawPayload).toEqual(Buffer.from([1]))
  expect((await t.app.inject({ method: 'DELETE', url: '/plugins/counter' })).statusCode).toBe(204)
  expect((await upload('counter', kernel)).statusCode).toBe(201)
  expect((await exec('counter', 'var_count')).rawPayload).toEqual(Buffer.from([1]))
})

test('http_request without capabilities.http: 422 CAPABILITY_DENIED naming the host', async () => {
  const res = await exec('host', 'get', '{"url":"https://api.example.com/x"}')
  expect(res.json()).toMatchObject({ code: 'CAPABILITY_DENIED', details: { host: 'api.example.com' } })
})

test('upload: hosts beyond ALLOWED_HOSTS are CAPABILITY_DENIED; extism-only fields on other ABIs are INVALID_MANIFEST', async () => {
  expect((await upload('h1', host, { capabilities: { http: { allowedHosts: ['a.example.org', '*.b.example.org', 'api.example.com'] } } })).statusCode).toBe(201)
  for (const hosts of [['example.org'], ['*'], ['*example.org'], ['evil.com'], ['api.example.com.evil.com']]) {
    const res = await upload('h2', host, { capabilities: { http: { allowedHosts: hosts } } })
    expect({ hosts, body: res.json() }).toMatchObject({ hosts, body: { code: 'CAPABILITY_DENIED', details: { hosts } } })
  }
  const json = await wat('(module (memory (export "memory") 1) (func (export "execute") (param i32 i32) (result i32 i32) (local.get 0) (local.get 1)))')
  expect((await upload('j', json, { config: { a: 'b' } })).json()).toMatchObject({ code: 'INVALID_MANIFEST' })
  const other = await wat('(module (import "extism:host/env" "spawn" (func (param i64))) (func (export "run") (result i32) (i32.const 0)))')
  expect((await upload('spawn', other)).json()).toMatchObject({ code: 'CAPABILITY_DENIED', details: { imports: [{ name: 'spawn' }] } })
  const typed = await wat('(module (import "extism:host/env" "alloc" (func (param i32) (result i32))) (func (export "run") (result i32) (i32.const 0)))')
  expect((await upload('typed', typed)).json()).toMatchObject({ code: 'CAPABILITY_DENIED' })
})

test('WASI inside an extism plugin: granted through capabilities.wasi; stdout goes to the log; proc_exit(0) is success, proc_exit(n) PLUGIN_EXIT', async () => {
  const source = (code: number): string => `(module
    (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
    (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
    (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
    (import "extism:host/env" "store_u8" (func $s (param i64 i32)))
    (import "extism:host/env" "output_set" (func $o (param i64 i64)))
    (memory (export "memory") 1)
    (data (i32.const 8) "to stdout\\n")
    (func (export "run") (result i32) (local $b i64)
      (i32.store (i32.const 0) (i32.const 8)) (i32.store (i32.const 4) (i32.const 10))
      (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 100)))
      (local.set $b (call $alloc (i64.const 1))) (call $s (local.get $b) (i32.const 33)) (call $o (local.get $b) (i64.const 1))
      (call $exit (i32.const ${code})) (i32.const 5)))`
  const denied = await upload('wasi-x', await wat(source(0)))
  expect(denied.json()).toMatchObject({ code: 'CAPABILITY_DENIED' })
  expect((await upload('wasi-ok', await wat(source(0)), { capabilities: { wasi: {} } })).statusCode).toBe(201)
  const ok = await exec('wasi-ok', 'run')
  expect(ok.statusCode).toBe(200)
  expect(ok.body).toBe('!')
  expect((await upload('wasi-exit', await wat(source(3)), { capabilities: { wasi: {} } })).statusCode).toBe(201)
  expect((await exec('wasi-exit', 'run')).json()).toMatchObject({ code: 'PLUGIN_EXIT', details: { exitCode: 3 } })
})

test('an extism trap after WASI stderr: PLUGIN_TRAP without details.stderr (stdio goes to the log); the instance is reset in place, no fallback counted', async () => {
  const lines: Array<{ plugin?: string, code?: string, msg: string }> = []
  const dataDir = tempDir('wph-extism-trap-')
  const app = await buildApp(loadConfig({ WORKERS: '1', DATA_DIR: dataDir, PLUGIN_LOG_LEVEL: 'info' }), {
    logger: { level: 'info', stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } }
  })
  try {
    const source = `(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (import "extism:host/env" "output_set" (func $o (param i64 i64)))
      (memory (export "memory") 1)
      (data (i32.const 8) "why it trapped\\n")
      (func (export "run") (result i32)
        (i32.store (i32.const 0) (i32.const 8)) (i32.store (i32.const 4) (i32.const 15))
        (drop (call $w (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 100)))
        unreachable))`
    const up = await app.inject({ method: 'POST', url: '/plugins', ...uploadBody(await wat(source), { name: 'trap-x', capabilities: { wasi: {} } }) })
    expect(up.statusCode).toBe(201)
    expect(up.json().reset).toEqual({ mode: 'reset' })
    for (let i = 0; i < 2; i++) {
      const res = await app.inject({ method: 'POST', url: '/plugins/trap-x/execute?function=run', payload: '' })
      expect(res.statusCode).toBe(422)
      expect(res.json().code).toBe('PLUGIN_TRAP')
      expect(res.json().details?.stderr).toBeUndefined()
      expect(res.body).not.toMatch(/why it trapped/)
    }
    await new Promise(resolve => setImmediate(resolve))
    expect(lines.filter(l => l.plugin === 'trap-x' && l.code === undefined && l.msg === 'why it trapped\n')).toHaveLength(2)
    const metrics = (await app.inject({ url: '/metrics' })).body
    expect(metrics).not.toMatch(/^plugin_instance_fallbacks_total\{/m)
  } finally {
    await app.close()
    removeDir(dataDir)
  }
})
