// The upload mistakes a plugin author makes first, as the exact curl commands (issue 17): a
// manifest sent as a file part, the module as a raw body (--data-binary, -T, application/wasm),
// a .wat file sent as it is; and the 415 that says what to send. Real server, real curl.
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir } from '../helpers/build-app'
import { watFixture } from '../helpers/fixtures'
import { startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'

const hasCurl = (() => { try { execFileSync('curl', ['--version'], { stdio: 'ignore' }); return true } catch { return false } })()
if (!hasCurl && process.env.REQUIRE_TOOLCHAINS === '1') throw new Error('curl is required (REQUIRE_TOOLCHAINS=1)')
const maybe = hasCurl ? describe : describe.skip
if (!hasCurl) console.warn('skipping the curl upload tests: no curl on PATH')

let server: RunningServer
let dir: string

/** Runs curl in `dir` (as a user would, with relative file names); returns status and body. */
function curl (...args: string[]): { status: number, body: string } {
  const out = execFileSync('curl', ['-s', '-w', '\n%{http_code}', ...args], { cwd: dir, encoding: 'utf8' })
  const cut = out.lastIndexOf('\n')
  return { status: Number(out.slice(cut + 1)), body: out.slice(0, cut) }
}

function json (r: { body: string }): Record<string, unknown> {
  return JSON.parse(r.body) as Record<string, unknown>
}

maybe('uploads that forgive the usual mistakes', () => {
  beforeAll(async () => {
    server = await startServer()
    dir = tempDir('wph-curl-')
    writeFileSync(join(dir, 'echo.wasm'), await watFixture('echo'))
    writeFileSync(join(dir, 'echo.wat'), '(module\n  (memory (export "memory") 1)\n  (func (export "execute") (param i32 i32) (result i32 i32) (local.get 0) (local.get 1)))\n')
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ name: 'from-file', version: '1.2.3' }))
  })
  afterAll(async () => { await server.stop() })

  test('-F manifest=@manifest.json: the manifest as a file part', () => {
    const r = curl('-F', 'module=@echo.wasm', '-F', 'manifest=@manifest.json', `${server.url}/plugins`)
    expect(r.status).toBe(201)
    expect(json(r)).toMatchObject({ name: 'from-file', version: '1.2.3' })
  })

  test('--data-binary @p.wasm and ?name=: the module as the raw body', () => {
    const r = curl('--data-binary', '@echo.wasm', `${server.url}/plugins?name=raw-post`)
    expect(r.status).toBe(201)
    expect(json(r)).toMatchObject({ name: 'raw-post', abi: 'json' })
    const called = curl('-H', 'content-type: application/json', '-d', '{"a":1}', `${server.url}/plugins/raw-post/execute`)
    expect(called).toEqual({ status: 200, body: '{"a":1}' })
  })

  test('-T p.wasm and content-type: application/wasm on PUT', () => {
    expect(curl('-T', 'echo.wasm', `${server.url}/plugins/raw-post`).status).toBe(200)
    const r = curl('-X', 'PUT', '-H', 'content-type: application/wasm', '--data-binary', '@echo.wasm', `${server.url}/plugins/raw-post`)
    expect(r.status).toBe(200)
    expect(json(r)).toMatchObject({ name: 'raw-post' })
  })

  test('a raw POST without a name says how to give one', () => {
    const r = curl('-H', 'content-type: application/wasm', '--data-binary', '@echo.wasm', `${server.url}/plugins`)
    expect(r.status).toBe(400)
    expect(json(r)).toMatchObject({ code: 'INVALID_MANIFEST' })
    expect(String(json(r).message)).toContain('?name=')
  })

  test('a .wat file says to compile it', () => {
    const r = curl('-F', 'module=@echo.wat', `${server.url}/plugins`)
    expect(r.status).toBe(400)
    expect(json(r)).toMatchObject({ code: 'INVALID_MODULE' })
    expect(String(json(r).message)).toContain('wat2wasm')
  })

  test('every 415 says what to send', () => {
    for (const args of [['-H', 'content-type: application/json', '-d', '{"a":1}'], ['-X', 'POST']]) {
      const r = curl(...args, `${server.url}/plugins?name=x`)
      expect(r.status).toBe(415)
      expect(json(r)).toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE' })
      expect(String(json(r).message)).toContain('-F module=@plugin.wasm')
      expect(String(json(r).message)).toContain('application/wasm')
    }
  })

  test('a raw body over MAX_UPLOAD_BYTES is 413', async () => {
    const small = await startServer({ MAX_UPLOAD_BYTES: '100' })
    try {
      writeFileSync(join(dir, 'big.bin'), Buffer.alloc(1000, 1))
      const r = curl('--data-binary', '@big.bin', `${small.url}/plugins?name=big`)
      expect(r.status).toBe(413)
      expect(json(r)).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' })
    } finally {
      await small.stop()
    }
  })
})
