// Instance reset (issue 15): a kept instance put back to its state right after instantiation
// must be indistinguishable from a new instance. Differential: random sequences of calls that
// write memory, globals and tables, grow memory or a table, trap, exit and hit limits give the
// same answers on reset instances as on new ones, and every call on a reset instance sees the
// initial state (the fixtures hash every byte of memory, every global and every table slot at
// entry). In-process, no threads: the worker runs exactly these classes.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import fc from 'fast-check'
import { inspectModule } from '../../src/registry/inspect'
import type { PluginLimits } from '../../src/registry/manifest'
import { GuestError } from '../../src/sandbox/guest-error'
import { runSandboxed } from '../../src/sandbox/instance'
import type { SandboxCall } from '../../src/sandbox/instance'
import { MemoryPool } from '../../src/sandbox/memory-pool'
import { ResetInstances } from '../../src/sandbox/reset-instances'
import { emptyEffects } from '../../src/sandbox/extism/types'
import type { ExtismSpec } from '../../src/sandbox/extism/types'
import { planReset } from '../../src/sandbox/reset-plan'
import { parseModule } from '../../src/sandbox/binary'
import { parseLimitsFor } from '../../src/sandbox/limits'
import { fixturesDir, wat, watFixture } from '../helpers/fixtures'

const LIMITS: PluginLimits = { memoryBytes: 4 * 65536, timeoutMs: 5000, tableElements: 100, outputBytes: 4096 }

interface Plugin { module: WebAssembly.Module, memory: SandboxCall['memory'], abi: SandboxCall['abi'] }

async function load (bytes: Uint8Array, wasi = false): Promise<Plugin & { plan: ReturnType<typeof planReset> }> {
  const inspection = inspectModule(bytes, LIMITS, undefined, wasi)
  return { module: await WebAssembly.compile(inspection.rewritten as Uint8Array<ArrayBuffer>), memory: inspection.memory, abi: inspection.abi, plan: inspection.reset }
}

function call (p: Plugin, entry: string, input: string): SandboxCall {
  return {
    module: p.module,
    abi: p.abi,
    entry,
    input: Buffer.from(input),
    memory: p.memory,
    outputBytes: LIMITS.outputBytes,
    deadline: Date.now() + 60_000,
    wasi: p.abi === 'wasi' ? { args: [], env: {}, preopens: [] } : undefined
  }
}

/** A call's outcome as a client sees it. */
function outcome (run: () => { output: Uint8Array }): string {
  try {
    return `ok ${Buffer.from(run().output).toString()}`
  } catch (err) {
    if (!(err instanceof GuestError)) throw err
    return `${err.code} ${err.message} ${JSON.stringify(err.details ?? {})}`
  }
}

const JSON_OPS = ['observe', 'write', 'grow', 'tgrow', 'trap', 'overflow', 'deep'] as const
const WASI_OPS = ['o', 'w', 'g', 't', 'e', 'z'] as const

