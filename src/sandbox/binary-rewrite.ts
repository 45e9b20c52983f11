// The sandbox rewrite: the host, not the guest, owns a plugin's memory. A defined memory
// becomes `(import "host" "memory")` and an imported one is renamed to it, both with the
// maximum capped, so `memory.grow` fails inside the guest past the limit and a worker can
// hand the module a recycled memory. Table maxima are capped the same way. With `exportState`,
// every defined mutable global and table is also exported under a reserved name (STATE_EXPORT_
// PREFIX, refused in guest exports), so the host can put an instance back into the state it had
// right after instantiation (sandbox/instance-state.ts). Everything else is copied byte for
// byte: indices, code and custom sections are never touched.
import type { ModuleInfo, ResizableLimits } from './binary'
import { Cursor, WasmBinaryError, Writer } from './leb128'

/** The caps the host puts on a module's memory and tables. */
export interface RewriteOptions {
  /** Memory maximum, in 64 KiB pages. */
  memoryMaxPages: number
  /** Maximum of every defined table, in elements. */
  tableMaxElements: number
  /** Export every defined mutable global and table under a reserved name (see stateExportName). */
  exportState?: boolean
}

/**
 * Exports whose names start with this are the host's: the rewriter adds them, and a guest
 * export that starts with it is refused, so a guest can neither read nor shadow them.
 */
export const STATE_EXPORT_PREFIX = 'wph:state:'

/** The reserved export name of defined global or table `index` (its index in the module's index space). */
export function stateExportName (kind: 'global' | 'table', index: number): string {
  return `${STATE_EXPORT_PREFIX}${kind}:${index}`
}

export interface RewriteResult {
  /** A new binary, backed by a plain ArrayBuffer so `new WebAssembly.Module(bytes)` takes it as is. */
  bytes: Uint8Array<ArrayBuffer>
  /** Limits the host must give to `new WebAssembly.Memory({initial, maximum})`, or undefined when the module has no memory. */
  memory?: { initial: number, maximum: number }
}

const encoder = new TextEncoder()
// The import every rewritten module's memory comes through, up to its limits.
const HOST_MEMORY_IMPORT = Uint8Array.from([
  ...lengthPrefixed('host'),
  ...lengthPrefixed('memory'),
  0x02 // kind: memory
])
// 32-bit memories and tables cannot go past these, whatever the options say.
const MAX_PAGES = 65536
const MAX_TABLE_ELEMENTS = 0xffffffff

const IMPORT_SECTION = 2
const TABLE_SECTION = 4
const MEMORY_SECTION = 5
const EXPORT_SECTION = 7
/** Sections that come after the export section (start, element, code, data, data count). */
const AFTER_EXPORTS = new Set([8, 9, 10, 11, 12])

type MemoryLimits = NonNullable<RewriteResult['memory']>

/**
 * Rewrites a module parsed by `parseModule` so the host provides its memory as
 * `host.memory` and every defined table has a maximum of at most `tableMaxElements`. Returns
 * a new binary; `bytes` is never modified. Imported memories precede defined ones in the
 * index space, so turning the one defined memory into an import keeps it at index 0 and
 * every export, data segment and instruction that refers to it stays valid.
 *
 * @param info what `parseModule(bytes)` returned for these same bytes.
 * @throws {WasmBinaryError} for more than one memory, a shared or 64-bit memory or table, a
 * table import, or an initial size above the caps (`reason: 'limit'`).
 */
