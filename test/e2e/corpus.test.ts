// The hostile plugin corpus, against the real server. Each case has its expected outcome, and
// after each one the invariants are checked: same process, health OK, the canary outside
// every volume unread and unchanged, open fds back near the baseline, RSS bounded, every
// log line intact JSON, and the matching metric counted exactly once.
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FormData, request } from 'undici'
import { removeDir, tempDir } from '../helpers/build-app'
import { cFixture, hasClang, hasRust, rustFixture, wat, watFixture } from '../helpers/fixtures'
import { startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'

const CANARY = 'CANARY-corpus-91c2'
const toolchain = hasClang()
if (!toolchain && process.env.REQUIRE_TOOLCHAINS === '1') throw new Error('clang-14 for wasm32-wasi is required (REQUIRE_TOOLCHAINS=1)')
const rust = hasRust()
if (!rust && process.env.REQUIRE_TOOLCHAINS === '1') throw new Error('rustc with the wasm32-wasi standard library is required (REQUIRE_TOOLCHAINS=1)')

interface Expect { status: number, code?: string, trap?: string, body?: (text: string) => void }
interface Case {
  name: string
  module: () => Promise<Buffer> | Buffer
  manifest?: Record<string, unknown>
  filename?: string
  /** Refused at upload with this status and code. */
  upload?: { status: number, code: string }
  call?: Expect & { input?: string, query?: string }
  needsClang?: boolean
  needsRust?: boolean
}

const fn = (name: string, status: number, code: string, trap?: string): Pick<Case, 'call'> =>
  ({ call: { query: `?function=${name}`, status, code, ...(trap !== undefined ? { trap } : {}) } })

const entry = '(func (export "execute") (param i32 i32) (result i32 i32) (i32.const 0) (i32.const 0))'
const leb = (n: number): number[] => { const out = []; do { let b = n & 0x7f; n >>>= 7; if (n !== 0) b |= 0x80; out.push(b) } while (n !== 0); return out }
const millionFunctions = (): Buffer => {
  const body = [...leb(1_000_000), ...new Array<number>(1_000_000).fill(0)]
  return Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 4, 1, 0x60, 0, 0, 3, ...leb(body.length), ...body])
}

const fast = { limits: { timeoutMs: 200 } }
// The longest deadline: these cases are about what the calls store, not how fast they run.
const plugin = { limits: { timeoutMs: 30_000 }, capabilities: { wasi: { preopens: [{ guest: '/data', volume: '@plugin', mode: 'rw' }] } } }