describe('reset plan', () => {
  const plan = async (source: string, abi = 'wasi'): Promise<ReturnType<typeof planReset>> => planReset(parseModule(await wat(source), parseLimitsFor(LIMITS.memoryBytes)), abi)

  test('the state fixtures (start function without imports, tables, every kind of global) are reset in place', async () => {
    expect((await load(await watFixture('state-json'))).plan).toEqual({ mode: 'reset' })
    expect((await load(await watFixture('state-wasi'), true)).plan).toEqual({ mode: 'reset' })
  })

  test.each([
    ['passive_data_segments', '(module (memory 1) (data "x") (func (export "f") (data.drop 0)))'],
    ['passive_element_segments', '(module (table 1 funcref) (func $f) (elem func $f) (func (export "g") (elem.drop 0)))'],
    ['start_function_imports', '(module (import "wasi_snapshot_preview1" "sched_yield" (func $y (result i32))) (func $s (drop (call $y))) (start $s))'],
    ['v128_global', '(module (global (mut v128) (v128.const i32x4 0 0 0 0)))']
  ])('falls back to a new instance per call for %s, and says why', async (reason, source) => {
    const p = await plan(source)
    expect(p).toMatchObject({ mode: 'new-instance', reason })
    expect(p.mode === 'new-instance' && p.detail.length > 20).toBe(true)
  })

  test('a json plugin without alloc (its input is written by growing memory) gets a new instance per call', async () => {
    const base = '(memory (export "memory") 1) (func (export "execute") (param i32 i32) (result i32 i32) (i32.const 0) (i32.const 0))'
    expect(await plan(`(module ${base})`, 'json')).toMatchObject({ mode: 'new-instance', reason: 'json_without_alloc' })
    expect(await plan(`(module ${base} (func (export "alloc") (param i32) (result i32) (i32.const 0)))`, 'json')).toEqual({ mode: 'reset' })
  })

  test('an extism plugin is reset in place too (the kernel is the host\'s, a new one per call)', async () => {
    const p = await plan('(module (import "extism:host/env" "output_set" (func (param i64 i64))) (memory (export "memory") 1) (func (export "run") (result i32) (i32.const 0)))', 'extism')
    expect(p).toEqual({ mode: 'reset' })
  })

  test('passive segments without data.drop/elem.drop (memory.init, table.init only) do not prevent a reset', async () => {
    expect(await plan('(module (memory 1) (data "x") (table 1 funcref) (func $f) (elem func $f) (func (memory.init 0 (i32.const 0) (i32.const 0) (i32.const 1)) (table.init 0 (i32.const 0) (i32.const 0) (i32.const 1))))')).toEqual({ mode: 'reset' })
  })

  test.each([
    ['nothing', '(func (drop (table.get 0 (i32.const 0))) (drop (table.size 0)) (call_indirect (i32.const 0)))', { tableWrites: false, dataDrop: false, elemDrop: false }],
    ['table.set', '(func (table.set 0 (i32.const 0) (ref.null func)))', { tableWrites: true, dataDrop: false, elemDrop: false }],
    ['table.grow', '(func (drop (table.grow 0 (ref.null func) (i32.const 1))))', { tableWrites: true, dataDrop: false, elemDrop: false }],
    ['table.fill', '(func (table.fill 0 (i32.const 0) (ref.null func) (i32.const 1)))', { tableWrites: true, dataDrop: false, elemDrop: false }],
    ['table.copy', '(func (table.copy (i32.const 0) (i32.const 0) (i32.const 1)))', { tableWrites: true, dataDrop: false, elemDrop: false }],
    ['data.drop', '(data "x") (func (data.drop 0))', { tableWrites: false, dataDrop: true, elemDrop: false }],
    ['elem.drop', '(elem func 0) (func (elem.drop 0))', { tableWrites: false, dataDrop: false, elemDrop: true }],
    ['SIMD, immediates that look like opcodes', '(func (drop (v128.const i32x4 0x26262626 0xfc0dfc09 0x26 0x26)) (drop (i32.const 0x26)) (drop (i64.const 0xfc0d)) (drop (f64.const 1.5)) (drop (i8x16.extract_lane_u 3 (v128.load offset=38 (i32.const 0)))))', { tableWrites: false, dataDrop: false, elemDrop: false }]
  ])('the code scan finds %s', async (_, body, facts) => {
    const info = parseModule(await wat(`(module (memory 1) (table 2 funcref) (type (func)) ${body})`), parseLimitsFor(LIMITS.memoryBytes))
    expect(info.code).toEqual({ ...facts, startCallsImports: false })
  })

  const imported = '(import "wasi_snapshot_preview1" "sched_yield" (func $y (result i32))) (memory 1) (table 1 funcref) (type $t (func))'
  test.each([
    ['calls the import itself', true, '(func $s (drop (call $y))) (start $s)'],
    ['calls it three calls deep, through a cycle', true, '(func $s (call $a)) (func $a (call $b)) (func $b (call $a) (call $c)) (func $c (drop (call $y))) (start $s)'],
    ['makes an indirect call (it could reach anything)', true, '(func $s (call $a)) (func $a (call_indirect (type $t) (i32.const 0))) (start $s)'],
    ['only writes memory and globals, through calls, in a cycle', false, '(global $g (mut i32) (i32.const 0)) (func $s (call $a)) (func $a (i32.store (i32.const 0) (i32.const 1)) (call $b)) (func $b (global.set $g (i32.const 2)) (if (i32.eqz (global.get $g)) (then (call $a)))) (func $other (drop (call $y))) (start $s)']
  ])('a start function that %s: startCallsImports is %s', async (_, calls, body) => {
    const info = parseModule(await wat(`(module ${imported} ${body})`), parseLimitsFor(LIMITS.memoryBytes))
    expect(info.code?.startCallsImports).toBe(calls)
    expect(planReset(info, 'wasi')).toMatchObject(calls ? { mode: 'new-instance', reason: 'start_function_imports' } : { mode: 'reset' })
  })

  test('a mutable table is restored; a table no instruction writes is not even exported to the host', async () => {
    const exported = async (source: string): Promise<string[]> => WebAssembly.Module.exports((await load(await wat(source))).module).map(e => e.name).filter(n => n.startsWith('wph:'))
    const base = '(memory (export "memory") 1) (table 2 funcref) (func (export "execute") (param i32 i32) (result i32 i32) (i32.const 0) (i32.const 0))'
    expect(await exported(`(module ${base} (global (mut i32) (i32.const 0)) (global i32 (i32.const 0)))`)).toEqual(['wph:state:global:0'])
    expect(await exported(`(module ${base} (func (table.set 0 (i32.const 0) (ref.null func))))`)).toEqual(['wph:state:table:0'])
  })

  test('an immutable v128 global, or a declarative element segment, does not prevent a reset', async () => {
    expect(await plan('(module (global v128 (v128.const i32x4 1 2 3 4)) (func $f) (elem declare func $f))')).toEqual({ mode: 'reset' })
  })

  test('a guest export under the host\'s reserved names is refused at upload', async () => {
    const bytes = await wat('(module (memory (export "memory") 1) (global (export "wph:state:global:0") (mut i32) (i32.const 0)) (func (export "execute") (param i32 i32) (result i32 i32) (i32.const 0) (i32.const 0)))')
    expect(() => inspectModule(bytes, LIMITS, undefined, false)).toThrow(/reserved by the host/)
  })
})

