// The section parser and the sandbox rewrite. Modules come from WAT (wabt) where wabt can
// express them, and are assembled byte by byte where it cannot: malformed input, memory64,
// shared memory, several memories, counts larger than the module.
import * as fc from 'fast-check'
import { parseModule, rewriteModule, WasmBinaryError } from '../../src/sandbox/binary'
import type { ModuleInfo, ParseLimits, RewriteOptions } from '../../src/sandbox/binary'
import { wat } from '../helpers/fixtures'
import { leb as lebBytes } from '../helpers/wasm-writer'

const LIMITS: ParseLimits = {
  maxFunctions: 1000,
  maxImports: 1000,
  maxExports: 1000,
  maxGlobals: 1000,
  maxTypes: 1000,
  maxDataSegments: 1000,
  maxElementSegments: 1000,
  maxDataBytes: 1 << 20,
  maxCustomSectionBytes: 1 << 20
}
const CAPS: RewriteOptions = { memoryMaxPages: 4, tableMaxElements: 5 }

// --- hand assembly -------------------------------------------------------------------

const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]

function leb (value: number): number[] {
  return [...lebBytes(value)]
}

function str (text: string): number[] {
  const bytes = [...Buffer.from(text)]
  return [...leb(bytes.length), ...bytes]
}

function vec (items: number[][]): number[] {
  return [...leb(items.length), ...items.flat()]
}

function section (id: number, payload: number[]): number[] {
  return [id, ...leb(payload.length), ...payload]
}

function custom (name: string, payload: number[]): number[] {
  return section(0, [...str(name), ...payload])
}

function assemble (...sections: number[][]): Uint8Array<ArrayBuffer> {
  return Uint8Array.from([...HEADER, ...sections.flat()])
}

const I32 = 0x7f
const EMPTY_TYPE = [0x60, 0x00, 0x00]
const typeSection = (...types: number[][]): number[] => section(1, vec(types))
const memorySection = (...limits: number[][]): number[] => section(5, vec(limits))

// --- helpers -------------------------------------------------------------------------

/** WAT to bytes backed by a plain ArrayBuffer, which is what the WebAssembly API types take. */
async function compile (source: string): Promise<Uint8Array<ArrayBuffer>> {
  return Uint8Array.from(await wat(source))
}

function parse (bytes: Uint8Array, limits: Partial<ParseLimits> = {}): ModuleInfo {
  return parseModule(bytes, { ...LIMITS, ...limits })
}

/** The error parseModule throws, asserting it is a WasmBinaryError. */
function parseError (bytes: Uint8Array, limits: Partial<ParseLimits> = {}): WasmBinaryError {
  try {
    parse(bytes, limits)
  } catch (err) {
    if (err instanceof WasmBinaryError) return err
    throw new Error(`expected a WasmBinaryError, got ${String(err)}`)
  }
  throw new Error('expected parseModule to throw')
}

function rewrite (bytes: Uint8Array, options: Partial<RewriteOptions> = {}): ReturnType<typeof rewriteModule> {
  return rewriteModule(bytes, parse(bytes), { ...CAPS, ...options })
}

function rewriteError (bytes: Uint8Array, options: Partial<RewriteOptions> = {}): WasmBinaryError {
  try {
    rewrite(bytes, options)
  } catch (err) {
    if (err instanceof WasmBinaryError) return err
    throw new Error(`expected a WasmBinaryError, got ${String(err)}`)
  }
  throw new Error('expected rewriteModule to throw')
}

/** Compiles and instantiates a rewritten module the way a worker does. */
function instantiate (bytes: Uint8Array, options: Partial<RewriteOptions> = {}, imports: WebAssembly.Imports = {}) {
  const result = rewrite(bytes, options)
  const module = new WebAssembly.Module(result.bytes)
  const memory = result.memory === undefined ? undefined : new WebAssembly.Memory(result.memory)
  const instance = new WebAssembly.Instance(module, memory === undefined ? imports : { ...imports, host: { memory } })
  return { result, module, memory, instance, exports: instance.exports as Record<string, any> }
}

function contains (haystack: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(haystack).indexOf(Buffer.from(needle)) >= 0
}

// --- fixtures ------------------------------------------------------------------------

