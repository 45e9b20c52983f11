// The CLI as a plugin author runs it: real process, real files, exit codes scripts can use.
import { spawn, spawnSync } from 'node:child_process'
import { createServer } from 'node:http'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { removeDir, tempDir } from '../helpers/build-app'
import { cSource, fixturesDir, hasClang, watFixture } from '../helpers/fixtures'

const CLI = resolve(__dirname, '..', '..', 'dist', 'cli.js')
let dir: string

beforeAll(async () => {
  dir = tempDir('wph-cli-')
  writeFileSync(join(dir, 'echo.wasm'), await watFixture('echo'))
  writeFileSync(join(dir, 'hostile.wasm'), await watFixture('hostile'))
  writeFileSync(join(dir, 'garbage.wasm'), 'not wasm')
  writeFileSync(join(dir, 'fast.json'), JSON.stringify({ limits: { timeoutMs: 200 } }))
  writeFileSync(join(dir, 'echo.wat'), readFileSync(join(fixturesDir, 'echo.wat')))
  writeFileSync(join(dir, 'broken.wat'), '(module (func (export "f") (result i32) (i64.const 1)))')
  // 4 pages of initial memory: refused under a 2-page limit
  writeFileSync(join(dir, 'four-pages.wat'), `(module (memory (export "memory") 4)
    (func (export "execute") (param i32 i32) (result i32 i32) (local.get 0) (local.get 1)))`)
  // a json plugin built as a WASI reactor: it imports WASI, so it needs the grant
  writeFileSync(join(dir, 'wasi-json.wat'), `(module
    (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
    (memory (export "memory") 1)
    (data (i32.const 0) "{\\"ok\\":true}")
    (func (export "execute") (param i32 i32) (result i32 i32)
      (drop (call $random (i32.const 100) (i32.const 4))) (i32.const 0) (i32.const 11)))`)
})
afterAll(() => removeDir(dir))

function cli (args: string[], input?: string, env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [CLI, ...args], { input, encoding: 'utf8', timeout: 20_000, env: { PATH: process.env.PATH ?? '', ...env } })
}

test('run: input from --input or stdin, output on stdout, exit 0', () => {
  const a = cli(['run', join(dir, 'echo.wasm'), '--input', '{"via":"flag"}'])
  expect(a.status).toBe(0)
  expect(JSON.parse(a.stdout)).toEqual({ via: 'flag' })
  const b = cli(['run', join(dir, 'echo.wasm')], '{"via":"stdin"}')
  expect(b.status).toBe(0)
  expect(JSON.parse(b.stdout)).toEqual({ via: 'stdin' })
  const c = cli(['run', join(dir, 'echo.wasm'), '--function', 'constant', '--input', '{}'])
  expect(JSON.parse(c.stdout)).toEqual({ constant: 42 })
})

test('run: the same limits as the service (trap, deadline) exit 1 with the error as JSON', () => {
  const trap = cli(['run', join(dir, 'hostile.wasm'), '--function', 'unreachable', '--input', '{}'])
  expect(trap.status).toBe(1)
  expect(JSON.parse(trap.stderr)).toMatchObject({ code: 'PLUGIN_TRAP', details: { trap: 'unreachable' } })
  const loop = cli(['run', join(dir, 'hostile.wasm'), '--manifest', join(dir, 'fast.json'), '--function', 'loop', '--input', '{}'])
  expect(loop.status).toBe(1)
  expect(JSON.parse(loop.stderr).code).toBe('DEADLINE_EXCEEDED')
})

test('inspect: the descriptor, or the refusal with exit 3', () => {
  const ok = cli(['inspect', join(dir, 'echo.wasm')])
  expect(ok.status).toBe(0)
  expect(JSON.parse(ok.stdout)).toMatchObject({ name: 'echo', abi: 'json', entries: expect.arrayContaining(['execute']), memory: { initial: 1 } })
  const bad = cli(['inspect', join(dir, 'garbage.wasm')])
  expect(bad.status).toBe(3)
  expect(JSON.parse(bad.stdout).code).toBe('INVALID_MODULE')
  expect(cli(['run', join(dir, 'garbage.wasm'), '--input', '{}']).status).toBe(3)
})

test('usage errors exit 2; --help exits 0', () => {
  expect(cli([]).status).toBe(2)
  expect(cli(['frobnicate']).status).toBe(2)
  expect(cli(['run']).status).toBe(2)
  expect(cli(['run', join(dir, 'echo.wasm'), '--bogus']).status).toBe(2)
  for (const cmd of [['--help'], ['run', '--help'], ['inspect', '--help'], ['serve', '--help']]) {
    const res = cli(cmd)
    expect(res.status).toBe(0)
    expect(res.stdout).toMatch(/usage: wasm-plugin-host/)
  }
})

