// The section parser: reads an uploaded module before anything compiles it, and refuses
// what is malformed, unsupported or over the operator's limits with a message that names the
// problem. It reads every section header and entry; function bodies only to learn what they can
// do to tables and segments (code-scan.ts): V8 validates code when it compiles, and the parser
// only has to make that compilation cheap and bounded.
// Security boundary: the input is untrusted bytes, so every count is checked against the
// limit and the bytes left before anything loops or allocates on it.
import { scanCode } from './code-scan'
import type { CodeFacts } from './code-scan'
import { Cursor, decodeUtf8, hex, WasmBinaryError } from './leb128'

export { WasmBinaryError } from './leb128'
export type { WasmBinaryErrorReason } from './leb128'
export { rewriteModule, STATE_EXPORT_PREFIX, stateExportName } from './binary-rewrite'
export type { RewriteOptions, RewriteResult } from './binary-rewrite'

/** A value type of the MVP plus SIMD and reference types; GC and typed references are refused. */
export type ValType = 'i32' | 'i64' | 'f32' | 'f64' | 'v128' | 'funcref' | 'externref'

export interface FuncType { params: ValType[], results: ValType[] }

export interface GlobalType { type: ValType, mutable: boolean }

/** Limits of a table or memory, in elements or 64 KiB pages. */
export interface ResizableLimits { min: number, max?: number, shared?: boolean, index64?: boolean }

export type ExternKind = 'func' | 'table' | 'memory' | 'global' | 'tag'

export interface ImportEntry {
  module: string
  name: string
  kind: ExternKind
  /** For `func` imports. */
  type?: FuncType
  /** For `table` and `memory` imports. */
  limits?: ResizableLimits
}

export interface ExportEntry {
  name: string
  kind: ExternKind
  index: number
  /** For `func` exports, resolved through the function index space (imports first). */
  type?: FuncType
}

/** What the parser learned about a module. Counts are of DEFINED items unless named otherwise. */
export interface ModuleInfo {
  imports: ImportEntry[]
  exports: ExportEntry[]
  /** Defined memories only (the memory section); imported ones are in `imports`. */
  memories: ResizableLimits[]
  /** Defined tables only (the table section); imported ones are in `imports`. */
  tables: ResizableLimits[]
  /** Defined globals only (the global section), in order; imported ones are in `imports`. */
  globals: GlobalType[]
  counts: {
    types: number
    /** Defined functions (function section); imported functions count in `imports`. */
    functions: number
    imports: number
    exports: number
    /** Defined globals. */
    globals: number
    /** Defined tables. */
    tables: number
    /** Defined memories. */
    memories: number
    dataSegments: number
    elementSegments: number
    customSections: number
  }
  /** Passive data segments: `data.drop` can change them after instantiation. */
  passiveDataSegments: number
  /** Passive element segments: `elem.drop` can change them after instantiation. */
  passiveElementSegments: number
  /** Sum of the data segments' payload sizes. */
  dataBytes: number
  /** Size of the code section's payload. */
  codeBytes: number
  /** What the code can do to tables and segments (code-scan.ts); undefined when the scan could not tell. */
  code: CodeFacts | undefined
  startFunction?: number
  /** Trimmed text of a custom section named `version`, when it is UTF-8 of at most 64 bytes. */
  version?: string
  /** Names of the custom sections, in order. */
  customSections: string[]
}

/** Maxima a module is held to; each is inclusive. */
export interface ParseLimits {
  maxFunctions: number
  maxImports: number
  maxExports: number
  maxGlobals: number
  maxTypes: number
  maxDataSegments: number
  maxElementSegments: number
  maxDataBytes: number
  /** Total bytes of all custom sections together (names included); unlimited when absent. */
  maxCustomSectionBytes?: number
  /**
   * Longest import module/field name and export name, in UTF-8 bytes; unlimited when absent.
   * These names are listed in every descriptor, so they are bounded like the counts.
   */
  maxNameBytes?: number
}

const SECTION_NAMES = ['custom', 'type', 'import', 'function', 'table', 'memory', 'global', 'export', 'start', 'element', 'code', 'data', 'data count', 'tag']
// Position of each section id in the order the spec requires: tag sits between memory and
// global, data count between element and code.
const SECTION_ORDER = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 11, 6]