const PLUGIN_WAT = `
(module
  (type $io (func (param i32 i32) (result i32 i32)))
  (import "env" "log" (func $log (param i32 i32)))
  (import "env" "counter" (global $counter i32))
  (memory (export "memory") 1 8)
  (table $t (export "table") 2 10 funcref)
  (global $g (mut i32) (i32.const -42))
  (global $w i64 (i64.const -9223372036854775808))
  (global $f f32 (f32.const 1.5))
  (global $d f64 (f64.const -2.25))
  (global $v v128 (v128.const i32x4 1 2 3 4))
  (global $r funcref (ref.func $execute))
  (global $n externref (ref.null extern))
  (global $h i32 (global.get $counter))
  (elem (i32.const 0) $execute $init)
  (data (i32.const 16) "hello")
  (data $p "passive!")
  (func $execute (export "execute") (type $io) (local.get 0) (local.get 1))
  (func $init (global.set $g (i32.const 1)))
  (func (export "init") (memory.init $p (i32.const 100) (i32.const 0) (i32.const 8)))
  (start $init)
)`

let plugin: Uint8Array<ArrayBuffer>

beforeAll(async () => {
  plugin = await compile(PLUGIN_WAT)
})

// --- parseModule ---------------------------------------------------------------------

describe('parseModule', () => {
  test('reads imports, exports, memories, tables, counts and sizes', () => {
    const info = parse(plugin)
    expect(info.imports).toEqual([
      { module: 'env', name: 'log', kind: 'func', type: { params: ['i32', 'i32'], results: [] } },
      { module: 'env', name: 'counter', kind: 'global' }
    ])
    expect(info.exports.map(e => [e.name, e.kind, e.index])).toEqual([
      ['memory', 'memory', 0], ['table', 'table', 0], ['execute', 'func', 1], ['init', 'func', 3]
    ])
    expect(info.memories).toEqual([{ min: 1, max: 8 }])
    expect(info.tables).toEqual([{ min: 2, max: 10 }])
    expect(info.counts).toEqual({
      types: info.counts.types, // wabt decides how many it emits
      functions: 3,
      imports: 2,
      exports: 4,
      globals: 8,
      tables: 1,
      memories: 1,
      dataSegments: 2,
      elementSegments: 1,
      customSections: 0
    })
    expect(info.dataBytes).toBe('hello'.length + 'passive!'.length)
    expect(info.codeBytes).toBeGreaterThan(0)
    expect(info.startFunction).toBe(2)
    expect(info.version).toBeUndefined()
    expect(info.customSections).toEqual([])
  })

  test('resolves the types of function exports through imported functions', async () => {
    const bytes = await compile(`(module
      (import "a" "f" (func $f (param f64) (result f32)))
      (import "a" "g" (func $g (param externref)))
      (func $h (param i64 v128) (result funcref) (ref.null func))
      (export "reexported" (func $g))
      (export "first" (func $f))
      (export "defined" (func $h)))`)
    const { exports } = parse(bytes)
    expect(exports).toEqual([
      { name: 'reexported', kind: 'func', index: 1, type: { params: ['externref'], results: [] } },
      { name: 'first', kind: 'func', index: 0, type: { params: ['f64'], results: ['f32'] } },
      { name: 'defined', kind: 'func', index: 2, type: { params: ['i64', 'v128'], results: ['funcref'] } }
    ])
  })

  test('reads multi-value result types', async () => {
    const bytes = await compile(`(module (func (export "many") (result i32 i64 f32 f64)
      (i32.const 1) (i64.const 2) (f32.const 3) (f64.const 4)))`)
    expect(parse(bytes).exports[0]?.type).toEqual({ params: [], results: ['i32', 'i64', 'f32', 'f64'] })
  })

  test('reads a version custom section, trimmed, and ignores one that is not short UTF-8', () => {
    expect(parse(assemble(custom('version', [...Buffer.from(' 1.2.3\n')]))).version).toBe('1.2.3')
    expect(parse(assemble(custom('version', [0xff, 0xfe]))).version).toBeUndefined()
    expect(parse(assemble(custom('version', Array(65).fill(0x31)))).version).toBeUndefined()
    expect(parse(assemble(custom('version', Array(64).fill(0x31)))).version).toBe('1'.repeat(64))
    const info = parse(Uint8Array.from([...plugin, ...custom('name', []), ...custom('version', [...Buffer.from('2.0.0')])]))
    expect(info.version).toBe('2.0.0')
    expect(info.customSections).toEqual(['name', 'version'])
    expect(info.counts.customSections).toBe(2)
  })

  test('records shared and 64-bit memory limits without refusing them', () => {
    const info = parse(assemble(memorySection(
      [0x03, 1, 2], // shared, min 1, max 2
      [0x04, ...leb(2 ** 40)], // memory64, no max
      [0x05, 1, 3], // memory64 with max
      [0x07, 1, 4] // shared memory64
    )))
    expect(info.memories).toEqual([
      { min: 1, max: 2, shared: true },
      { min: 2 ** 40, index64: true },
      { min: 1, max: 3, index64: true },
      { min: 1, max: 4, shared: true, index64: true }
    ])
    expect(info.counts.memories).toBe(4)
  })

  test('reads extended constant expressions and every data segment form', () => {
    const extendedConst = [0x41, 2, 0x41, 3, 0x6c, 0x41, 1, 0x6a, 0x41, 1, 0x6b, 0x0b] // (2 * 3 + 1) - 1
    const bytes = assemble(
      memorySection([0x00, 1]),
      section(6, vec([
        [I32, 0x00, ...extendedConst],
        [0x7e, 0x00, 0x42, 1, 0x42, 2, 0x7c, 0x42, 3, 0x7d, 0x42, 4, 0x7e, 0x0b]
      ])),
      section(11, vec([
        [0x00, ...extendedConst, ...str('ab')], // active, memory 0
        [0x01, ...str('cde')], // passive
        [0x02, 0x00, 0x41, 0x00, 0x0b, ...str('fghi')] // active, explicit memory index
      ]))
    )
    const info = parse(bytes)
    expect(info.counts.globals).toBe(2)
    expect(info.counts.dataSegments).toBe(3)
    expect(info.dataBytes).toBe(9)
    expect(WebAssembly.validate(bytes)).toBe(true)
  })

  test('reads tags (exception handling) in their place between memory and global', () => {
    const bytes = assemble(
      typeSection(EMPTY_TYPE),
      section(2, vec([[...str('env'), ...str('e'), 0x04, 0x00, 0x00]])),
      section(13, vec([[0x00, 0x00]])),
      section(6, vec([[I32, 0x00, 0x41, 0x00, 0x0b]])),
      section(7, vec([[...str('tag'), 0x04, 1]]))
    )
    const info = parse(bytes)
    expect(info.imports).toEqual([{ module: 'env', name: 'e', kind: 'tag' }])
    expect(info.exports).toEqual([{ name: 'tag', kind: 'tag', index: 1 }])
  })

  test('parses a module of 200000 functions in linear time', () => {
    const n = 200_000
    const bytes = assemble(
      typeSection(EMPTY_TYPE),
      section(3, [...leb(n), ...new Array<number>(n).fill(0)]),
      section(10, [...leb(n), ...new Array<number[]>(n).fill([2, 0, 0x0b]).flat()])
    )
    const started = performance.now()
    expect(parse(bytes, { maxFunctions: n }).counts.functions).toBe(n)
    expect(performance.now() - started).toBeLessThan(1000)
  })

  describe('limits: N passes, N + 1 is refused with the quantity, the value and the maximum', () => {
    const N = 5
    const funcs = (n: number): string => Array.from({ length: n }, (_, i) => `(func $f${i})`).join(' ')
    const cases: Array<[keyof ParseLimits, string, (n: number) => Promise<Uint8Array<ArrayBuffer>> | Uint8Array<ArrayBuffer>]> = [
      ['maxTypes', 'types', n => assemble(typeSection(...Array<number[]>(n).fill(EMPTY_TYPE)))],
      ['maxFunctions', 'functions', n => compile(`(module ${funcs(n)})`)],
      ['maxImports', 'imports', n => compile(`(module ${Array.from({ length: n }, (_, i) => `(import "env" "f${i}" (func))`).join(' ')})`)],
      ['maxExports', 'exports', n => compile(`(module (func $f) ${Array.from({ length: n }, (_, i) => `(export "e${i}" (func $f))`).join(' ')})`)],
      ['maxGlobals', 'globals', n => compile(`(module ${Array.from({ length: n }, () => '(global i32 (i32.const 0))').join(' ')})`)],
      ['maxDataSegments', 'data segments', n => compile(`(module (memory 1) ${Array.from({ length: n }, () => '(data (i32.const 0) "x")').join(' ')})`)],
      ['maxElementSegments', 'element segments', n => compile(`(module (table 1 funcref) (func $f) ${Array.from({ length: n }, () => '(elem (i32.const 0) $f)').join(' ')})`)],
      ['maxDataBytes', 'bytes of data segments', n => compile(`(module (memory 1) (data (i32.const 0) "${'x'.repeat(n - 2)}") (data "yy"))`)],
      ['maxCustomSectionBytes', 'custom section bytes', n => assemble(custom('a', Array<number>(n - 4).fill(0)), custom('b', []))]
    ]
    test.each(cases)('%s', async (limit, what, build) => {
      const atLimit = await build(N)
      expect(WebAssembly.validate(atLimit)).toBe(true)
      expect(() => parse(atLimit, { [limit]: N })).not.toThrow()
      const err = parseError(await build(N + 1), { [limit]: N })
      expect(err.reason).toBe('limit')
      if (limit === 'maxCustomSectionBytes') expect(err.message).toBe(`custom sections hold ${N + 1} bytes; at most ${N} allowed`)
      else expect(err.message).toBe(`module declares ${N + 1} ${what}; at most ${N} allowed`)
    })
  })

  describe('malformed and unsupported input', () => {
    test.each([
      ['empty', new Uint8Array(0)],
      ['text', Buffer.from('hello world, this is not wasm')],
      ['a PNG', Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])],
      ['random bytes', Uint8Array.from({ length: 1000 }, (_, i) => (i * 7919 + 13) % 251)],
      ['magic without the NUL', Buffer.from('asm\x01\x00\x00\x00')]
    ])('garbage: %s', (_, bytes) => {
      expect(parseError(bytes).message).toMatch(/^not a WebAssembly module/)
    })

    test.each([
      ['a short header', Uint8Array.from(HEADER.slice(0, 6)), /^truncated module header at byte 6$/],
      ['version 2', Uint8Array.from([...HEADER.slice(0, 4), 2, 0, 0, 0]), /version 2; only version 1/],
      ['a component', Uint8Array.from([...HEADER.slice(0, 4), 0x0d, 0x00, 0x01, 0x00]), /unsupported feature: WebAssembly components/],
      ['an unknown section id', assemble(section(14, [])), /^unknown section id 14 in module at byte 8$/],
      ['sections out of order', assemble(section(3, [0]), typeSection()), /out of order.*section 3 \(function\)/],
      ['a duplicate section', assemble(typeSection(), typeSection()), /^duplicate section in section 1 \(type\) at byte 11$/],
      ['a section longer than the module', assemble([1, 10, 0]), /^truncated section 1 \(type\) at byte 11: 10 bytes declared, 1 left$/],
      ['a section with bytes left over', assemble(section(1, [0, 0])), /1 bytes left over.*section 1 \(type\)/],
      ['an overlong LEB128', assemble([1, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00]), /malformed LEB128/],
      ['a LEB128 above 32 bits', assemble([1, 0x80, 0x80, 0x80, 0x80, 0x10]), /malformed LEB128/],
      ['a LEB128 cut short', assemble([1, 0x80]), /^truncated section 1 \(type\) at byte 10$/],
      ['an invalid value type', assemble(typeSection([0x60, 1, 0x00, 0])), /invalid value type 0x00/],
      ['an invalid type form', assemble(typeSection([0x61, 0, 0])), /invalid type form 0x61/],
      ['a type index out of range', assemble(typeSection(EMPTY_TYPE), section(3, [1, 1]), section(10, [1, 2, 0, 0x0b])), /type index 1 out of range \(1 types\)/],
      ['an import name that is not UTF-8', assemble(section(2, vec([[1, 0xc3, ...str('x'), 0x03, I32, 0]]))), /name is not valid UTF-8 in section 2 \(import\)/],
      ['an invalid import kind', assemble(section(2, vec([[...str('a'), ...str('b'), 0x05, 0]]))), /invalid import kind 0x05/],
      ['an invalid global mutability', assemble(section(6, vec([[I32, 2, 0x41, 0, 0x0b]]))), /invalid global mutability 0x02/],
      ['a non-constant instruction in a constant expression', assemble(section(6, vec([[I32, 0, 0x20, 0, 0x0b]]))), /instruction 0x20 is not allowed in a constant expression/],
      ['an overlong i32.const', assemble(section(6, vec([[I32, 0, 0x41, 0xff, 0xff, 0xff, 0xff, 0x4f, 0x0b]]))), /malformed LEB128: integer too long or too large for 32 bits/],
      ['a constant expression without end', assemble(section(6, vec([[I32, 0, 0x41, 0]]))), /^truncated section 6 \(global\)/],
      ['a maximum below the minimum', assemble(memorySection([0x01, 2, 1])), /limits maximum 1 is below the minimum 2/],
      ['shared limits without a maximum', assemble(memorySection([0x02, 1])), /shared limits without a maximum/],
      ['unknown limits flags', assemble(memorySection([0x08, 1])), /unsupported limits flags 0x08/],
      ['an export out of range', assemble(section(7, vec([[...str('m'), 0x02, 0]]))), /export 'm' refers to memory 0, but the module has 0/],
      ['a duplicate export name', assemble(memorySection([0, 1]), section(7, vec([[...str('m'), 0x02, 0], [...str('m'), 0x02, 0]]))), /duplicate export name 'm'/],
      ['a start function out of range', assemble(section(8, [0])), /start function 0 out of range/],
      ['functions without a code section', assemble(typeSection(EMPTY_TYPE), section(3, [1, 0])), /declares 1 functions but has no code section/],
      ['a code section of the wrong length', assemble(typeSection(EMPTY_TYPE), section(3, [1, 0]), section(10, [2, 2, 0, 0x0b, 2, 0, 0x0b])), /code section has 2 function bodies but the function section declares 1/],
      ['a data count that disagrees', assemble(section(12, [1])), /data count section declares 1 segments but the data section has 0/],
      ['invalid data segment flags', assemble(memorySection([0, 1]), section(11, vec([[3, 0]]))), /invalid data segment flags 3/]
    ])('%s', (_, bytes, message) => {
      const err = parseError(bytes)
      expect(err.message).toMatch(message)
      expect(WebAssembly.validate(bytes)).toBe(false)
    })

    test.each([
      ['rec', [0x4e, 1, 0x5f, 0]], ['sub', [0x50, 0, 0x5f, 0]], ['sub final', [0x4f, 0, 0x5f, 0]], ['struct', [0x5f, 0]], ['array', [0x5e, 0x7f, 0]]
    ])('GC type form %s', (_, type) => {
      const err = parseError(assemble(typeSection(type)))
      expect(err.message).toMatch(/^unsupported feature: GC types in section 1 \(type\) at byte 11$/)
      expect(err.reason).toBe('unsupported')
    })

    test.each([
      ['anyref', 0x6e, /GC types/], ['(ref null 0)', 0x63, /typed function references/], ['exnref', 0x69, /exnref/]
    ])('value type %s', (_, type, message) => {
      const err = parseError(assemble(typeSection([0x60, 1, type, 0])))
      expect(err.message).toMatch(message)
      expect(err.reason).toBe('unsupported')
    })

    test('a tiny module declaring 2^32-1 functions fails at once, whatever the limit', () => {
      const bytes = assemble([3, 5, ...leb(0xffffffff)])
      expect(bytes.length).toBe(15)
      const started = performance.now()
      for (const maxFunctions of [1000, Number.MAX_SAFE_INTEGER]) {
        expect(parseError(bytes, { maxFunctions }).message)
          .toBe('truncated section 3 (function) at byte 15: 4294967295 functions declared, 0 bytes left')
      }
      // Same for every vector whose count comes from the module.
      expect(parseError(assemble([1, 5, ...leb(0xffffffff)]), { maxTypes: Infinity }).message).toMatch(/4294967295 types declared/)
      expect(parseError(assemble([2, 5, ...leb(0xffffffff)]), { maxImports: Infinity }).message).toMatch(/4294967295 imports declared/)
      expect(parseError(assemble([11, 5, ...leb(0xffffffff)]), { maxDataSegments: Infinity }).message).toMatch(/4294967295 data segments declared/)
      expect(parseError(assemble(typeSection([0x60, ...leb(0xffffffff)]))).message).toMatch(/4294967295 value types declared/)
      expect(performance.now() - started).toBeLessThan(100)
    })

    test('a data segment longer than the module is truncated, not counted', () => {
      const bytes = assemble(memorySection([0, 1]), section(11, [1, 1, ...leb(0xffffffff)]))
      expect(parseError(bytes, { maxDataBytes: Infinity }).message).toMatch(/^truncated section 11 \(data\) at byte \d+: 4294967295 bytes declared/)
    })

    test('every prefix of a valid module throws a WasmBinaryError unless it is itself a valid module', () => {
      const bytes = Uint8Array.from([...plugin, ...custom('version', [...Buffer.from('1.0.0')])])
      let refused = 0
      for (let length = 0; length < bytes.length; length++) {
        const prefix = bytes.subarray(0, length)
        if (WebAssembly.validate(prefix)) {
          expect(() => parse(prefix)).not.toThrow()
        } else {
          parseError(prefix)
          refused++
        }
      }
      expect(refused).toBeGreaterThan(bytes.length - 10)
      expect(() => parse(bytes)).not.toThrow()
    })

    test('random bytes after a valid header only ever throw WasmBinaryError', () => {
      fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (tail) => {
        const bytes = Uint8Array.from([...HEADER, ...tail])
        try {
          parse(bytes)
        } catch (err) {
          expect(err).toBeInstanceOf(WasmBinaryError)
        }
      }), { numRuns: 5000, seed: 7 })
    })

    test('mutated modules only ever throw WasmBinaryError, and a valid one rewrites to a valid one', () => {
      fc.assert(fc.property(
        fc.array(fc.tuple(fc.nat(plugin.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        (edits) => {
          const bytes = Uint8Array.from(plugin)
          for (const [at, value] of edits) bytes[at] = value
          let info: ModuleInfo
          try {
            info = parse(bytes)
          } catch (err) {
            expect(err).toBeInstanceOf(WasmBinaryError)
            return
          }
          let out: Uint8Array<ArrayBuffer>
          try {
            out = rewriteModule(bytes, info, { memoryMaxPages: 16, tableMaxElements: 16 }).bytes
          } catch (err) {
            expect(err).toBeInstanceOf(WasmBinaryError)
            return
          }
          if (WebAssembly.validate(bytes)) expect(WebAssembly.validate(out)).toBe(true)
        }
      ), { numRuns: 2000, seed: 42 })
    })
  })
})