/** What wasi-symlink-out prints: no way out was made, nothing was read through one. */
function symlinkOutTranscript (text: string): void {
  const PERM = 63
  const NOENT = 44
  const NOTCAPABLE = 76
  const expected = [
    `symlink absolute canary: errno=${PERM}`, `read abs: errno=${NOENT}`,
    `symlink /: errno=${PERM}`, `read root/etc/passwd: errno=${NOENT}`
  ]
  for (let ups = 1; ups <= 6; ups++) {
    const target = `${'../'.repeat(ups)}canary.txt`
    expected.push(`symlink ${target}: errno=${PERM}`, `read up${ups}: errno=${NOENT}`)
  }
  for (let ups = 1; ups <= 6; ups++) {
    const target = `${'../'.repeat(ups)}canary.txt`
    expected.push(`symlink ${target} at depth ${ups}: ok`, `rename to moved${ups}: ok`, `read moved${ups}: errno=${NOTCAPABLE}`)
  }
  expect(text.trimEnd().split('\n')).toEqual(expected)
}
const cases: Case[] = [
  { name: 'loop-entry', module: async () => watFixture('hostile'), manifest: fast, ...fn('loop', 504, 'DEADLINE_EXCEEDED') },
  { name: 'loop-start', module: async () => watFixture('start-loop'), manifest: fast, call: { status: 504, code: 'DEADLINE_EXCEEDED' } },
  { name: 'fill-loop', module: async () => watFixture('hostile'), manifest: fast, ...fn('fill_loop', 504, 'DEADLINE_EXCEEDED') },
  { name: 'poll-forever', module: async () => watFixture('wasi-poll-forever'), manifest: fast, call: { status: 504, code: 'DEADLINE_EXCEEDED' } },
  { name: 'recursion', module: async () => watFixture('hostile'), ...fn('recurse', 422, 'PLUGIN_TRAP', 'stack overflow') },
  { name: 'memory-declared', module: async () => wat(`(module (memory (export "memory") 65536) ${entry})`), upload: { status: 400, code: 'INVALID_MODULE' } },
  { name: 'memory-max-huge', module: async () => wat(`(module (memory (export "memory") 1 65536) ${entry.replace('(i32.const 0) (i32.const 0)', '(drop (memory.grow (i32.const 60000))) (i32.const 0) (i32.const 0)')})`), call: { status: 502, code: 'PLUGIN_INVALID_OUTPUT' } },
  { name: 'memory-grow-bomb', module: async () => watFixture('hostile'), ...fn('grow_bomb', 200, 'ok') },
  { name: 'table-declared', module: async () => wat(`(module (table 10000000 funcref) (memory (export "memory") 1) ${entry})`), upload: { status: 400, code: 'INVALID_MODULE' } },
  { name: 'table-grow-bomb', module: async () => watFixture('traps'), ...fn('table_grow_bomb', 200, 'ok') },
  { name: 'million-functions', module: millionFunctions, upload: { status: 400, code: 'INVALID_MODULE' } },
  { name: 'huge-data-segment', module: async () => wat(`(module (memory (export "memory") 1) (data (i32.const 0) "${'d'.repeat(17 * 1024 * 1024)}") ${entry})`), upload: { status: 400, code: 'INVALID_MODULE' } },
  { name: 'output-out-of-bounds', module: async () => watFixture('hostile'), ...fn('out_oob', 502, 'PLUGIN_INVALID_OUTPUT') },
  { name: 'output-too-long', module: async () => watFixture('hostile'), ...fn('out_huge', 502, 'PLUGIN_INVALID_OUTPUT') },
  { name: 'output-not-json', module: async () => watFixture('hostile'), ...fn('out_not_json', 502, 'PLUGIN_INVALID_OUTPUT') },
  { name: 'output-bad-utf8', module: async () => watFixture('traps'), ...fn('bad_utf8', 502, 'PLUGIN_INVALID_OUTPUT') },
  { name: 'output-empty', module: async () => watFixture('traps'), ...fn('empty_output', 502, 'PLUGIN_INVALID_OUTPUT') },
  { name: 'trap-oob-load', module: async () => watFixture('hostile'), ...fn('oob_read', 422, 'PLUGIN_TRAP', 'out of bounds memory access') },
  { name: 'trap-unreachable', module: async () => watFixture('hostile'), ...fn('unreachable', 422, 'PLUGIN_TRAP', 'unreachable') },
  { name: 'trap-div-zero', module: async () => watFixture('hostile'), ...fn('div_zero', 422, 'PLUGIN_TRAP', 'integer divide by zero') },
  { name: 'trap-int-overflow', module: async () => watFixture('traps'), ...fn('int_overflow', 422, 'PLUGIN_TRAP', 'integer overflow') },
  { name: 'trap-conversion', module: async () => watFixture('traps'), ...fn('invalid_conversion', 422, 'PLUGIN_TRAP', 'invalid conversion to integer') },
  { name: 'trap-indirect', module: async () => watFixture('traps'), ...fn('indirect_mismatch', 422, 'PLUGIN_TRAP', 'indirect call type mismatch') },
  { name: 'trap-table-oob', module: async () => watFixture('traps'), ...fn('table_oob', 422, 'PLUGIN_TRAP') },
  { name: 'trap-null-function', module: async () => watFixture('traps'), ...fn('null_function', 422, 'PLUGIN_TRAP') },
  { name: 'trap-oob-store', module: async () => watFixture('traps'), ...fn('oob_store', 422, 'PLUGIN_TRAP', 'out of bounds memory access') },
  // A trap keeps what the guest said before it: a Rust panic's message, a reactor's complaint.
  { name: 'rust-panic', needsRust: true, module: () => rustFixture('wasi-panic'), call: { status: 422, code: 'PLUGIN_TRAP', trap: 'unreachable', body: text => expect(JSON.parse(text).details.stderr).toMatch(/panicked at[^]*the plugin cannot handle "\{\}"/) } },
  { name: 'trap-reactor-stderr', module: async () => watFixture('wasi-reactor-trap'), manifest: { capabilities: { wasi: {} } }, call: { status: 422, code: 'PLUGIN_TRAP', trap: 'unreachable', body: text => expect(JSON.parse(text).details.stderr).toBe("reactor: the input has no 'id'\n") } },
  { name: 'exit-0-start', module: async () => Buffer.from(await wat(readFileSync(join(__dirname, '../fixtures/plugins/wasi-exit.wat'), 'utf8').replaceAll('EXIT_CODE', '0'))), call: { status: 200, code: 'ok', body: text => expect(JSON.parse(text)).toEqual({ exit: 0 }) } },
  { name: 'exit-3-start', module: async () => Buffer.from(await wat(readFileSync(join(__dirname, '../fixtures/plugins/wasi-exit.wat'), 'utf8').replaceAll('EXIT_CODE', '3'))), call: { status: 422, code: 'PLUGIN_EXIT', body: text => expect(JSON.parse(text).details).toMatchObject({ exitCode: 3, stdout: '{"exit":3}' }) } },
  { name: 'exit-reactor', module: async () => watFixture('wasi-reactor-exit'), manifest: { capabilities: { wasi: {} } }, call: { status: 422, code: 'PLUGIN_EXIT', body: text => expect(JSON.parse(text).details.exitCode).toBe(5) } },
  { name: 'forbidden-import', module: async () => wat(`(module (import "env" "system" (func (param i32) (result i32))) (memory (export "memory") 1) ${entry})`), upload: { status: 422, code: 'CAPABILITY_DENIED' } },
  { name: 'forbidden-global', module: async () => wat(`(module (import "env" "secret" (global i32)) (memory (export "memory") 1) ${entry})`), upload: { status: 422, code: 'CAPABILITY_DENIED' } },
  { name: 'garbage', module: () => Buffer.from('\x89PNG\r\n\x1a\n not a module at all'), filename: 'picture.png', upload: { status: 400, code: 'INVALID_MODULE' } },
  { name: 'truncated', module: async () => (await watFixture('echo')).subarray(0, 40), upload: { status: 400, code: 'INVALID_MODULE' } },
  { name: 'renamed-txt', module: async () => watFixture('echo'), filename: 'notes.txt', call: { status: 200, code: 'ok' } },
  { name: 'wasi-escapes', needsClang: true, module: () => cFixture('wasi-escape'), manifest: { capabilities: { wasi: { preopens: [{ guest: '/data', volume: 'escape', mode: 'rw' }] } } }, call: { status: 200, code: 'ok', body: text => expect(text).toMatch(/errno=/) } },
  { name: 'fd-exhaustion', needsClang: true, module: () => cFixture('svc-wasi-fds'), manifest: { capabilities: { wasi: { preopens: [{ guest: '/data', volume: '@plugin', mode: 'rw' }] } } }, call: { status: 200, code: 'ok', body: text => expect(JSON.parse(text).opened).toBeLessThanOrEqual(512) } },
  // Volume bookkeeping (security issue 16; the same attacks at scale in volumes.test.ts): a tree
  // deeper than PATH_MAX made through directory fds, unlinked files kept open and refilled,
  // a directory bomb. Every name costs 4 KiB of the 1 MiB quota.
  { name: 'disk-deep-tree', needsClang: true, module: () => cFixture('svc-wasi-disk'), manifest: plugin, call: { input: 'deep 20 250', status: 200, code: 'ok', body: text => expect(JSON.parse(text)).toEqual({ levels: 20, errno: 0 }) } },
  { name: 'disk-orphans', needsClang: true, module: () => cFixture('svc-wasi-disk'), manifest: plugin, call: { input: 'orphans 8', status: 200, code: 'ok', body: text => expect(JSON.parse(text).written).toBeLessThanOrEqual(1024 * 1024) } },
  { name: 'disk-entries', needsClang: true, module: () => cFixture('svc-wasi-disk'), manifest: plugin, call: { input: 'mkdirs 20000', status: 200, code: 'ok', body: text => expect(JSON.parse(text).made).toBeLessThanOrEqual(1024 * 1024 / 4096) } },
  // A guest's own symlinks that lead out (absolute, `..` chains) are refused, in its @plugin
  // volume and in an rw operator volume; ones made inside and moved up are refused when read.
  ...(['@plugin', 'escape'] as const).map((volume): Case => ({
    name: `symlink-out-${volume === '@plugin' ? 'plugin' : 'operator'}`,
    needsClang: true,
    module: () => cFixture('wasi-symlink-out'),
    get manifest () {
      return { capabilities: { wasi: { args: ['prog', realpathSync(join(root, 'canary.txt'))], preopens: [{ guest: '/data', volume, mode: 'rw' }] } } }
    },
    call: { status: 200, code: 'ok', body: symlinkOutTranscript }
  })),
  // extism ABI: the kernel's bounds, and a bad offset for every kernel function that takes one.
  { name: 'extism-alloc-loop', module: async () => watFixture('extism-host'), manifest: { limits: { memoryBytes: 4 * 1048576 } }, call: { query: '?function=alloc_loop', status: 200, code: 'ok', body: text => expect(Buffer.from(text, 'latin1').readBigUInt64LE(0)).toBe(3n) } },
  { name: 'extism-var-flood', module: async () => watFixture('extism-host'), ...fn('var_flood', 422, 'PLUGIN_ERROR') },
  { name: 'extism-log-flood', module: async () => watFixture('extism-host'), ...fn('log_flood', 200, 'ok') },
  { name: 'extism-http-loop', module: async () => watFixture('extism-host'), manifest: { capabilities: { http: { allowedHosts: ['127.0.0.1'] } } }, call: { query: '?function=http_loop', input: 'HTTP_LOOP', status: 422, code: 'PLUGIN_ERROR', body: text => expect(JSON.parse(text).message).toMatch(/httpRequests/) } },
  { name: 'extism-output-over', module: async () => watFixture('extism-host'), ...fn('output_over', 502, 'PLUGIN_INVALID_OUTPUT') },
  ...['load_u8', 'load_u64', 'store_u8', 'store_u64', 'input_u8', 'input_u64', 'output_set', 'error_set'].map(k =>
    ({ name: `extism-oob-${k.replace('_', '-')}`, module: async () => watFixture('extism-kernel'), ...fn(`oob_${k}`, 422, 'PLUGIN_TRAP', 'out of bounds memory access') })),
  ...['config', 'var_get', 'var_set', 'log', 'http', 'http_body'].map(k =>
    ({ name: `extism-bad-${k.replace('_', '-')}`, module: async () => watFixture('extism-host'), ...fn(`bad_${k}`, 422, 'PLUGIN_TRAP', 'out of bounds memory access') })),
  { name: 'disk-quota', needsClang: true, module: () => cFixture('svc-wasi-fill'), manifest: { capabilities: { wasi: { preopens: [{ guest: '/data', volume: '@plugin', mode: 'rw' }] } } }, call: { status: 200, code: 'ok', body: text => expect(JSON.parse(text).written).toBeLessThanOrEqual(1024 * 1024) } }
]

