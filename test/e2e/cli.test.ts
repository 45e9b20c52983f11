// The CLI as a plugin author runs it: real process, real files, exit codes scripts can use.
import { spawn, spawnSync } from 'node:child_process'
import { createServer } from 'node:http'
import { writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { removeDir, tempDir } from '../helpers/build-app'
import { watFixture } from '../helpers/fixtures'

const CLI = resolve(__dirname, '..', '..', 'dist', 'cli.js')
let dir: string

beforeAll(async () => {
  dir = tempDir('wph-cli-')
  writeFileSync(join(dir, 'echo.wasm'), await watFixture('echo'))
  writeFileSync(join(dir, 'hostile.wasm'), await watFixture('hostile'))
  writeFileSync(join(dir, 'garbage.wasm'), 'not wasm')
  writeFileSync(join(dir, 'fast.json'), JSON.stringify({ limits: { timeoutMs: 200 } }))
})
afterAll(() => removeDir(dir))

function cli (args: string[], input?: string) {
  return spawnSync(process.execPath, [CLI, ...args], { input, encoding: 'utf8', timeout: 20_000, env: { PATH: process.env.PATH ?? '' } })
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