const EXTISM_OPS = ['observe', 'write', 'grow', 'tgrow', 'trap', 'overflow', 'deep', 'fail'] as const

/**
 * state-json.wat as an Extism plugin: each entry `x_<op>` copies the kernel's input into its
 * memory, runs the json entry `<op>` on it and sets the answer as the kernel's output. Without
 * its start function (a start function and function imports make a module fall back to new
 * instances, reset-plan.ts); `x_fail` changes state, then fails with error_set.
 */
async function stateExtism (): Promise<Buffer> {
  let source = readFileSync(join(fixturesDir, 'state-json.wat'), 'utf8').replace('(start $init)', '')
  for (const op of ['observe', 'write', 'grow', 'tgrow', 'trap', 'overflow', 'deep']) source = source.replace(`(func (export "${op}")`, `(func $e_${op} (export "${op}")`)
  source = source.replace('(func (export "alloc")', '(func $alloc (export "alloc")')
  const kernel = `
  (import "extism:host/env" "input_length" (func $in_len (result i64)))
  (import "extism:host/env" "input_load_u8" (func $in_u8 (param i64) (result i32)))
  (import "extism:host/env" "alloc" (func $k_alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $k_store (param i64 i32)))
  (import "extism:host/env" "output_set" (func $k_out (param i64 i64)))
  (import "extism:host/env" "error_set" (func $k_err (param i64)))`
  const wrappers = `
  (func $input (result i32 i32)
    (local $n i32) (local $p i32) (local $i i32)
    (local.set $n (i32.wrap_i64 (call $in_len)))
    (local.set $p (call $alloc (local.get $n)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store8 (i32.add (local.get $p) (local.get $i)) (call $in_u8 (i64.extend_i32_u (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $p) (local.get $n))
  (func $output (param $p i32) (param $n i32) (result i32)
    (local $k i64) (local $i i32)
    ;; over any limit: the kernel refuses the length before reading a byte
    (if (i32.gt_u (local.get $n) (i32.const 65536)) (then (call $k_out (i64.const 0) (i64.extend_i32_u (local.get $n))) (return (i32.const 0))))
    (local.set $k (call $k_alloc (i64.extend_i32_u (local.get $n))))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (call $k_store (i64.add (local.get $k) (i64.extend_i32_u (local.get $i))) (i32.load8_u (i32.add (local.get $p) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (call $k_out (local.get $k) (i64.extend_i32_u (local.get $n)))
    (i32.const 0))
${['observe', 'write', 'grow', 'tgrow', 'trap', 'overflow', 'deep'].map(op => `  (func (export "x_${op}") (result i32) (call $input) (call $e_${op}) (call $output))`).join('\n')}
  (func (export "x_fail") (result i32)
    (local $k i64)
    (call $input) (call $scribble)
    (local.set $k (call $k_alloc (i64.const 1)))
    (call $k_store (local.get $k) (i32.const 120))
    (call $k_err (local.get $k))
    (i32.const 1))`
  source = source.replace('(module', `(module${kernel}`)
  source = source.slice(0, source.lastIndexOf(')')) + wrappers + ')'
  return wat(source)
}