export function rewriteModule (bytes: Uint8Array, info: ModuleInfo, options: RewriteOptions): RewriteResult {
  const memoryCap = cap(options.memoryMaxPages, MAX_PAGES, 'memoryMaxPages')
  const tableCap = cap(options.tableMaxElements, MAX_TABLE_ELEMENTS, 'tableMaxElements')
  const memory = planMemory(info, memoryCap)
  checkTables(info, tableCap)
  const reserved = info.exports.find(e => e.name.startsWith(STATE_EXPORT_PREFIX))
  if (reserved !== undefined) throw new WasmBinaryError(`export name '${reserved.name}' is reserved by the host (names starting with '${STATE_EXPORT_PREFIX}')`, 'unsupported')
  const extraExports = options.exportState === true ? stateExports(info) : []
  let exportPending = extraExports.length > 0

  const out = new Writer(bytes.length + 32)
  out.bytes(bytes.subarray(0, 8))
  const c = new Cursor(bytes, 8)
  // A defined memory needs an import section; when the module has none, one is inserted
  // before the first section that must follow it (types are the only ones that precede it).
  let importPending = memory !== undefined && info.memories.length === 1
  const appendImport = importPending
  while (c.pos < bytes.length) {
    const start = c.pos
    c.end = bytes.length
    c.context = 'module'
    const id = c.u8()
    c.context = `section ${id}`
    const size = c.u32()
    if (size > c.remaining) c.truncated()
    c.end = c.pos + size
    if (importPending && id > IMPORT_SECTION) {
      writeSection(out, IMPORT_SECTION, writeImports(undefined, info, memory, true))
      importPending = false
    }
    if (exportPending && AFTER_EXPORTS.has(id)) {
      writeSection(out, EXPORT_SECTION, writeExports(undefined, extraExports))
      exportPending = false
    }
    switch (id) {
      case IMPORT_SECTION:
        writeSection(out, id, writeImports(c, info, memory, appendImport))
        importPending = false
        break
      case TABLE_SECTION:
        writeSection(out, id, writeTables(c, info, tableCap))
        break
      case MEMORY_SECTION:
        dropMemories(c, info)
        break
      case EXPORT_SECTION:
        if (extraExports.length === 0) {
          out.bytes(bytes.subarray(start, c.end))
        } else {
          writeSection(out, id, writeExports(c, extraExports))
          exportPending = false
        }
        break
      default:
        out.bytes(bytes.subarray(start, c.end))
    }
    c.pos = c.end
  }
  if (importPending) throw mismatch()
  if (exportPending) writeSection(out, EXPORT_SECTION, writeExports(undefined, extraExports))
  return memory === undefined ? { bytes: out.finish() } : { bytes: out.finish(), memory }
}

function cap (value: number, hardMax: number, name: string): number {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`rewriteModule: ${name} must be a non-negative integer, got ${value}`)
  return Math.min(value, hardMax)
}

function planMemory (info: ModuleInfo, maxPages: number): MemoryLimits | undefined {
  const imported = info.imports.filter(i => i.kind === 'memory')
  if (imported.length + info.memories.length > 1) throw new WasmBinaryError('unsupported feature: multiple memories', 'unsupported')
  const limits = imported[0]?.limits ?? info.memories[0]
  if (limits === undefined) return undefined
  if (limits.shared === true) throw new WasmBinaryError('unsupported feature: shared memory (threads)', 'unsupported')
  if (limits.index64 === true) throw new WasmBinaryError('unsupported feature: 64-bit memory (memory64)', 'unsupported')
  if (limits.min > maxPages) {
    throw new WasmBinaryError(`memory declares ${limits.min} initial pages (${mib(limits.min)} MiB); the limit is ${maxPages} pages (${mib(maxPages)} MiB)`, 'limit')
  }
  return { initial: limits.min, maximum: Math.min(limits.max ?? Infinity, maxPages) }
}

/** 64 KiB pages in MiB; exact, since a page is 1/16 MiB. */
function mib (pages: number): number {
  return pages / 16
}

function checkTables (info: ModuleInfo, maxElements: number): void {
  if (info.imports.some(i => i.kind === 'table')) throw new WasmBinaryError('table imports are not supported', 'unsupported')
  info.tables.forEach((t, i) => {
    if (t.shared === true) throw new WasmBinaryError(`table ${i} is shared; tables cannot be shared`)
    if (t.index64 === true) throw new WasmBinaryError('unsupported feature: 64-bit tables (table64)', 'unsupported')
    if (t.min > maxElements) throw new WasmBinaryError(`table ${i} declares ${t.min} initial elements; the limit is ${maxElements} elements`, 'limit')
  })
}

/**
 * The import section's payload: each import copied as it is, except a memory import, which
 * becomes `host.memory` with the capped limits; `append` adds that import at the end.
 */
function writeImports (c: Cursor | undefined, info: ModuleInfo, memory: MemoryLimits | undefined, append: boolean): Uint8Array {
  const w = new Writer((c?.remaining ?? 0) + 32)
  const n = c === undefined ? 0 : c.u32()
  if (n !== info.imports.length) throw mismatch()
  w.u32(n + (append ? 1 : 0))
  if (c !== undefined) {
    for (let i = 0; i < n; i++) copyImport(c, w, info.imports[i]?.limits, memory)
  }
  if (append && memory !== undefined) writeMemoryImport(w, memory)
  return w.finish()
}