// --- rewriteModule -------------------------------------------------------------------

describe('rewriteModule', () => {
  const MEMORY_WAT = `(module
    (memory (export "memory") 1 8)
    (data (i32.const 0) "hello")
    (data $later "later")
    (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
    (func (export "size") (result i32) (memory.size))
    (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0)))
    (func (export "init") (memory.init $later (i32.const 32) (i32.const 0) (i32.const 5)))
    (func $start (i32.store8 (i32.const 10) (i32.const 33)))
    (start $start))`

  test('turns a defined memory into host.memory: data lands, the export is the host memory, grow stops at the cap', async () => {
    const bytes = await compile(MEMORY_WAT)
    const { result, module, memory, exports } = instantiate(bytes)
    expect(result.memory).toEqual({ initial: 1, maximum: 4 })
    expect(WebAssembly.Module.imports(module)).toEqual([{ module: 'host', name: 'memory', kind: 'memory' }])
    expect(WebAssembly.Module.exports(module).find(e => e.name === 'memory')?.kind).toBe('memory')
    if (memory === undefined) throw new Error('no memory')
    expect(exports.memory).toBe(memory)
    const view = (): Buffer => Buffer.from(memory.buffer)
    expect(view().subarray(0, 5).toString()).toBe('hello')
    expect(view()[10]).toBe(33) // the start function wrote through the same memory index
    exports.init()
    expect(view().subarray(32, 37).toString()).toBe('later')
    expect(exports.grow(3)).toBe(1)
    expect(exports.size()).toBe(4)
    expect(exports.grow(1)).toBe(-1)
    expect(exports.size()).toBe(4)
    expect(() => memory.grow(1)).toThrow(RangeError)
  })

  test('removes the memory section and keeps the declared maximum when it is below the cap', async () => {
    const bytes = await compile(MEMORY_WAT)
    const { result, exports } = instantiate(bytes, { memoryMaxPages: 100 })
    expect(result.memory).toEqual({ initial: 1, maximum: 8 })
    const info = parse(result.bytes)
    expect(info.memories).toEqual([])
    expect(info.counts.memories).toBe(0)
    expect(info.imports).toEqual([{ module: 'host', name: 'memory', kind: 'memory', limits: { min: 1, max: 8 } }])
    expect(exports.grow(7)).toBe(1)
    expect(exports.grow(1)).toBe(-1)
  })

  test('gives a memory without a maximum the cap as its maximum', async () => {
    const { result, exports } = instantiate(await compile('(module (memory 2) (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))'))
    expect(result.memory).toEqual({ initial: 2, maximum: 4 })
    expect(exports.grow(2)).toBe(2)
    expect(exports.grow(1)).toBe(-1)
  })

  test('creates the import section in order when the module has none, around custom sections', async () => {
    const base = await compile('(module (type (func)) (memory 1) (func (export "f") (type 0)))')
    const marker = custom('marker', [1, 2, 3])
    // A custom section between the header and the type section, and one after the types.
    const typeEnd = 8 + 2 + (base[9] as number)
    const bytes = Uint8Array.from([...base.subarray(0, 8), ...marker, ...base.subarray(8, typeEnd), ...marker, ...base.subarray(typeEnd)])
    expect(parse(bytes).counts.customSections).toBe(2)
    const { module, result } = instantiate(bytes)
    expect(WebAssembly.Module.imports(module)).toEqual([{ module: 'host', name: 'memory', kind: 'memory' }])
    expect(WebAssembly.Module.customSections(module, 'marker')).toHaveLength(2)
    expect(parse(result.bytes).customSections).toEqual(['marker', 'marker'])
  })

  test('appends host.memory after existing imports, so function indices do not move', async () => {
    const bytes = await compile(`(module
      (import "env" "add" (func $add (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "run") (result i32) (i32.store (i32.const 0) (call $add (i32.const 2) (i32.const 3))) (i32.load (i32.const 0))))`)
    const { module, exports, memory } = instantiate(bytes, {}, { env: { add: (a: number, b: number) => a + b } })
    expect(WebAssembly.Module.imports(module)).toEqual([
      { module: 'env', name: 'add', kind: 'function' },
      { module: 'host', name: 'memory', kind: 'memory' }
    ])
    expect(exports.run()).toBe(5)
    expect(exports.memory).toBe(memory)
  })

  test('renames an imported memory to host.memory and caps its maximum', async () => {
    const bytes = await compile(`(module
      (import "env" "f" (func $f))
      (import "env" "memory" (memory 2 10))
      (import "env" "g" (global i32))
      (data (i32.const 0) "imported")
      (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`)
    const { result, module, memory, exports } = instantiate(bytes, {}, { env: { f: () => {}, g: 1 } })
    expect(result.memory).toEqual({ initial: 2, maximum: 4 })
    expect(WebAssembly.Module.imports(module)).toEqual([
      { module: 'env', name: 'f', kind: 'function' },
      { module: 'host', name: 'memory', kind: 'memory' },
      { module: 'env', name: 'g', kind: 'global' }
    ])
    if (memory === undefined) throw new Error('no memory')
    expect(Buffer.from(memory.buffer).subarray(0, 8).toString()).toBe('imported')
    expect(exports.grow(2)).toBe(2)
    expect(exports.grow(1)).toBe(-1)
    expect(rewrite(bytes, { memoryMaxPages: 64 }).memory).toEqual({ initial: 2, maximum: 10 })
  })

  test('caps every defined table: length, grow inside the guest and from the host', async () => {
    const bytes = await compile(`(module
      (table $t (export "t") 2 funcref)
      (table $u (export "u") 1 3 externref)
      (func (export "grow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0))))`)
    const { result, exports } = instantiate(bytes)
    expect(result.memory).toBeUndefined()
    expect(parse(result.bytes).tables).toEqual([{ min: 2, max: 5 }, { min: 1, max: 3 }])
    expect(exports.t.length).toBe(2)
    expect(exports.grow(3)).toBe(2)
    expect(exports.t.length).toBe(5)
    expect(exports.grow(1)).toBe(-1)
    expect(() => exports.t.grow(1)).toThrow(RangeError)
    expect(() => exports.u.grow(3)).toThrow(RangeError)
  })

  test('passes a module without memory or tables through unchanged, as a new array', async () => {
    const bytes = await compile('(module (func (export "f") (result i32) (i32.const 7)))')
    const { result, exports } = instantiate(bytes)
    expect(result.memory).toBeUndefined()
    expect('memory' in result).toBe(false)
    expect(Buffer.from(result.bytes).equals(bytes)).toBe(true)
    expect(result.bytes.buffer).not.toBe(bytes.buffer)
    expect(exports.f()).toBe(7)
  })

  test('never modifies its input, and copies everything it does not rewrite byte for byte', async () => {
    const version = custom('version', [...Buffer.from('3.1.4')])
    const bytes = Uint8Array.from([...plugin, ...version])
    const before = Uint8Array.from(bytes)
    const info = parse(bytes)
    const infoBefore = structuredClone(info)
    const result = rewriteModule(bytes, info, CAPS)
    expect(bytes).toEqual(before)
    expect(info).toEqual(infoBefore)
    expect(contains(result.bytes, Uint8Array.from(version))).toBe(true)
    const after = parse(result.bytes)
    expect(after.version).toBe('3.1.4')
    expect(after.exports).toEqual(info.exports)
    expect(after.codeBytes).toBe(info.codeBytes)
    expect(after.dataBytes).toBe(info.dataBytes)
    expect(after.startFunction).toBe(info.startFunction)
    expect(after.imports.slice(0, 2)).toEqual(info.imports)
    expect(after.imports[2]).toEqual({ module: 'host', name: 'memory', kind: 'memory', limits: { min: 1, max: 4 } })
    const memory = new WebAssembly.Memory(result.memory ?? { initial: 0 })
    const instance = new WebAssembly.Instance(new WebAssembly.Module(result.bytes), { env: { log: () => {}, counter: 0 }, host: { memory } })
    expect(instance.exports.memory).toBe(memory)
  })

  describe('refusals', () => {
    test('memory: N initial pages pass, N + 1 are refused in pages and MiB', async () => {
      expect(rewrite(await compile('(module (memory 16))'), { memoryMaxPages: 16 }).memory).toEqual({ initial: 16, maximum: 16 })
      const err = rewriteError(await compile('(module (memory 17))'), { memoryMaxPages: 16 })
      expect(err.message).toBe('memory declares 17 initial pages (1.0625 MiB); the limit is 16 pages (1 MiB)')
      expect(err.reason).toBe('limit')
      expect(rewriteError(await compile('(module (import "env" "m" (memory 17)))'), { memoryMaxPages: 16 }).message).toMatch(/^memory declares 17 initial pages/)
    })

    test('table: N initial elements pass, N + 1 are refused', async () => {
      expect(parse(rewrite(await compile('(module (table 5 funcref))')).bytes).tables).toEqual([{ min: 5, max: 5 }])
      const err = rewriteError(await compile('(module (table 1 funcref) (table 6 funcref))'))
      expect(err.message).toBe('table 1 declares 6 initial elements; the limit is 5 elements')
      expect(err.reason).toBe('limit')
    })

    test('table imports', async () => {
      const err = rewriteError(await compile('(module (import "env" "t" (table 1 funcref)))'))
      expect(err.message).toBe('table imports are not supported')
      expect(err.reason).toBe('unsupported')
    })

    test.each([
      ['two defined memories', assemble(memorySection([0, 1], [0, 1])), /^unsupported feature: multiple memories$/],
      ['an imported and a defined memory', assemble(section(2, vec([[...str('env'), ...str('m'), 0x02, 0x00, 1]])), memorySection([0, 1])), /^unsupported feature: multiple memories$/],
      ['a shared memory', assemble(memorySection([0x03, 1, 2])), /^unsupported feature: shared memory/],
      ['a shared imported memory', assemble(section(2, vec([[...str('env'), ...str('m'), 0x02, 0x03, 1, 2]]))), /^unsupported feature: shared memory/],
      ['a 64-bit memory', assemble(memorySection([0x04, 1])), /^unsupported feature: 64-bit memory/],
      ['a 64-bit table', assemble(section(4, vec([[0x70, 0x04, 1]]))), /^unsupported feature: 64-bit tables/]
    ])('%s', (_, bytes, message) => {
      const err = rewriteError(bytes)
      expect(err.message).toMatch(message)
      expect(err.reason).toBe('unsupported')
    })

    test('options that are not non-negative integers are a programming error', async () => {
      const bytes = await compile('(module)')
      expect(() => rewrite(bytes, { memoryMaxPages: -1 })).toThrow(RangeError)
      expect(() => rewrite(bytes, { tableMaxElements: 1.5 })).toThrow(RangeError)
    })

    test('an info that does not describe the bytes is a programming error, not a bad module', async () => {
      const info = parse(await compile('(module (memory 1))'))
      const other = await compile('(module (memory 2))')
      expect(() => rewriteModule(other, info, CAPS)).toThrow(/info does not describe these bytes/)
      expect(() => rewriteModule(other, info, CAPS)).not.toThrow(WasmBinaryError)
    })
  })
})
