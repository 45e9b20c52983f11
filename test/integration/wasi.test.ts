// The wasi ABI through the service: C programs compiled at test time, stdin/stdout as the
// request and response, grants, volumes, exit codes, and fds after deadline kills.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { buildTestApp, removeDir, tempDir, uploadBody } from '../helpers/build-app'
import type { TestApp } from '../helpers/build-app'
import { cFixture, hasClang } from '../helpers/fixtures'

const toolchain = hasClang()
if (!toolchain && process.env.REQUIRE_TOOLCHAINS === '1') throw new Error('clang-14 for wasm32-wasi is required (REQUIRE_TOOLCHAINS=1)')
if (!toolchain) console.warn('skipping wasi integration tests: clang-14 / wasi-libc not installed')
const suite = toolchain ? describe : describe.skip

let t: TestApp
let outside: string
let fixtures: string

async function install (name: string, fixture: string, manifest: Record<string, unknown> = {}): Promise<void> {
  await t.app.inject({ method: 'DELETE', url: `/plugins/${name}` })
  const res = await t.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(cFixture(fixture), { name, ...manifest }) })
  expect(res.json()).toMatchObject({ name })
}

function exec (name: string, payload: string | Buffer, contentType = 'application/octet-stream') {
  return t.app.inject({ method: 'POST', url: `/plugins/${name}/execute`, payload, headers: { 'content-type': contentType } })
}