function copyImport (c: Cursor, w: Writer, declared: ResizableLimits | undefined, memory: MemoryLimits | undefined): void {
  const start = c.pos
  c.take(c.u32()) // module
  c.take(c.u32()) // name
  const kind = c.u8()
  if (kind === 0x02) {
    if (memory === undefined || !sameLimits(c.limits(), declared)) throw mismatch()
    return writeMemoryImport(w, memory)
  }
  // parseModule accepted only one-byte value and reference types, so these sizes are fixed.
  switch (kind) {
    case 0x00: c.u32(); break // type index
    case 0x03: c.skip(2); break // value type, mutability
    case 0x04: c.u8(); c.u32(); break // attribute, type index
    default: throw mismatch() // table imports were refused before
  }
  w.bytes(c.bytes.subarray(start, c.pos))
}

interface StateExport { name: Uint8Array, kind: number, index: number }

/** The reserved exports of every defined mutable global and every defined table. */
function stateExports (info: ModuleInfo): StateExport[] {
  const out: StateExport[] = []
  const importedGlobals = info.imports.filter(i => i.kind === 'global').length
  info.globals.forEach((g, i) => {
    const index = importedGlobals + i
    if (g.mutable) out.push({ name: encoder.encode(stateExportName('global', index)), kind: 0x03, index })
  })
  // Table imports are refused (checkTables), so defined tables start at index 0. Tables that no
  // instruction can write (code-scan.ts) keep their initial contents: nothing to restore.
  if (info.code?.tableWrites !== false) {
    info.tables.forEach((_, index) => out.push({ name: encoder.encode(stateExportName('table', index)), kind: 0x01, index }))
  }
  return out
}

/** The export section's payload: the module's exports as they are, then `extra`. */
function writeExports (c: Cursor | undefined, extra: StateExport[]): Uint8Array {
  const w = new Writer((c?.remaining ?? 0) + extra.length * 32)
  const n = c === undefined ? 0 : c.u32()
  w.u32(n + extra.length)
  if (c !== undefined) w.bytes(c.bytes.subarray(c.pos, c.end))
  for (const e of extra) {
    w.u32(e.name.length)
    w.bytes(e.name)
    w.byte(e.kind)
    w.u32(e.index)
  }
  return w.finish()
}

function writeMemoryImport (w: Writer, memory: MemoryLimits): void {
  w.bytes(HOST_MEMORY_IMPORT)
  writeLimits(w, memory.initial, memory.maximum)
}

function writeTables (c: Cursor, info: ModuleInfo, maxElements: number): Uint8Array {
  const w = new Writer(c.remaining + 16)
  const n = c.u32()
  if (n !== info.tables.length) throw mismatch()
  w.u32(n)
  for (let i = 0; i < n; i++) {
    const type = c.u8()
    const limits = c.limits()
    if (!sameLimits(limits, info.tables[i])) throw mismatch()
    w.byte(type)
    writeLimits(w, limits.min, Math.min(limits.max ?? Infinity, maxElements))
  }
  return w.finish()
}

/** Reads the memory section to check it, and writes nothing: its one memory is now imported. */
function dropMemories (c: Cursor, info: ModuleInfo): void {
  const n = c.u32()
  if (n !== info.memories.length) throw mismatch()
  for (let i = 0; i < n; i++) {
    if (!sameLimits(c.limits(), info.memories[i])) throw mismatch()
  }
}

function writeLimits (w: Writer, min: number, max: number): void {
  w.byte(0x01) // min and max, unshared, 32-bit
  w.u32(min)
  w.u32(max)
}

function writeSection (out: Writer, id: number, payload: Uint8Array): void {
  out.byte(id)
  out.u32(payload.length)
  out.bytes(payload)
}

function lengthPrefixed (text: string): number[] {
  const bytes = encoder.encode(text)
  return [bytes.length, ...bytes]
}

function sameLimits (a: ResizableLimits, b: ResizableLimits | undefined): boolean {
  return b !== undefined && a.min === b.min && a.max === b.max && a.shared === b.shared && a.index64 === b.index64
}

// The info is the plan the rewrite follows; bytes it does not describe would make the plan
// wrong, and that is a bug of the caller, not a bad upload, hence not a WasmBinaryError.
function mismatch (): Error {
  return new Error('rewriteModule: info does not describe these bytes; pass what parseModule returned for them')
}
