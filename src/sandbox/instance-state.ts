// The state of an instance right after instantiation, and putting it back. Taken once, when a
// worker instantiates a plugin it will keep: the whole memory (so data segments, a start
// function's writes and global-initialized offsets are all in it at once), every mutable global
// and every table, read through the exports the rewriter adds under reserved names
// (binary-rewrite.ts). Restoring it makes the instance indistinguishable from a new one, for
// modules reset-plan.ts accepts; a call that grew the memory or a table leaves an instance that
// cannot be restored (neither can shrink), and the caller drops it.
import { STATE_EXPORT_PREFIX } from './binary-rewrite'
import { WASM_PAGE } from './limits'

interface GlobalState { global: WebAssembly.Global, value: unknown }
interface TableState { table: WebAssembly.Table, values: unknown[] }
/** Bytes of memory that are not zero right after instantiation, as they were then. */
interface Run { offset: number, bytes: Uint8Array }

export interface InstanceSnapshot {
  /** Memory size right after instantiation, in bytes. */
  readonly memoryBytes: number
  readonly runs: readonly Run[]
  readonly globals: readonly GlobalState[]
  readonly tables: readonly TableState[]
  /** Bytes this snapshot keeps (the memory image), for the worker's byte budget. */
  readonly imageBytes: number
}

/**
 * Snapshots `instance` (call it right after instantiation, before any export runs). Returns
 * undefined when the state cannot be restored exactly from JavaScript: a float global whose
 * initial value is a NaN (JavaScript does not keep a NaN's payload bits).
 */
export function snapshotInstance (instance: WebAssembly.Instance, memory: WebAssembly.Memory | undefined): InstanceSnapshot | undefined {
  const globals: GlobalState[] = []
  const tables: TableState[] = []
  for (const [name, value] of Object.entries(instance.exports)) {
    if (!name.startsWith(STATE_EXPORT_PREFIX)) continue
    if (value instanceof WebAssembly.Global) {
      const v: unknown = value.value
      if (typeof v === 'number' && Number.isNaN(v)) return undefined
      globals.push({ global: value, value: v })
    } else if (value instanceof WebAssembly.Table) {
      const values: unknown[] = []
      for (let i = 0; i < value.length; i++) values.push(value.get(i))
      tables.push({ table: value, values })
    }
  }
  const runs = memory === undefined ? [] : nonZeroRuns(new Uint8Array(memory.buffer))
  return {
    memoryBytes: memory?.buffer.byteLength ?? 0,
    runs,
    globals,
    tables,
    imageBytes: runs.reduce((n, r) => n + r.bytes.length, 0)
  }
}

/**
 * Puts memory, globals and tables back as they were in `snapshot`. Returns false, having
 * restored nothing, when the memory or a table grew: the instance must then be dropped.
 */
export function restoreInstance (snapshot: InstanceSnapshot, memory: WebAssembly.Memory | undefined): boolean {
  if ((memory?.buffer.byteLength ?? 0) !== snapshot.memoryBytes) return false
  for (const t of snapshot.tables) if (t.table.length !== t.values.length) return false
  if (memory !== undefined) {
    const bytes = new Uint8Array(memory.buffer)
    zeroMemory(bytes)
    for (const r of snapshot.runs) bytes.set(r.bytes, r.offset)
  }
  for (const g of snapshot.globals) {
    if (g.global.value !== g.value) g.global.value = g.value
  }
  for (const t of snapshot.tables) {
    const { table, values } = t
    for (let i = 0; i < values.length; i++) {
      if (table.get(i) !== values[i]) table.set(i, values[i])
    }
  }
  return true
}

/**
 * Zeroes a memory, all of it. Skipping pages that are zero already (a memcmp per 64 KiB page)
 * would keep pages a guest never touched uncommitted, but measured it cost 111 µs for 17 clean
 * pages against 9 µs for a fill: the byte budget (memory-pool.ts) bounds what a worker keeps
 * instead, counting every kept memory at its full size.
 */
export function zeroMemory (bytes: Uint8Array): void {
  bytes.fill(0)
}

const ZERO_PAGE = Buffer.alloc(WASM_PAGE)

function isZero (buffer: Buffer, start: number, end: number): boolean {
  // Buffer.compare is a memcmp: several GB/s, against a JS loop's few hundred MB/s.
  return buffer.compare(ZERO_PAGE, 0, end - start, start, end) === 0
}

/**
 * The non-zero stretches of memory, copied; stretches closer than GAP_WORDS words are merged.
 * A memcmp skips the pages that are all zero; only pages with data are walked, a 32-bit word
 * at a time.
 */
function nonZeroRuns (bytes: Uint8Array): Run[] {
  const GAP_WORDS = 64
  const runs: Run[] = []
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  // Wasm memories are whole pages, so the word view covers every byte.
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2)
  let start = -1
  let last = -1
  const flush = (): void => {
    if (start >= 0) runs.push({ offset: start << 2, bytes: bytes.slice(start << 2, (last + 1) << 2) })
    start = -1
  }
  for (let page = 0; page < bytes.length; page += WASM_PAGE) {
    const end = Math.min(page + WASM_PAGE, bytes.length)
    if (isZero(buffer, page, end)) continue
    for (let w = page >>> 2, wEnd = end >>> 2; w < wEnd; w++) {
      if (words[w] === 0) continue
      if (start >= 0 && w - last > GAP_WORDS) flush()
      if (start < 0) start = w
      last = w
    }
  }
  flush()
  return runs
}