function extismCall (p: Plugin, entry: string, input: string): SandboxCall {
  const spec: ExtismSpec = { config: {}, vars: [], memoryBytes: LIMITS.memoryBytes, varBytes: 4096, logLevel: 0, http: undefined }
  return { ...call(p, entry, input), extism: { spec, effects: emptyEffects(), http: undefined } }
}

interface Differential {
  ops: readonly string[]
  /** The call an op makes with a random text. */
  run: (op: string, text: string) => SandboxCall
  /** A call that only reports the state it found, and what it answers on a new instance. */
  probe: () => SandboxCall
  baseline: RegExp
  /** The ops that grow memory or a table. */
  grows: readonly string[]
  maxLength: number
}

/**
 * Random sequences of `ops` answer on reset instances as on new ones, and after each, `probe`
 * sees exactly what it sees on a new instance. The reset path was taken: an instance is made
 * again only after a call grew memory or a table (they cannot shrink).
 */
function resetMatchesNew ({ ops, run, probe, baseline: pattern, grows, maxLength }: Differential): void {
  const fresh = new MemoryPool()
  const baseline = outcome(() => runSandboxed(probe(), fresh))
  expect(baseline).toMatch(pattern)
  let key = 0
  fc.assert(fc.property(
    fc.array(fc.record({ op: fc.constantFrom(...ops), text: fc.string({ maxLength }) }), { minLength: 1, maxLength: 12 }),
    (calls) => {
      const resets = new ResetInstances(new MemoryPool())
      const k = `plugin-${key++}`
      for (const { op, text } of calls) {
        const expected = outcome(() => runSandboxed(run(op, text), fresh))
        expect(outcome(() => resets.run(k, run(op, text)))).toBe(expected)
        expect(outcome(() => resets.run(k, probe()))).toBe(baseline)
      }
      const grew = calls.filter(c => grows.includes(c.op)).length
      expect(resets.stats.created).toBe(1 + grew)
      expect(resets.stats.dropped).toBe(grew)
    }
  ), { numRuns: 60 })
}