/** `section 3 (function)`, for messages. */
function sectionLabel (id: number): string {
  return `section ${id} (${SECTION_NAMES[id] ?? 'unknown'})`
}

const KINDS: readonly ExternKind[] = ['func', 'table', 'memory', 'global', 'tag']
const VERSION_SECTION_MAX_BYTES = 64

/**
 * Parses a module's sections and checks them against `limits`, in time linear in its size.
 *
 * @throws {WasmBinaryError} when the bytes are not a module, use an unsupported feature
 * (GC types, components, ...) or exceed a limit.
 */
export function parseModule (bytes: Uint8Array, limits: ParseLimits): ModuleInfo {
  checkHeader(bytes)
  return new ModuleReader(bytes, limits).read()
}

function checkHeader (bytes: Uint8Array): void {
  if (bytes.length < 4 || bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    throw new WasmBinaryError('not a WebAssembly module: it does not start with the \\0asm magic bytes')
  }
  if (bytes.length < 8) throw new WasmBinaryError(`truncated module header at byte ${bytes.length}`)
  const version = ((bytes[4] as number) | (bytes[5] as number) << 8 | (bytes[6] as number) << 16 | (bytes[7] as number) << 24) >>> 0
  if (version === 1) return
  // Component binaries share the magic and put layer 1 in the upper half of the version.
  if (bytes[6] === 1 && bytes[7] === 0) throw new WasmBinaryError('unsupported feature: WebAssembly components (only core modules are supported)', 'unsupported')
  throw new WasmBinaryError(`unsupported WebAssembly binary version ${version}; only version 1 is supported`, 'unsupported')
}

function checkLimit (n: number, max: number, what: string): void {
  if (n > max) throw new WasmBinaryError(`module declares ${n} ${what}; at most ${max} allowed`, 'limit')
}

