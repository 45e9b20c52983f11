// Every Extism plugin here runs through the service and through the Extism JS SDK
// (@extism/extism 1.0.3) with the same input and config: outputs byte-equal, errors of the
// same kind, the same log lines. Where the SDK departs from Extism's reference runtime the
// case says so and checks the documented difference instead.
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { buildApp } from '../../src/app'
import { loadConfig } from '../../src/config'
import { removeDir, tempDir, uploadBody } from '../helpers/build-app'
import { asPdkSource, watFixture } from '../helpers/fixtures'
import { countVowels, globalState, kitchen } from '../fixtures/extism/as-plugins'
import { sdkPlugin, viaSdk, viaService } from '../helpers/extism-diff'
import type { LogLine, Outcome } from '../helpers/extism-diff'
import type { FastifyInstance } from 'fastify'

const PINO_LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error' }

let app: FastifyInstance
let dataDir: string
const serviceLogs: Array<{ plugin?: string, code?: string, level: number, msg: string }> = []

beforeAll(async () => {
  dataDir = tempDir('wph-extism-diff-')
  const config = loadConfig({ WORKERS: '2', DATA_DIR: dataDir, PLUGIN_LOG_LEVEL: 'trace' })
  app = await buildApp(config, {
    logger: { level: 'trace', stream: { write: (line: string) => { serviceLogs.push(JSON.parse(line)) } } }
  })
  await app.ready()
})
afterAll(async () => {
  await app.close()
  removeDir(dataDir)
})

async function upload (name: string, wasm: Buffer, manifest: Record<string, unknown>): Promise<void> {
  const res = await app.inject({ method: 'POST', url: '/plugins', ...uploadBody(wasm, { name, abi: 'extism', ...manifest }) })
  expect(res.statusCode).toBe(201)
}

/** The plugin's own log lines; not the service's line for a failed call (it has a `code`). */
function logsOf (plugin: string): LogLine[] {
  return serviceLogs.filter(l => l.plugin === plugin && l.code === undefined).map(l => ({ level: PINO_LEVELS[l.level] ?? String(l.level), msg: l.msg }))
}

type Case = [fn: string, input: string, note?: string]

/**
 * Runs the cases in order on both sides (vars carry over between calls on both) and returns
 * the table. A case with a note is a documented difference: the note names the expected
 * outcome on each side instead of equality.
 */
async function differential (name: string, wasm: Buffer, config: Record<string, string>, cases: Case[],
  differences: Record<string, { service: Outcome, sdk: Outcome }> = {}, manifest: Record<string, unknown> = {}): Promise<void> {
  await upload(name, wasm, { config, ...manifest })
  const { plugin, logs } = await sdkPlugin(wasm, config)
  try {
    for (const [fn, input] of cases) {
      const before = logs.length
      const serviceBefore = logsOf(name).length
      const service = await viaService(app, name, fn, Buffer.from(input))
      const sdk = await viaSdk(plugin, fn, Buffer.from(input))
      const expected = differences[fn]
      if (process.env.EXTISM_DIFF_TABLE === '1') table.push(`| ${name} | ${fn} | ${JSON.stringify(input).slice(0, 30)} | ${show(service)} | ${show(sdk)} |`)
      if (expected !== undefined) {
        expect({ fn, service, sdk }).toEqual({ fn, ...expected })
      } else {
        expect({ fn, service }).toEqual({ fn, service: sdk })
      }
      // Log lines are written when the call ends; let the logger flush.
      await new Promise(resolve => setImmediate(resolve))
      expect({ fn, logs: logsOf(name).slice(serviceBefore) }).toEqual({ fn, logs: logs.slice(before) })
    }
  } finally {
    await plugin.close()
  }
}

const table: string[] = []
afterAll(() => { if (table.length > 0) console.log(table.join('\n')) })
const show = (o: Outcome): string => o.ok ? `ok ${Buffer.from(o.output, 'hex').toString('utf8').replace(/[^\x20-\x7e]/g, '.').slice(0, 40)}` : `${o.kind}${'message' in o ? ` "${o.message}"` : ''}`

const hex = (s: string): string => Buffer.from(s).toString('hex')
const u64s = (...values: number[]): string => Buffer.concat(values.map(v => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b })).toString('hex')

test('WAT: each kernel function the SDK provides, and its edge cases', async () => {
  const wasm = await watFixture('extism-kernel')
  await differential('kernel', wasm, { k: 'v', empty: '' }, [
    ['echo', 'hello world'],
    ['echo', ''],
    ['echo', '\u0000\u00ff binary \u{1F600}'],
    ['echo_u64', 'exactly 16 bytes'],
    ['echo_u64', 'seventeen bytes!!'],
    ['echo_u64', 'abc'],
    ['config', 'k'],
    ['config', 'missing'],
    ['var_absent', ''],
    ['var_count', ''],
    ['var_count', ''],
    ['var_count', ''],
    ['var_delete', ''],
    ['var_count', ''],
    ['lengths', ''],
    ['length_unknown', ''],
    ['input_block', 'some input'],
    ['logs', ''],
    ['void_ok', ''],
    ['empty_output', ''],
    ['fail', ''],
    ['fail_void', ''],
    ['fail_rc', ''],
    ['oob_load_u8', ''],
    ['oob_load_u64', ''],
    ['oob_store_u8', ''],
    ['oob_store_u64', ''],
    ['oob_input_u8', 'x'],
    ['oob_input_u64', 'seven!!'],
    ['oob_output_set', ''],
    ['oob_error_set', '']
  ], {
    // The SDK 1.0.3 ignores a non-zero return code without an error message; Extism's
    // reference runtime fails the call ("plugin returned non-zero"), as the service does.
    fail_rc: { service: { ok: false, kind: 'PLUGIN_ERROR', message: 'plugin returned 3' }, sdk: { ok: true, output: '' } }
  })
  // Spot checks of what the shared outcomes were.
  expect(await viaService(app, 'kernel', 'lengths', Buffer.alloc(0))).toEqual({ ok: true, output: u64s(13, 13, 0) })
  expect(await viaService(app, 'kernel', 'config', Buffer.from('k'))).toEqual({ ok: true, output: hex('v') })
  expect(await viaService(app, 'kernel', 'fail', Buffer.alloc(0))).toEqual({ ok: false, kind: 'PLUGIN_ERROR', message: 'boom' })
  expect(await viaService(app, 'kernel', 'oob_load_u8', Buffer.alloc(0))).toEqual({ ok: false, kind: 'PLUGIN_TRAP' })
})