describe('reset instances against new instances', () => {
  let json: Awaited<ReturnType<typeof load>>
  let wasi: Awaited<ReturnType<typeof load>>
  beforeAll(async () => {
    json = await load(await watFixture('state-json'))
    wasi = await load(await watFixture('state-wasi'), true)
  })

  test('json: random sequences of calls answer the same, and every call starts from the initial state', () => {
    resetMatchesNew({ ops: JSON_OPS, run: (op, text) => call(json, op, JSON.stringify(text)), probe: () => call(json, 'observe', '"probe"'), baseline: /^ok "[0-9a-f]{16}"$/, grows: ['grow', 'tgrow'], maxLength: 30 })
  })

  test('wasi: random sequences of calls (writes, grow, trap, proc_exit 0 and 3) answer the same, from the initial state', () => {
    resetMatchesNew({ ops: WASI_OPS, run: (op, text) => call(wasi, '_start', op + text), probe: () => call(wasi, '_start', 'o'), baseline: /^ok [0-9a-f]{16}$/, grows: ['g'], maxLength: 20 })
  })

  test('extism: random sequences of calls (writes, grow, trap, output over the limit, error_set, stack overflow) answer the same, from the initial state', async () => {
    const ext = await load(await stateExtism())
    expect(ext.abi).toBe('extism')
    expect(ext.plan).toEqual({ mode: 'reset' })
    resetMatchesNew({ ops: EXTISM_OPS, run: (op, text) => extismCall(ext, `x_${op}`, JSON.stringify(text)), probe: () => extismCall(ext, 'x_observe', '"probe"'), baseline: /^ok "[0-9a-f]{16}"$/, grows: ['grow', 'tgrow'], maxLength: 30 })
  })

  test('each call gets its own WASI context on a kept instance: stdin, stdout and exit code are per call', () => {
    const resets = new ResetInstances(new MemoryPool())
    const a = outcome(() => resets.run('w', call(wasi, '_start', 'wAAAA')))
    expect(outcome(() => resets.run('w', call(wasi, '_start', 'eB')))).toMatch(/^PLUGIN_EXIT 3 /)
    expect(outcome(() => resets.run('w', call(wasi, '_start', 'wAAAA')))).toBe(a)
    expect(resets.stats).toEqual({ created: 1, reused: 2, dropped: 0 })
  })

  test('instances are kept per key, and a kept instance is never shared between keys', () => {
    const resets = new ResetInstances(new MemoryPool())
    const first = outcome(() => resets.run('a', call(json, 'write', '"1"')))
    expect(outcome(() => resets.run('b', call(json, 'write', '"1"')))).toBe(first)
    expect(resets.size).toBe(2)
  })
})

describe('what a worker keeps is bounded by bytes (security issue 16)', () => {
  const PAGE = 65536

  test('free memories: a memory over the budget is not kept; older shapes make room for newer ones', () => {
    const pool = new MemoryPool(8 * PAGE)
    const big = pool.acquire(16, 16)
    pool.release(big, 16, 16)
    expect(pool.bytes).toBe(0)
    for (const pages of [3, 4, 5]) pool.release(pool.acquire(pages, 16), pages, 16)
    expect(pool.bytes).toBeLessThanOrEqual(8 * PAGE)
    expect(pool.bytes).toBe(5 * PAGE) // the 3- and 4-page shapes went first (least recently used)
    const again = pool.acquire(5, 16)
    expect(pool.stats.reused).toBe(1)
    expect(pool.bytes).toBe(0)
    pool.release(again, 5, 16)
  })

  test('kept instances count against the same budget; free memories go before instances, least recently used first', async () => {
    const pool = new MemoryPool(3 * PAGE)
    const resets = new ResetInstances(pool)
    const echo = await load(await watFixture('state-json')) // 1 page + its image
    for (let i = 0; i < 5; i++) outcome(() => resets.run(`p${i}`, call(echo, 'observe', '"x"')))
    expect(pool.bytes).toBeLessThanOrEqual(3 * PAGE)
    expect(resets.size).toBe(2)
    // The most recent ones are kept: p4 is reset, not created again.
    const created = resets.stats.created
    outcome(() => resets.run('p4', call(echo, 'observe', '"x"')))
    expect(resets.stats.created).toBe(created)
  })

  test('what kept instances hold pushes free memories out first', () => {
    const pool = new MemoryPool(4 * PAGE)
    pool.release(pool.acquire(2, 8), 2, 8)
    expect(pool.bytes).toBe(2 * PAGE)
    pool.hold(3 * PAGE)
    expect(pool.bytes).toBe(3 * PAGE) // the free 2-page memory went
    pool.hold(-3 * PAGE)
    pool.release(pool.acquire(2, 8), 2, 8)
    pool.hold(5 * PAGE) // instances alone over the budget: the free memories still go
    expect(pool.bytes).toBe(5 * PAGE)
    pool.release(pool.acquire(1, 8), 1, 8) // and nothing more is kept
    expect(pool.bytes).toBe(5 * PAGE)
  })

  test('an instance whose memory alone is over the budget is never kept', async () => {
    const pool = new MemoryPool(PAGE / 2)
    const resets = new ResetInstances(pool)
    const p = await load(await watFixture('state-json'))
    const a = outcome(() => resets.run('k', call(p, 'write', '"x"')))
    expect(outcome(() => resets.run('k', call(p, 'write', '"x"')))).toBe(a)
    expect(resets.size).toBe(0)
    expect(pool.bytes).toBe(0)
  })
})