let server: RunningServer
let root: string
let escape: string
let baselineFds = 0
let baselineRss = 0

const procFds = (): number => readdirSync(`/proc/${server.child.pid ?? 0}/fd`).length
const procRss = (): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.child.pid ?? 0}/status`, 'utf8'))?.[1] ?? 0) * 1024

beforeAll(async () => {
  root = tempDir('wph-corpus-')
  escape = join(root, 'escape')
  mkdirSync(join(escape, 'sub'), { recursive: true })
  writeFileSync(join(root, 'canary.txt'), CANARY)
  writeFileSync(join(escape, 'inside.txt'), 'inside')
  writeFileSync(join(escape, 'sub', 'deep.txt'), 'deep')
  symlinkSync('inside.txt', join(escape, 'link-in'))
  symlinkSync('sub', join(escape, 'link-in-dir'))
  symlinkSync('../inside.txt', join(escape, 'sub', 'link-parent'))
  symlinkSync(join(realpathSync(escape), 'inside.txt'), join(escape, 'abs-in'))
  symlinkSync('../canary.txt', join(escape, 'link-out'))
  symlinkSync(realpathSync(join(root, 'canary.txt')), join(escape, 'abs-out'))
  symlinkSync('..', join(escape, 'dir-out'))
  symlinkSync(realpathSync(root), join(escape, 'abs-dir-out'))
  symlinkSync('../../canary.txt', join(escape, 'sub', 'link-out-rel'))
  symlinkSync('loop2', join(escape, 'loop1'))
  symlinkSync('loop1', join(escape, 'loop2'))
  server = await startServer({ ALLOWED_HOSTS: '127.0.0.1', HTTP_ALLOW_PRIVATE: 'true', VOLUMES: `escape=${escape}`, PLUGIN_DISK_BYTES: String(1024 * 1024), LOG_LEVEL: 'info' }, join(root, 'data'))
  // warm both threads so their fds and heap are in the baseline
  await upload('warm', await watFixture('echo'), {})
  await Promise.all([0, 1, 2, 3].map(async () => call('warm', '{}', '')))
  baselineFds = procFds()
  baselineRss = procRss()
}, 60_000)

afterAll(async () => {
  await server?.stop()
  removeDir(root)
})

async function upload (name: string, bytes: Buffer, manifest: Record<string, unknown>, filename = 'plugin.wasm') {
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(bytes)]), filename)
  form.append('manifest', JSON.stringify({ name, ...manifest }))
  const res = await request(`${server.url}/plugins`, { method: 'POST', body: form })
  return { status: res.statusCode, text: await res.body.text() }
}

async function call (name: string, input: string, query: string) {
  const res = await request(`${server.url}/plugins/${name}/execute${query}`, { method: 'POST', body: input, headers: { 'content-type': 'application/json' } })
  return { status: res.statusCode, text: await res.body.text() }
}

async function metric (series: string): Promise<number | undefined> {
  const res = await request(`${server.url}/metrics`)
  const line = (await res.body.text()).split('\n').find(l => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe('hostile corpus', () => {
  test.each(cases.map(c => [c.name, c] as const))('%s', async (_name, c) => {
    if (c.needsClang === true && !toolchain) {
      console.warn(`skipping ${c.name}: clang-14 / wasi-libc not installed`)
      return
    }
    if (c.needsRust === true && !rust) {
      console.warn(`skipping ${c.name}: no rustc with the wasm32-wasi standard library`)
      return
    }
    const pid = server.child.pid
    const up = await upload(c.name, Buffer.from(await c.module()), c.manifest ?? {}, c.filename)
    expect(up.text).not.toContain(CANARY)
    if (c.upload !== undefined) {
      expect(up.status).toBe(c.upload.status)
      expect(JSON.parse(up.text).code).toBe(c.upload.code)
    } else {
      expect(up.status).toBe(201)
      const expected = c.call
      if (expected === undefined) throw new Error('a case needs upload or call')
      const input = expected.input === 'HTTP_LOOP' ? JSON.stringify({ url: `${server.url}/healthz` }) : expected.input ?? '{}'
      const res = await call(c.name, input, expected.query ?? '')
      expect(res.text).not.toContain(CANARY)
      expect(res.status).toBe(expected.status)
      if (expected.status >= 400) {
        const body = JSON.parse(res.text)
        expect(body).toMatchObject({ statusCode: expected.status, code: expected.code })
        if (expected.trap !== undefined) expect(body.details.trap).toBe(expected.trap)
      }
      expected.body?.(res.text)
      // the matching metric, counted once
      expect(await metric(`plugin_executions_total{plugin="${c.name}",outcome="${(expected.code ?? 'ok').toLowerCase()}"}`)).toBe(1)
    }
    // invariants
    expect(server.child.exitCode).toBeNull()
    expect(server.child.pid).toBe(pid)
    const health = await request(`${server.url}/healthz`)
    expect(health.statusCode).toBe(200)
    await health.body.dump()
    expect((await call('warm', '{"after":1}', '')).status).toBe(200)
    expect(readFileSync(join(root, 'canary.txt'), 'utf8')).toBe(CANARY)
    expect(existsSync(join(root, 'created-outside.txt'))).toBe(false)
    // fds: a terminated thread's replacement may still be starting; give it a moment
    for (let i = 0; i < 20 && procFds() > baselineFds + 8; i++) await new Promise(resolve => setTimeout(resolve, 100))
    expect(procFds()).toBeLessThanOrEqual(baselineFds + 8)
    expect(procRss()).toBeLessThan(baselineRss + 512 * 1024 * 1024)
  }, 60_000)

  test('the log is intact: every line is one JSON object', () => {
    const lines = server.output().split('\n').filter(l => l.trim() !== '')
    expect(lines.length).toBeGreaterThan(cases.length)
    for (const line of lines) expect(() => JSON.parse(line)).not.toThrow()
    expect(server.output()).not.toContain(CANARY)
    // A trapped plugin's stderr is in the log too, on the line of its request.
    const stderrLines = lines.map(l => JSON.parse(l) as { msg?: string, code?: string, plugin?: string, stderr?: string })
      .filter(l => l.msg === 'plugin stderr' && l.code === 'PLUGIN_TRAP')
    expect(stderrLines).toContainEqual(expect.objectContaining({ plugin: 'trap-reactor-stderr', stderr: "reactor: the input has no 'id'\n" }))
    if (rust) expect(stderrLines).toContainEqual(expect.objectContaining({ plugin: 'rust-panic', stderr: expect.stringContaining('the plugin cannot handle') }))
  })
})