test('AssemblyScript PDK: the PDK\'s count-vowels example', async () => {
  const wasm = asPdkSource(countVowels)
  await differential('as-count-vowels', wasm, { thing: 'a thing' }, [
    ['count_vowels', 'Hello, World!'],
    ['count_vowels', ''],
    ['count_vowels', 'AEIOU aeiou xyz'.repeat(100)]
  ])
  expect(await viaService(app, 'as-count-vowels', 'count_vowels', Buffer.from('Hello, World!')))
    .toEqual({ ok: true, output: hex('{"count": 3, "config": "a thing", "a": "this is var a"}') })
})

test('AssemblyScript PDK: config, vars across calls, bytes, errors, logs, traps', async () => {
  const wasm = asPdkSource(kitchen)
  await differential('as-kitchen', wasm, { greeting: 'bonjour' }, [
    ['greet', 'world'],
    ['counter', ''],
    ['counter', ''],
    ['counter', ''],
    ['reset', ''],
    ['counter', ''],
    ['bytes', '\u0000\u0001\u0002 raw'],
    ['bytes', ''],
    ['fail', 'no way'],
    ['logs', 'line'],
    ['trap', ''],
    ['unicode', 'plain ascii'],
    ['unicode', 'héllo wörld']
  ])
})

/** Builds examples/DIR with its build.sh; undefined when its toolchain is missing (exit 3). */
function example (dir: string): Buffer | undefined {
  const root = resolve(__dirname, '..', '..', 'examples', dir)
  const run = spawnSync('bash', [join(root, 'build.sh')], { encoding: 'utf8', timeout: 300_000 })
  if (run.status === 3 && process.env.REQUIRE_TOOLCHAINS !== '1') {
    console.warn(`skipping examples/${dir}: toolchain missing`)
    return undefined
  }
  if (run.status !== 0) throw new Error(`examples/${dir}/build.sh failed: ${run.stdout}${run.stderr}`)
  return readFileSync(join(root, 'build', 'count_vowels.wasm'))
}

const vowelCases: Case[] = [
  ['count_vowels', 'Hello World'],
  ['count_vowels', ''],
  ['count_vowels', 'naïve café, Øresund, 日本語 👋 AEIOU'],
  ['count_vowels', 'Ab'.repeat(5000)]
]

test('examples/c-extism: the C plugin against our kernel header, default and configured vowels', async () => {
  const wasm = example('c-extism')
  if (wasm === undefined) return
  await differential('c-extism', wasm, {}, vowelCases)
  await differential('c-extism-y', wasm, { vowels: 'yY' }, [['count_vowels', 'Yes, yearly']])
})

test('examples/as-extism: the AssemblyScript example (config, a var across calls, logs)', async () => {
  const wasm = example('as-extism')
  if (wasm === undefined) return
  await differential('as-extism', wasm, { vowels: 'aeiouy' }, vowelCases)
})

test('"instance": "reuse": state in the plugin\'s own globals and memory carries over between calls, as in Extism (which keeps one instance per plugin)', async () => {
  // One worker thread here: a kept instance is per thread, and the SDK has one.
  const wasm = asPdkSource(globalState)
  const saved = app
  const dir = tempDir('wph-extism-reuse-')
  app = await buildApp(loadConfig({ WORKERS: '1', DATA_DIR: dir, PLUGIN_LOG_LEVEL: 'trace' }), {
    logger: { level: 'trace', stream: { write: (line: string) => { serviceLogs.push(JSON.parse(line)) } } }
  })
  try {
    const ticks: Case[] = [['tick', 'a'], ['tick', 'bb'], ['tick', ''], ['tick', 'hello world'], ['tick', 'z'.repeat(300)]]
    await differential('as-state-reuse', wasm, {}, ticks, {}, { instance: 'reuse' })
    // The default, "fresh": every call starts from the initial state (DESIGN.md's deliberate
    // difference from Extism), so the counter never passes 1.
    await upload('as-state-fresh', wasm, { instance: 'fresh' })
    for (const input of ['a', 'bb', 'c']) expect(await viaService(app, 'as-state-fresh', 'tick', Buffer.from(input))).toEqual({ ok: true, output: hex(`1 ${input};`) })
    // A failed call drops the kept instance (nothing half-updated survives): the next call
    // starts again from 1, where Extism's instance goes on counting.
    expect(await viaService(app, 'as-state-reuse', 'fail', Buffer.from(''))).toEqual({ ok: false, kind: 'PLUGIN_ERROR', message: 'failed at call 6' })
    expect(await viaService(app, 'as-state-reuse', 'tick', Buffer.from('x'))).toEqual({ ok: true, output: hex('1 x;') })
  } finally {
    await app.close()
    app = saved
    removeDir(dir)
  }
})