/** Holds what earlier sections declared, because later sections refer to it by index. */
class ModuleReader {
  readonly #bytes: Uint8Array
  readonly #limits: ParseLimits
  readonly #types: FuncType[] = []
  /** The function index space: imported functions first, then defined ones. */
  readonly #funcs: FuncType[] = []
  /** Sizes of the table, memory, global and tag index spaces (imports + defined), by kind. */
  readonly #spaces = { table: 0, memory: 0, global: 0, tag: 0 }
  #codeCount: number | undefined
  #dataCount: number | undefined
  #customBytes = 0
  readonly #info: ModuleInfo = {
    imports: [],
    exports: [],
    memories: [],
    tables: [],
    globals: [],
    counts: { types: 0, functions: 0, imports: 0, exports: 0, globals: 0, tables: 0, memories: 0, dataSegments: 0, elementSegments: 0, customSections: 0 },
    passiveDataSegments: 0,
    passiveElementSegments: 0,
    dataBytes: 0,
    codeBytes: 0,
    code: { tableWrites: false, dataDrop: false, elemDrop: false, startCallsImports: false },
    customSections: []
  }

  constructor (bytes: Uint8Array, limits: ParseLimits) {
    this.#bytes = bytes
    this.#limits = limits
  }

  read (): ModuleInfo {
    const c = new Cursor(this.#bytes, 8)
    const size = this.#bytes.length
    let lastOrder = 0
    let lastId = 0
    while (c.pos < size) {
      c.end = size
      c.context = 'module'
      const at = c.pos
      const id = c.u8()
      if (id >= SECTION_NAMES.length) c.fail(`unknown section id ${id}`, 'malformed', at)
      c.context = sectionLabel(id)
      const length = c.u32()
      if (length > c.remaining) c.truncated(size, `${length} bytes declared, ${c.remaining} left`)
      c.end = c.pos + length
      if (id !== 0) {
        const order = SECTION_ORDER[id] as number
        if (order === lastOrder) c.fail('duplicate section', 'malformed', at)
        if (order < lastOrder) c.fail(`out of order: it must come before ${sectionLabel(lastId)}`, 'malformed', at)
        lastOrder = order
        lastId = id
      }
      this.#section(id, c)
      if (c.pos !== c.end) c.fail(`${c.end - c.pos} bytes left over after the section's content`)
    }
    return this.#finish()
  }

  #section (id: number, c: Cursor): void {
    switch (id) {
      case 0: return this.#custom(c)
      case 1: return this.#typeSection(c)
      case 2: return this.#importSection(c)
      case 3: return this.#functionSection(c)
      case 4: return this.#tableSection(c)
      case 5: return this.#memorySection(c)
      case 6: return this.#globalSection(c)
      case 7: return this.#exportSection(c)
      case 8: return this.#startSection(c)
      case 9: return this.#elementSection(c)
      case 10: return this.#codeSection(c)
      case 11: return this.#dataSection(c)
      case 12:
        this.#dataCount = c.u32()
        return
      case 13: return this.#tagSection(c)
    }
  }

  #finish (): ModuleInfo {
    const info = this.#info
    const functions = info.counts.functions
    if (functions > 0 && this.#codeCount === undefined) {
      throw new WasmBinaryError(`module declares ${functions} functions but has no code section`)
    }
    if (this.#codeCount !== undefined && this.#codeCount !== functions) {
      throw new WasmBinaryError(`code section has ${this.#codeCount} function bodies but the function section declares ${functions} functions`)
    }
    if (this.#dataCount !== undefined && this.#dataCount !== info.counts.dataSegments) {
      throw new WasmBinaryError(`data count section declares ${this.#dataCount} segments but the data section has ${info.counts.dataSegments}`)
    }
    const maxCustom = this.#limits.maxCustomSectionBytes
    if (maxCustom !== undefined && this.#customBytes > maxCustom) {
      throw new WasmBinaryError(`custom sections hold ${this.#customBytes} bytes; at most ${maxCustom} allowed`, 'limit')
    }
    return info
  }

  #custom (c: Cursor): void {
    this.#customBytes += c.remaining
    const name = c.name()
    const payload = c.take(c.remaining)
    const info = this.#info
    info.customSections.push(name)
    info.counts.customSections++
    if (name === 'version' && info.version === undefined && payload.length <= VERSION_SECTION_MAX_BYTES) {
      const version = decodeUtf8(payload)?.trim()
      if (version !== undefined && version !== '') info.version = version
    }
  }

  #typeSection (c: Cursor): void {
    const n = c.count('types', 2)
    checkLimit(n, this.#limits.maxTypes, 'types')
    for (let i = 0; i < n; i++) {
      const at = c.pos
      const form = c.u8()
      if (form !== 0x60) {
        // rec, sub, sub final, struct and array: the type forms of the GC proposal.
        if (form === 0x4e || form === 0x50 || form === 0x4f || form === 0x5f || form === 0x5e) c.fail('unsupported feature: GC types', 'unsupported', at)
        c.fail(`invalid type form ${hex(form)}`, 'malformed', at)
      }
      const params = valTypes(c)
      const results = valTypes(c)
      this.#types.push({ params, results })
    }
    this.#info.counts.types = n
  }

  #type (c: Cursor, at: number): FuncType {
    const index = c.u32()
    const type = this.#types[index]
    if (type === undefined) c.fail(`type index ${index} out of range (${this.#types.length} types)`, 'malformed', at)
    return type
  }

  #importSection (c: Cursor): void {
    // An import takes at least 4 bytes: two empty names, a kind and a one-byte descriptor.
    const n = c.count('imports', 4)
    checkLimit(n, this.#limits.maxImports, 'imports')
    const imports = this.#info.imports
    for (let i = 0; i < n; i++) {
      const module = this.#name(c, 'import module')
      const name = this.#name(c, 'import')
      const at = c.pos
      const kind = KINDS[c.u8()]
      switch (kind) {
        case 'func': {
          const type = this.#type(c, c.pos)
          this.#funcs.push(type)
          imports.push({ module, name, kind, type })
          break
        }
        case 'table':
        case 'memory':
          if (kind === 'table') refType(c)
          imports.push({ module, name, kind, limits: c.limits() })
          this.#spaces[kind]++
          break
        case 'global':
          globalType(c)
          imports.push({ module, name, kind })
          this.#spaces.global++
          break
        case 'tag':
          this.#tagType(c)
          imports.push({ module, name, kind })
          this.#spaces.tag++
          break
        default:
          c.fail(`invalid import kind ${hex(c.bytes[at] as number)}`, 'malformed', at)
      }
    }
    this.#info.counts.imports = n
  }

  /** An import or export name, refused before it is decoded when it is over maxNameBytes. */
  #name (c: Cursor, what: string): string {
    const max = this.#limits.maxNameBytes
    if (max !== undefined) {
      const at = c.pos
      const length = c.u32()
      c.pos = at
      if (length > max) c.fail(`${what} name of ${length} bytes; at most ${max} allowed`, 'limit', at)
    }
    return c.name()
  }

  #functionSection (c: Cursor): void {
    const n = c.count('functions', 1)
    checkLimit(n, this.#limits.maxFunctions, 'functions')
    for (let i = 0; i < n; i++) this.#funcs.push(this.#type(c, c.pos))
    this.#info.counts.functions = n
  }

  #tableSection (c: Cursor): void {
    const n = c.count('tables', 3)
    for (let i = 0; i < n; i++) {
      refType(c)
      this.#info.tables.push(c.limits())
    }
    this.#info.counts.tables = n
    this.#spaces.table += n
  }

  #memorySection (c: Cursor): void {
    const n = c.count('memories', 2)
    for (let i = 0; i < n; i++) this.#info.memories.push(c.limits())
    this.#info.counts.memories = n
    this.#spaces.memory += n
  }

  #tagSection (c: Cursor): void {
    const n = c.count('tags', 2)
    for (let i = 0; i < n; i++) this.#tagType(c)
    this.#spaces.tag += n
  }

  #tagType (c: Cursor): void {
    const at = c.pos
    const attribute = c.u8()
    if (attribute !== 0) c.fail(`invalid tag attribute ${hex(attribute)}`, 'malformed', at)
    this.#type(c, c.pos)
  }

  #globalSection (c: Cursor): void {
    const n = c.count('globals', 3)
    checkLimit(n, this.#limits.maxGlobals, 'globals')
    for (let i = 0; i < n; i++) {
      this.#info.globals.push(globalType(c))
      skipConstExpr(c)
    }
    this.#info.counts.globals = n
    this.#spaces.global += n
  }

  #exportSection (c: Cursor): void {
    const n = c.count('exports', 3)
    checkLimit(n, this.#limits.maxExports, 'exports')
    const exports = this.#info.exports
    const names = new Set<string>()
    for (let i = 0; i < n; i++) {
      const at = c.pos
      const name = this.#name(c, 'export')
      if (names.has(name)) c.fail(`duplicate export name '${name}'`, 'malformed', at)
      names.add(name)
      const kindAt = c.pos
      const kind = KINDS[c.u8()]
      if (kind === undefined) c.fail(`invalid export kind ${hex(c.bytes[kindAt] as number)}`, 'malformed', kindAt)
      const index = c.u32()
      const space = kind === 'func' ? this.#funcs.length : this.#spaces[kind]
      if (index >= space) c.fail(`export '${name}' refers to ${kind} ${index}, but the module has ${space}`, 'malformed', at)
      exports.push(kind === 'func' ? { name, kind, index, type: this.#funcs[index] as FuncType } : { name, kind, index })
    }
    this.#info.counts.exports = n
  }

  #startSection (c: Cursor): void {
    const at = c.pos
    const index = c.u32()
    if (index >= this.#funcs.length) c.fail(`start function ${index} out of range (${this.#funcs.length} functions)`, 'malformed', at)
    this.#info.startFunction = index
  }

  #elementSection (c: Cursor): void {
    // Segments are read only for their mode (passive ones matter to instance reset); indices
    // are not checked: V8 validates them when it compiles.
    const n = c.count('element segments', 1)
    checkLimit(n, this.#limits.maxElementSegments, 'element segments')
    this.#info.counts.elementSegments = n
    for (let i = 0; i < n; i++) {
      const at = c.pos
      const flags = c.u32()
      if (flags > 7) c.fail(`invalid element segment flags ${flags}`, 'malformed', at)
      if ((flags & 3) === 1) this.#info.passiveElementSegments++
      if ((flags & 1) === 0) { // active
        if ((flags & 2) !== 0) c.u32() // table index
        skipConstExpr(c)
      }
      const expressions = (flags & 4) !== 0
      // Flags 0 and 4 imply funcref; the others name an element kind (0x00) or a reference type.
      if ((flags & 3) !== 0) {
        if (expressions) refType(c)
        else if (c.u8() !== 0x00) c.fail('invalid element kind', 'malformed', c.pos - 1)
      }
      const count = c.count('element indices', 1)
      for (let k = 0; k < count; k++) {
        if (expressions) skipConstExpr(c)
        else c.u32()
      }
    }
  }

  #codeSection (c: Cursor): void {
    this.#info.codeBytes = c.remaining
    const importedFunctions = this.#info.imports.filter(i => i.kind === 'func').length
    this.#info.code = scanCode(c.bytes, c.pos, c.end, { importedFunctions, startFunction: this.#info.startFunction })
    this.#codeCount = c.count('function bodies', 2)
    c.pos = c.end
  }

  #dataSection (c: Cursor): void {
    const n = c.count('data segments', 2)
    checkLimit(n, this.#limits.maxDataSegments, 'data segments')
    let total = 0
    for (let i = 0; i < n; i++) {
      const at = c.pos
      const flags = c.u32()
      if (flags === 2) c.u32()
      if (flags === 0 || flags === 2) skipConstExpr(c)
      else if (flags === 1) this.#info.passiveDataSegments++
      else c.fail(`invalid data segment flags ${flags}`, 'malformed', at)
      const length = c.u32()
      c.skip(length)
      total += length
    }
    this.#info.counts.dataSegments = n
    this.#info.dataBytes = total
    if (total > this.#limits.maxDataBytes) {
      throw new WasmBinaryError(`module declares ${total} bytes of data segments; at most ${this.#limits.maxDataBytes} allowed`, 'limit')
    }
  }
}