suite('wasi ABI', () => {
  beforeAll(async () => {
    outside = tempDir('wph-wasi-vol-')
    fixtures = join(outside, 'fixtures')
    mkdirSync(fixtures)
    writeFileSync(join(fixtures, 'hello.txt'), 'hello from the fixtures volume\n')
    writeFileSync(join(outside, 'canary.txt'), 'CANARY-7f3a')
    // The breaker would pause the fd-hoarding plugin after 3 kills; this suite needs 1,000.
    t = await buildTestApp({ VOLUMES: `fixtures=${fixtures}:ro`, ALLOWED_ENV: 'MODE', BREAKER_THRESHOLD: '0' })
  })
  afterAll(async () => {
    await t.close()
    removeDir(outside)
  })

  test('stdin is the body (any bytes), stdout the response; JSON when it parses', async () => {
    await install('echo-c', 'svc-wasi-echo')
    const json = await exec('echo-c', '{"x":[1,2]}', 'application/json')
    expect(json.statusCode).toBe(200)
    expect(json.headers['content-type']).toMatch(/^application\/json/)
    expect(json.json()).toEqual({ x: [1, 2] })
    const text = await exec('echo-c', 'plain words', 'text/plain')
    expect(text.headers['content-type']).toMatch(/^text\/plain/)
    expect(text.body).toBe('plain words')
    const binary = Buffer.from([0, 1, 2, 255, 254])
    expect((await exec('echo-c', binary)).rawPayload).toEqual(binary)
    const empty = await t.app.inject({ method: 'POST', url: '/plugins/echo-c/execute' })
    expect(empty.statusCode).toBe(200)
    expect(empty.body).toBe('')
  })

  test('non-zero exit is 422 PLUGIN_EXIT with exit code and stdio tails; args and env as granted only', async () => {
    await install('exit-c', 'svc-wasi-echo', { capabilities: { wasi: { args: ['prog', '--exit', '7'], env: { MODE: 'fast' } } } })
    const res = await exec('exit-c', 'partial output')
    expect(res.statusCode).toBe(422)
    expect(res.json()).toMatchObject({ code: 'PLUGIN_EXIT', details: { exitCode: 7, stdout: 'partial output' } })
    const stderr = res.json().details.stderr as string
    expect(stderr).toContain('arg1=--exit')
    expect(stderr).toContain('MODE=fast HOME=(unset)')
  })

  test('the @plugin volume persists across calls and restarts, and goes with the plugin', async () => {
    const manifest = { capabilities: { wasi: { preopens: [{ guest: '/data', volume: '@plugin', mode: 'rw' }] } } }
    await install('counter', 'svc-wasi-counter', manifest)
    expect((await exec('counter', '')).json()).toEqual({ count: 1 })
    expect((await exec('counter', '')).json()).toEqual({ count: 2 })
    const dataDir = t.dataDir
    await t.close()
    t = await buildTestApp({ VOLUMES: `fixtures=${fixtures}:ro`, ALLOWED_ENV: 'MODE', BREAKER_THRESHOLD: '0' }, dataDir)
    expect((await exec('counter', '')).json()).toEqual({ count: 3 })
    expect(readFileSync(join(dataDir, 'volumes', 'counter', 'count'), 'utf8')).toBe('3\n')
    await t.app.inject({ method: 'DELETE', url: '/plugins/counter' })
    expect(readdirSync(join(dataDir, 'volumes'))).not.toContain('counter')
  })

  test('an operator volume mounted ro is readable, never writable; the canary beside it never leaks', async () => {
    await install('reader', 'svc-wasi-reader', { capabilities: { wasi: { preopens: [{ guest: '/fixtures', volume: 'fixtures', mode: 'ro' }] } } })
    expect((await exec('reader', '/fixtures/hello.txt')).json()).toEqual({ content: 'hello from the fixtures volume', writable: false })
    for (const path of ['/fixtures/../canary.txt', '../canary.txt', `${outside}/canary.txt`, '/canary.txt']) {
      const res = await exec('reader', path)
      expect(res.statusCode).toBe(200)
      expect(res.body).not.toContain('CANARY')
      expect(res.json()).toHaveProperty('error')
    }
    expect(readFileSync(join(outside, 'canary.txt'), 'utf8')).toBe('CANARY-7f3a')
    expect(readFileSync(join(fixtures, 'hello.txt'), 'utf8')).toBe('hello from the fixtures volume\n')
  })

  test('a rw preopen of a read-only operator volume is refused at upload', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(cFixture('svc-wasi-reader'), { name: 'rw', capabilities: { wasi: { preopens: [{ guest: '/f', volume: 'fixtures', mode: 'rw' }] } } }) })
    expect(res.statusCode).toBe(422)
    expect(res.json().code).toBe('CAPABILITY_DENIED')
  })

  test('a json-ABI reactor built with wasi-libc runs with its WASI grant', async () => {
    const wasm = cFixture('svc-reactor', { reactor: true })
    const denied = await t.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(wasm, { name: 'reactor-c' }) })
    expect(denied.statusCode).toBe(422)
    const up = await t.app.inject({ method: 'POST', url: '/plugins', ...uploadBody(wasm, { name: 'reactor-c', capabilities: { wasi: {} } }) })
    expect(up.json()).toMatchObject({ abi: 'json', entries: ['execute'] })
    const res = await exec('reactor-c', '{"abc":1}', 'application/json')
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ length: 9 })
  })

  test('stdout over outputBytes is 502 PLUGIN_INVALID_OUTPUT', async () => {
    await install('small-out', 'svc-wasi-echo', { limits: { outputBytes: 8 } })
    expect((await exec('small-out', '12345678')).statusCode).toBe(200)
    const over = await exec('small-out', '123456789')
    expect(over.statusCode).toBe(502)
    expect(over.json().code).toBe('PLUGIN_INVALID_OUTPUT')
  })

  test('after 1,000 calls that each open 100 files and hit the deadline, no fd is left open', async () => {
    await install('hoard', 'svc-wasi-hoard', { limits: { timeoutMs: 40 }, capabilities: { wasi: { preopens: [{ guest: '/data', volume: '@plugin', mode: 'rw' }] } } })
    const fds = (): number => readdirSync('/proc/self/fd').length
    // one call first, so lazily opened fds (worker startup, module cache) are in the baseline
    expect((await exec('hoard', '')).statusCode).toBe(504)
    await new Promise(resolve => setTimeout(resolve, 200))
    const before = fds()
    const calls = Number(process.env.HOARD_CALLS ?? 1000)
    let done = 0
    await Promise.all([0, 1].map(async () => {
      while (done < calls) {
        done++
        const res = await exec('hoard', '')
        expect(res.statusCode).toBe(504)
      }
    }))
    await new Promise(resolve => setTimeout(resolve, 500))
    expect(fds()).toBeLessThanOrEqual(before + 4)
  }, 300_000)
})
