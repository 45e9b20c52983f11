// Validates an uploaded module and describes it, before anything is instantiated: structural
// limits (section parser), the sandbox rewrite (memory -> host import, capped table), ABI
// detection and the capability check. Shared by the HTTP upload and the CLI's `inspect`.
import { parseModule, rewriteModule, WasmBinaryError } from '../sandbox/binary'
import type { ExportEntry, FuncType, ImportEntry, ModuleInfo } from '../sandbox/binary'
import { deniedImports, WASI_MODULE } from '../sandbox/capabilities'
import { EXTISM_MODULE } from '../sandbox/extism/types'
import { pagesOf, parseLimitsFor } from '../sandbox/limits'
import { planReset } from '../sandbox/reset-plan'
import type { ResetPlan } from '../sandbox/reset-plan'
import { serviceError } from '../errors'
import type { Abi, PluginLimits } from './manifest'

/** Entry names the json ABI falls back to, in order, when `?function=` is absent. */
export const JSON_ENTRY_FALLBACKS = ['execute', 'run', 'main'] as const

export interface Inspection {
  info: ModuleInfo
  abi: Abi
  /** Exports callable through the json ABI: `(i32, i32) -> (i32, i32)` or `(i32, i32) -> i64`. */
  entries: string[]
  /** The rewritten binary the workers instantiate. */
  rewritten: Uint8Array
  memory: { initial: number, maximum: number } | undefined
  /** Whether a kept instance can be reset to its initial state between calls, or why not. */
  reset: ResetPlan
}

export function isJsonEntryType (type: FuncType | undefined): boolean {
  if (type === undefined) return false
  const [p0, p1] = type.params
  if (type.params.length !== 2 || p0 !== 'i32' || p1 !== 'i32') return false
  const r = type.results
  return (r.length === 2 && r[0] === 'i32' && r[1] === 'i32') || (r.length === 1 && r[0] === 'i64')
}

/** An export an extism call may run: `() -> i32` or `() -> ()`, not an initialiser. */
export function isExtismEntry (e: ExportEntry): boolean {
  const t = e.type
  if (e.kind !== 'func' || t === undefined || t.params.length !== 0) return false
  if (e.name === '_initialize' || e.name === 'hs_init' || e.name === 'hs_exit' || e.name.startsWith('__')) return false
  return t.results.length === 0 || (t.results.length === 1 && t.results[0] === 'i32')
}

function funcExports (info: ModuleInfo): ExportEntry[] {
  return info.exports.filter(e => e.kind === 'func')
}

/** Detects the ABI: a WASI command, or a json module; otherwise says what was expected. */
export function detectAbi (info: ModuleInfo, declared: Abi | undefined): Abi {
  const exported = new Set(info.exports.map(e => e.name))
  const importsWasi = info.imports.some(i => i.module === WASI_MODULE)
  const hasMemory = info.exports.some(e => e.kind === 'memory' && e.name === 'memory')
  const hasJsonEntry = funcExports(info).some(e => isJsonEntryType(e.type))
  const isCommand = exported.has('_start')
  const importsExtism = info.imports.some(i => i.module === EXTISM_MODULE)
  const abi = declared ?? (importsExtism ? 'extism' : importsWasi && isCommand ? 'wasi' : hasMemory && hasJsonEntry ? 'json' : undefined)
  if (abi === undefined) {
    throw serviceError('INVALID_MODULE', ['cannot tell the ABI: expected an Extism plugin (imports from extism:host/env), a WASI command (imports from wasi_snapshot_preview1 and an exported _start) ' +
      'or a json plugin (an exported memory named "memory" and an export of type (i32, i32) -> (i32, i32) or (i32, i32) -> i64, such as execute)'])
  }
  if (abi === 'wasi' && !isCommand) throw serviceError('INVALID_MODULE', ['a wasi plugin must export _start (a WASI command)'])
  if (abi === 'json') {
    if (!hasMemory) throw serviceError('INVALID_MODULE', ['a json plugin must export its memory as "memory"'])
    if (!hasJsonEntry) throw serviceError('INVALID_MODULE', ['a json plugin must export a function of type (i32, i32) -> (i32, i32) or (i32, i32) -> i64'])
  }
  if (abi === 'extism' && !info.exports.some(isExtismEntry)) {
    throw serviceError('INVALID_MODULE', ['an extism plugin must export a function of type () -> i32 or () -> ()'])
  }
  return abi
}

/**
 * Inspects module bytes under the given limits. Throws INVALID_MODULE (malformed, over a
 * structural limit, unsupported feature) or CAPABILITY_DENIED (an import outside the grant).
 */
export function inspectModule (bytes: Uint8Array, limits: PluginLimits, declaredAbi: Abi | undefined, wasiGranted: boolean): Inspection {
  if (bytes.length < 8 || bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) {
    if (looksLikeWat(bytes)) {
      throw serviceError('INVALID_MODULE', ['this is WebAssembly text (WAT), not a binary: compile it first, e.g. npx -p wabt wat2wasm plugin.wat -o plugin.wasm'])
    }
    throw serviceError('INVALID_MODULE', ['not a WebAssembly binary (missing the \\0asm magic number)'])
  }
  let info: ModuleInfo
  let rewritten: Uint8Array
  let memory: Inspection['memory']
  try {
    info = parseModule(bytes, parseLimitsFor(limits.memoryBytes))
    // Also refuses shared/64-bit/multiple memories and table imports (unsupported features).
    // Also refuses guest exports under the host's reserved names, and adds those exports for
    // every mutable global and table, which instance reset reads and writes.
    const result = rewriteModule(bytes, info, { memoryMaxPages: pagesOf(limits.memoryBytes), tableMaxElements: limits.tableElements, exportState: true })
    rewritten = result.bytes
    memory = result.memory
  } catch (err) {
    if (err instanceof WasmBinaryError) throw serviceError('INVALID_MODULE', [err.message])
    throw err
  }
  const abi = detectAbi(info, declaredAbi)
  const denied = deniedImports(info.imports, { wasi: wasiGranted || abi === 'wasi', extism: abi === 'extism' })
  if (denied.length > 0) {
    throw serviceError('CAPABILITY_DENIED', [`imports not granted: ${denied.map(d => `${d.module}.${d.name}`).join(', ')}`], { details: { imports: denied } })
  }
  const entries = abi === 'extism'
    ? info.exports.filter(isExtismEntry).map(e => e.name)
    : funcExports(info).filter(e => isJsonEntryType(e.type)).map(e => e.name)
  return { info, abi, entries, rewritten, memory, reset: planReset(info, abi) }
}

/** Text that starts, after blanks and `;;` comments, with `(module`: a .wat file sent as is. */
function looksLikeWat (bytes: Uint8Array): boolean {
  const head = Buffer.from(bytes.subarray(0, 4096)).toString('latin1').replace(/^(\s|;;[^\n]*\n|\(;[\s\S]*?;\))*/, '')
  return head.startsWith('(module')
}

export function describeImports (imports: readonly ImportEntry[]): Array<{ module: string, name: string, kind: string }> {
  return imports.map(i => ({ module: i.module, name: i.name, kind: i.kind }))
}

export function describeExports (exports: readonly ExportEntry[]): Array<{ name: string, kind: string }> {
  return exports.map(e => ({ name: e.name, kind: e.kind }))
}