function valTypes (c: Cursor): ValType[] {
  const n = c.count('value types', 1)
  const types: ValType[] = []
  for (let i = 0; i < n; i++) types.push(valType(c))
  return types
}

function valType (c: Cursor): ValType {
  const at = c.pos
  const b = c.u8()
  switch (b) {
    case 0x7f: return 'i32'
    case 0x7e: return 'i64'
    case 0x7d: return 'f32'
    case 0x7c: return 'f64'
    case 0x7b: return 'v128'
    case 0x70: return 'funcref'
    case 0x6f: return 'externref'
  }
  return refuseType(c, b, at)
}

function refType (c: Cursor): void {
  const at = c.pos
  const b = c.u8()
  if (b === 0x70 || b === 0x6f) return
  // 0x40 introduces a table with an initializer expression (function references).
  if (b === 0x40) c.fail('unsupported feature: table initializers', 'unsupported', at)
  refuseType(c, b, at)
}

function refuseType (c: Cursor, b: number, at: number): never {
  if (b === 0x63 || b === 0x64) c.fail('unsupported feature: typed function references', 'unsupported', at)
  if (b === 0x69) c.fail('unsupported feature: exception references (exnref)', 'unsupported', at)
  // The GC proposal's abstract heap types (any, eq, i31, struct, array, none, ...).
  if (b >= 0x6a && b <= 0x74) c.fail('unsupported feature: GC types', 'unsupported', at)
  return c.fail(`invalid value type ${hex(b)}`, 'malformed', at)
}