test('--version names the package version and the Node.js it runs on', () => {
  const res = cli(['--version'])
  expect(res.status).toBe(0)
  const pkg = JSON.parse(readFileSync(resolve(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }
  expect(res.stdout).toBe(`wasm-plugin-host ${pkg.version} (Node.js ${process.version})\n`)
})

test('run and inspect accept WebAssembly text directly; WAT that does not compile is INVALID_MODULE (exit 3)', () => {
  const ok = cli(['run', join(dir, 'echo.wat'), '--input', '{"from":"wat"}'])
  expect(ok.stderr).toBe('')
  expect(ok.status).toBe(0)
  expect(JSON.parse(ok.stdout)).toEqual({ from: 'wat' })
  expect(JSON.parse(cli(['inspect', join(dir, 'echo.wat')]).stdout)).toMatchObject({ name: 'echo', abi: 'json' })
  const bad = cli(['run', join(dir, 'broken.wat'), '--input', '{}'])
  expect(bad.status).toBe(3)
  expect(JSON.parse(bad.stderr)).toMatchObject({ code: 'INVALID_MODULE', message: expect.stringMatching(/WebAssembly text/) })
})

test('run --loop N: N calls, the output once, a timing summary on stderr', () => {
  const res = cli(['run', join(dir, 'echo.wasm'), '--input', '{"n":1}', '--loop', '5'])
  expect(res.status).toBe(0)
  expect(res.stdout).toBe('{"n":1}')
  expect(res.stderr).toMatch(/^5 calls: mean [\d.]+ ms, min [\d.]+ ms, p50 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms in the worker; round trip through the pool p50 [\d.]+ ms; compile [\d.]+ ms \(once\)\n$/)
  expect(cli(['run', join(dir, 'echo.wasm'), '--input', '{}', '--loop', '0']).status).toBe(2)
})

test('run --timeout and --memory set the limits (same checks as the service); malformed values exit 2', () => {
  const loop = cli(['run', join(dir, 'hostile.wasm'), '--function', 'loop', '--input', '{}', '--timeout', '200ms'])
  expect(loop.status).toBe(1)
  expect(JSON.parse(loop.stderr)).toMatchObject({ code: 'DEADLINE_EXCEEDED', message: expect.stringMatching(/200 ms/) })
  expect(cli(['run', join(dir, 'four-pages.wat'), '--input', '{}', '--memory', '4MiB']).status).toBe(0)
  const small = cli(['run', join(dir, 'four-pages.wat'), '--input', '{}', '--memory', '128KiB'])
  expect(small.status).toBe(3)
  expect(JSON.parse(small.stderr).code).toBe('INVALID_MODULE')
  const above = cli(['run', join(dir, 'echo.wasm'), '--input', '{}', '--memory', '64MiB'], undefined, { MAX_MEMORY_BYTES: String(32 * 1024 * 1024) })
  expect(JSON.parse(above.stderr)).toMatchObject({ code: 'CAPABILITY_DENIED', details: { limit: 'memoryBytes' } })
  for (const bad of [['--memory', '1000'], ['--memory', 'lots'], ['--timeout', '0'], ['--timeout', 'soon']]) {
    const res = cli(['run', join(dir, 'echo.wasm'), '--input', '{}', ...bad])
    expect(res.status).toBe(2)
    expect(res.stderr).toMatch(new RegExp(`^${bad[0] ?? ''} `))
  }
})

test('run --wasi grants WASI to a json plugin that imports it (refused without)', () => {
  const without = cli(['run', join(dir, 'wasi-json.wat'), '--input', '{}'])
  expect(without.status).toBe(3)
  expect(JSON.parse(without.stderr).code).toBe('CAPABILITY_DENIED')
  const granted = cli(['run', join(dir, 'wasi-json.wat'), '--input', '{}', '--wasi'])
  expect(granted.status).toBe(0)
  expect(JSON.parse(granted.stdout)).toEqual({ ok: true })
})

const withClang = hasClang() || process.env.REQUIRE_TOOLCHAINS === '1' ? test : test.skip
withClang('run --dir HOST::GUEST[:ro] preopens host directories, --env sets variables (a wasi plugin in C)', () => {
  const wasm = join(dir, 'files.wasm')
  writeFileSync(wasm, cSource(`#include <stdio.h>
#include <stdlib.h>
int main(void) {
  char line[64] = "";
  FILE *in = fopen("/in/hello.txt", "r");
  if (in) { fgets(line, sizeof line, in); fclose(in); }
  FILE *ro = fopen("/in/written.txt", "w");
  FILE *rw = fopen("/out/written.txt", "w");
  if (rw) { fputs("from the plugin", rw); fclose(rw); }
  const char *g = getenv("GREETING");
  printf("%s|%s|ro:%s|rw:%s\\n", line, g ? g : "(unset)", ro ? "writable" : "refused", rw ? "written" : "refused");
  return 0;
}`))
  const hostIn = join(dir, 'in')
  const hostOut = join(dir, 'out')
  mkdirSync(hostIn)
  mkdirSync(hostOut)
  writeFileSync(join(hostIn, 'hello.txt'), 'hello from the host')
  const res = cli(['run', wasm, '--input', '', '--dir', `${hostIn}::/in:ro`, '--dir', `${hostOut}::/out`, '--env', 'GREETING=hi there'])
  expect(res.stderr).toBe('')
  expect(res.status).toBe(0)
  expect(res.stdout).toBe('hello from the host|hi there|ro:refused|rw:written\n')
  expect(readFileSync(join(hostOut, 'written.txt'), 'utf8')).toBe('from the plugin')
  const none = cli(['run', wasm, '--input', ''])
  expect(none.stdout).toBe('|(unset)|ro:refused|rw:refused\n')
  expect(cli(['run', wasm, '--input', '', '--dir', join(dir, 'missing') + '::/in']).status).toBe(2)
  expect(cli(['run', wasm, '--input', '', '--dir', `${hostIn}::relative`]).status).toBe(2)
  expect(cli(['run', wasm, '--input', '', '--env', 'NOEQUALS']).status).toBe(2)
})

test('run --volume-dir that does not exist is a usage error (exit 2), not INTERNAL', () => {
  const manifest = join(dir, 'volume.json')
  writeFileSync(manifest, JSON.stringify({ capabilities: { wasi: { preopens: [{ guest: '/data', volume: '@plugin', mode: 'rw' }] } } }))
  const res = cli(['run', join(dir, 'echo.wasm'), '--input', '{}', '--manifest', manifest, '--volume-dir', join(dir, 'no-such-dir')])
  expect(res.status).toBe(2)
  expect(res.stderr).toBe(`--volume-dir '${join(dir, 'no-such-dir')}': no such directory\n`)
})

// --config and --allow-host (extism ABI) are also run on the as-extism scaffold in cli-scaffold.test.ts.

test('run with a terminal on stdin and no --input says so on stderr', () => {
  const script = spawnSync('script', ['--version'], { encoding: 'utf8' })
  if (script.status !== 0) {
    console.warn('cli.test: no `script` (util-linux) to give the CLI a terminal; the terminal case is not run')
    return
  }
  const quote = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`
  const res = spawnSync('script', ['-qec', [process.execPath, CLI, 'run', join(dir, 'echo.wasm')].map(quote).join(' '), '/dev/null'], {
    encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' }
  })
  expect(res.stdout).toMatch(/no input: standard input is a terminal and --input is not given/)
  expect(res.stdout).toMatch(/INVALID_INPUT/)
  expect(res.status).toBe(2)
})

test('run: an Extism plugin with --function, --config k=v and --allow-host; its logs as JSON lines on stderr', async () => {
  writeFileSync(join(dir, 'kernel.wasm'), await watFixture('extism-kernel'))
  writeFileSync(join(dir, 'host.wasm'), await watFixture('extism-host'))
  const config = cli(['run', join(dir, 'kernel.wasm'), '--function', 'config', '--config', 'greeting=hi there', '--input', 'greeting'])
  expect(config.status).toBe(0)
  expect(config.stdout).toBe('hi there')
  const logs = cli(['run', join(dir, 'kernel.wasm'), '--function', 'logs', '--input', ''])
  expect(logs.stdout).toBe('logged')
  expect(logs.stderr.trim().split('\n').map(l => JSON.parse(l).msg)).toEqual(['an info line', 'a warning', 'an error line'])
  const failed = cli(['run', join(dir, 'kernel.wasm'), '--function', 'fail', '--input', ''])
  expect(failed.status).toBe(1)
  expect(JSON.parse(failed.stderr)).toMatchObject({ code: 'PLUGIN_ERROR', details: { message: 'boom', returnCode: 7 } })
  const which = cli(['run', join(dir, 'kernel.wasm'), '--input', ''])
  expect(which.status).toBe(2)
  expect(JSON.parse(which.stderr).details.functions).toContain('echo')
  // Without --allow-host the request is refused; with it (and private addresses allowed), made.
  const server = createServer((_req, res) => res.end('pong')).listen(0, '127.0.0.1')
  await new Promise(resolve => server.once('listening', resolve))
  const request = JSON.stringify({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}/` })
  const denied = cli(['run', join(dir, 'host.wasm'), '--function', 'get', '--input', request])
  expect(JSON.parse(denied.stderr)).toMatchObject({ code: 'CAPABILITY_DENIED' })
  const allowed = await new Promise<{ status: number | null, stdout: string }>(resolve => {
    const child = spawn(process.execPath, [CLI, 'run', join(dir, 'host.wasm'), '--function', 'get', '--allow-host', '127.0.0.1', '--input', request],
      { env: { PATH: process.env.PATH ?? '', HTTP_ALLOW_PRIVATE: 'true' } })
    let stdout = ''
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString() })
    child.on('close', status => resolve({ status, stdout }))
  })
  server.close()
  expect(allowed).toEqual({ status: 0, stdout: 'pong' })
}, 120_000)