function globalType (c: Cursor): GlobalType {
  const type = valType(c)
  const at = c.pos
  const mutability = c.u8()
  if (mutability > 1) c.fail(`invalid global mutability ${hex(mutability)}`, 'malformed', at)
  return { type, mutable: mutability === 1 }
}

/**
 * Skips a constant expression up to its `end`. Only the instructions a constant expression
 * may hold are accepted, so an unknown byte is an error rather than a guess at its length.
 */
function skipConstExpr (c: Cursor): void {
  for (;;) {
    const at = c.pos
    const op = c.u8()
    switch (op) {
      case 0x0b: return // end
      case 0x41: c.skipSigned(32); break // i32.const
      case 0x42: c.skipSigned(64); break // i64.const
      case 0x43: c.skip(4); break // f32.const
      case 0x44: c.skip(8); break // f64.const
      case 0x23: case 0xd2: c.u32(); break // global.get, ref.func
      case 0xd0: { // ref.null
        const type = c.u8()
        if (type !== 0x70 && type !== 0x6f) refuseType(c, type, at + 1)
        break
      }
      // extended-const: i32.add/sub/mul, i64.add/sub/mul
      case 0x6a: case 0x6b: case 0x6c: case 0x7c: case 0x7d: case 0x7e: break
      case 0xfd: { // SIMD prefix: only v128.const is constant
        const sub = c.u32()
        if (sub !== 12) c.fail(`instruction 0xfd ${sub} is not allowed in a constant expression`, 'malformed', at)
        c.skip(16)
        break
      }
      default: c.fail(`instruction ${hex(op)} is not allowed in a constant expression`, 'malformed', at)
    }
  }
}
