// The json ABI: input JSON bytes written into guest memory, `entry(ptr, len)` returns the
// output as (ptr, len) (multi-value) or `ptr << 32 | len` (an i64, for toolchains without
// multi-value). Every pointer the guest hands back is bounds-checked before it is read.
import { isUtf8 } from 'node:buffer'
import { GuestError } from './guest-error'
import { WASM_PAGE } from './limits'

type Exports = WebAssembly.Exports

function fn (exports: Exports, name: string): ((...args: number[]) => unknown) | undefined {
  const value = exports[name]
  return typeof value === 'function' ? value as (...args: number[]) => unknown : undefined
}

/**
 * Where a reused instance ("instance": "reuse") takes its input when it has no `alloc`: the
 * region the host grew for an earlier call, written over again rather than grown every call.
 */
export interface InputRegion { ptr: number, capacity: number }

/**
 * Writes `input` into guest memory: through `alloc(len)` when exported, else past the old end
 * (or, for a reused instance, into the region grown for an earlier call when it fits).
 */
export function writeInput (exports: Exports, memory: WebAssembly.Memory, input: Uint8Array, region?: InputRegion): number {
  const alloc = fn(exports, 'alloc')
  let ptr: number
  if (alloc !== undefined) {
    ptr = Number(alloc(input.length)) >>> 0
    if (ptr + input.length > memory.buffer.byteLength) {
      throw new GuestError('PLUGIN_INVALID_OUTPUT', `alloc(${input.length}) returned ${ptr}, outside the ${memory.buffer.byteLength}-byte memory`)
    }
  } else if (region !== undefined && region.capacity >= input.length && region.ptr + region.capacity <= memory.buffer.byteLength) {
    ptr = region.ptr
  } else {
    ptr = memory.buffer.byteLength
    const pages = Math.ceil(input.length / WASM_PAGE)
    if (pages > 0) {
      try {
        memory.grow(pages)
      } catch {
        throw new GuestError('PAYLOAD_TOO_LARGE', `input of ${input.length} bytes does not fit in the plugin's memory limit`)
      }
    }
    if (region !== undefined) { region.ptr = ptr; region.capacity = pages * WASM_PAGE }
  }
  new Uint8Array(memory.buffer, ptr, input.length).set(input)
  return ptr
}

/** Decodes the entry's return value: [ptr, len] (multi-value) or a packed i64. */
export function decodeReturn (value: unknown): { ptr: number, len: number } {
  if (Array.isArray(value) && value.length === 2) {
    return { ptr: Number(value[0]) >>> 0, len: Number(value[1]) >>> 0 }
  }
  if (typeof value === 'bigint') {
    const v = BigInt.asUintN(64, value)
    return { ptr: Number(v >> 32n), len: Number(v & 0xffffffffn) }
  }
  throw new GuestError('PLUGIN_INVALID_OUTPUT', 'the entry did not return (ptr, len)')
}

/**
 * Calls a json entry on a fresh instance: `_initialize` first when exported (WASI reactors),
 * then the entry. Returns a copy of the output bytes, checked for bounds, size and JSON validity.
 */
export function callJsonEntry (exports: Exports, memory: WebAssembly.Memory, entry: string, input: Uint8Array, outputBytes: number): Uint8Array {
  const main = fn(exports, entry)
  if (main === undefined) throw new GuestError('FUNCTION_NOT_FOUND', `plugin has no exported function '${entry}'`)
  fn(exports, '_initialize')?.()
  return callEntry(exports, memory, entry, input, outputBytes)
}

/**
 * Calls a json entry of an instance that is already initialized (fresh or reused): writes the
 * input, calls, and returns a copy of the output (a buffer of its own, so it can be transferred
 * to the main thread), checked for bounds, size and JSON validity.
 */
export function callEntry (exports: Exports, memory: WebAssembly.Memory, entry: string, input: Uint8Array, outputBytes: number, region?: InputRegion): Uint8Array {
  const main = fn(exports, entry)
  if (main === undefined) throw new GuestError('FUNCTION_NOT_FOUND', `plugin has no exported function '${entry}'`)
  const ptr = writeInput(exports, memory, input, region)
  const out = decodeReturn(main(ptr, input.length))
  if (out.len > outputBytes) {
    throw new GuestError('PLUGIN_INVALID_OUTPUT', `output of ${out.len} bytes is over the ${outputBytes}-byte limit`, { outputBytes: out.len, limit: outputBytes })
  }
  const size = memory.buffer.byteLength
  if (out.ptr + out.len > size) {
    throw new GuestError('PLUGIN_INVALID_OUTPUT', `output [${out.ptr}, ${out.ptr + out.len}) is outside the ${size}-byte memory`)
  }
  const output = new Uint8Array(out.len)
  output.set(new Uint8Array(memory.buffer, out.ptr, out.len))
  if (!isJson(output)) throw new GuestError('PLUGIN_INVALID_OUTPUT', 'output is not valid JSON')
  return output
}

/**
 * True when `bytes` are UTF-8 JSON text (RFC 8259, what JSON.parse accepts, a leading BOM
 * allowed as TextDecoder strips it). Checked on every call, for the input and the output, so
 * it validates without building anything: Node's SIMD UTF-8 check, then one pass over the
 * bytes with a container stack. Measured against TextDecoder + JSON.parse (which allocates
 * every string, number and object): 2x faster on 100 bytes, 3.4x on 64 KiB of records, on
 * par on one 64 KiB string. test/unit/perf-json.test.ts checks that the two agree.
 */
export function isJson (bytes: Uint8Array): boolean {
  return jsonShape(bytes, Infinity, Infinity) === 'ok'
}

/** What a scan found: JSON within the limits, not JSON, nested too deep, or too many values. */
export type JsonShape = 'ok' | 'invalid' | 'deep' | 'many'

/**
 * isJson with limits, checked on the bytes before anything is parsed (schema validation in the
 * worker, workers/validators.ts): at most `maxDepth` nested arrays and objects (empty ones
 * count) and `maxValues` values in all (every member and element, containers included).
 */
export function jsonShape (bytes: Uint8Array, maxDepth: number, maxValues: number): JsonShape {
  try {
    if (!isUtf8(bytes)) return 'invalid'
    const found = scanJson(bytes, maxDepth, maxValues)
    return found === SCAN_OK ? 'ok' : found === SCAN_DEEP ? 'deep' : found === SCAN_MANY ? 'many' : 'invalid'
  } finally {
    wordsFor = undefined // never keep a reference to guest memory or an input
  }
}

const SCAN_OK = 0
const SCAN_INVALID = 1
const SCAN_DEEP = 2
const SCAN_MANY = 3

// Byte values of the JSON grammar.
const QUOTE = 0x22
const BACKSLASH = 0x5c
const COMMA = 0x2c
const COLON = 0x3a
const MINUS = 0x2d
const PLUS = 0x2b
const DOT = 0x2e
const ZERO = 0x30
const NINE = 0x39
const OPEN_OBJECT = 0x7b
const CLOSE_OBJECT = 0x7d
const OPEN_ARRAY = 0x5b
const CLOSE_ARRAY = 0x5d
const IN_OBJECT = 1
const IN_ARRAY = 2

/** Containers open at each depth; grown on demand, kept between calls (one per thread). */
let stack = new Uint8Array(256)

function skipSpace (b: Uint8Array, i: number): number {
  const n = b.length
  while (i < n) {
    const c = b[i] as number
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break
    i++
  }
  return i
}

/** Bytes that end a run of plain string content: the quote, the backslash, control characters. */
const STRING_STOP = new Uint8Array(256)
for (let c = 0; c < 0x20; c++) STRING_STOP[c] = 1
STRING_STOP[QUOTE] = 1
STRING_STOP[BACKSLASH] = 1

/** The index after the string that starts at b[i] (a quote), or -1. */
function scanString (b: Uint8Array, i: number): number {
  const n = b.length
  i++
  for (;;) {
    i = skipPlain(b, i)
    if (i >= n) return -1
    const c = b[i] as number
    if (c === QUOTE) return i + 1
    if (c !== BACKSLASH) return -1 // a control character
    const e = i + 1 < n ? b[i + 1] as number : -1
    if (e === 0x75) { // \uXXXX
      if (i + 5 >= n) return -1
      for (let k = i + 2; k < i + 6; k++) if (!isHex(b[k] as number)) return -1
      i += 6
    } else if (e === QUOTE || e === BACKSLASH || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
      i += 2
    } else {
      return -1
    }
  }
}

/**
 * The index of the first byte at or after i that ends plain string content (a quote, a
 * backslash or a control character), or b.length. Past the first 16 bytes, a string is scanned
 * four bytes at a time through an aligned Uint32Array view of the input (SWAR: a word holds a
 * byte < 0x20 iff (x - 0x20202020) & ~x & 0x80808080, and a byte equal to c iff the same holds
 * for x ^ c*0x01010101 against 0x01010101): 4x faster than a byte loop on long strings.
 */
function skipPlain (b: Uint8Array, i: number): number {
  const n = b.length
  const short = Math.min(n, i + 16)
  while (i < short) {
    if (STRING_STOP[b[i] as number] !== 0) return i
    i++
  }
  if (i >= n) return i
  const view = wordsOf(b)
  // Bytewise to the next word boundary, then word by word.
  while (i < n && ((b.byteOffset + i) & 3) !== 0) {
    if (STRING_STOP[b[i] as number] !== 0) return i
    i++
  }
  let w = (i - wordBase) >>> 2
  const words = view.length
  for (; w < words; w++) {
    const x = view[w] as number
    const q = x ^ 0x22222222
    const s = x ^ 0x5c5c5c5c
    if ((((x - 0x20202020) & ~x) | ((q - 0x01010101) & ~q) | ((s - 0x01010101) & ~s)) & 0x80808080) break
  }
  i = Math.max(i, wordBase + (w << 2))
  while (i < n && STRING_STOP[b[i] as number] === 0) i++
  return i
}

/** The aligned word view of the input being scanned, made once per input (long strings only). */
let wordsFor: Uint8Array | undefined
let wordView: Uint32Array<ArrayBufferLike> = new Uint32Array(0)
/** Byte index in the input of wordView[0]. */
let wordBase = 0

function wordsOf (b: Uint8Array): Uint32Array<ArrayBufferLike> {
  if (wordsFor !== b) {
    wordBase = (4 - (b.byteOffset & 3)) & 3
    wordView = new Uint32Array(b.buffer, b.byteOffset + wordBase, Math.max(0, b.length - wordBase) >>> 2)
    wordsFor = b
  }
  return wordView
}

function isHex (c: number): boolean {
  return (c >= ZERO && c <= NINE) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
}

function digits (b: Uint8Array, i: number): number {
  const n = b.length
  while (i < n && (b[i] as number) >= ZERO && (b[i] as number) <= NINE) i++
  return i
}

/** The index after the number that starts at b[i], or -1. */
function scanNumber (b: Uint8Array, i: number): number {
  const n = b.length
  if (b[i] === MINUS) i++
  if (i >= n) return -1
  if (b[i] === ZERO) {
    i++
  } else {
    const end = digits(b, i)
    if (end === i) return -1
    i = end
  }
  if (i < n && b[i] === DOT) {
    const end = digits(b, i + 1)
    if (end === i + 1) return -1
    i = end
  }
  if (i < n && (b[i] === 0x65 || b[i] === 0x45)) {
    i++
    if (i < n && (b[i] === PLUS || b[i] === MINUS)) i++
    const end = digits(b, i)
    if (end === i) return -1
    i = end
  }
  return i
}

const TRUE = [0x74, 0x72, 0x75, 0x65]
const FALSE = [0x66, 0x61, 0x6c, 0x73, 0x65]
const NULL = [0x6e, 0x75, 0x6c, 0x6c]

function literal (b: Uint8Array, i: number, word: number[]): number {
  if (i + word.length > b.length) return -1
  for (let k = 0; k < word.length; k++) if (b[i + k] !== word[k]) return -1
  return i + word.length
}

/** The index after `"key" :` at b[i], or -1. */
function scanKey (b: Uint8Array, i: number): number {
  if (b[i] !== QUOTE) return -1
  i = scanString(b, i)
  if (i < 0) return -1
  i = skipSpace(b, i)
  return b[i] === COLON ? i + 1 : -1
}

/** JSON structure over bytes already known to be UTF-8 (bytes >= 0x80 only occur in strings). */
function scanJson (b: Uint8Array, maxDepth: number, maxValues: number): number {
  const n = b.length
  let i = n >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf ? 3 : 0
  let depth = 0
  let values = 0
  for (;;) {
    // A value starts at i.
    i = skipSpace(b, i)
    if (i >= n) return SCAN_INVALID
    if (++values > maxValues) return SCAN_MANY
    const c = b[i] as number
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (depth >= maxDepth) return SCAN_DEEP
      i = skipSpace(b, i + 1)
      if (b[i] === (c === OPEN_OBJECT ? CLOSE_OBJECT : CLOSE_ARRAY)) {
        i++
      } else {
        if (depth === stack.length) {
          const grown = new Uint8Array(stack.length * 2)
          grown.set(stack)
          stack = grown
        }
        stack[depth++] = c === OPEN_OBJECT ? IN_OBJECT : IN_ARRAY
        if (c === OPEN_OBJECT) {
          i = scanKey(b, i)
          if (i < 0) return SCAN_INVALID
        }
        continue
      }
    } else if (c === QUOTE) {
      i = scanString(b, i)
    } else if (c === MINUS || (c >= ZERO && c <= NINE)) {
      i = scanNumber(b, i)
    } else if (c === 0x74) {
      i = literal(b, i, TRUE)
    } else if (c === 0x66) {
      i = literal(b, i, FALSE)
    } else if (c === 0x6e) {
      i = literal(b, i, NULL)
    } else {
      return SCAN_INVALID
    }
    if (i < 0) return SCAN_INVALID
    // After a value: close containers, or a comma and the next value (and key).
    for (;;) {
      i = skipSpace(b, i)
      if (depth === 0) return i === n ? SCAN_OK : SCAN_INVALID
      const d = b[i]
      const inside = stack[depth - 1]
      if (d === COMMA) {
        i++
        if (inside === IN_OBJECT) {
          i = scanKey(b, skipSpace(b, i))
          if (i < 0) return SCAN_INVALID
        }
        break
      }
      if ((inside === IN_OBJECT && d === CLOSE_OBJECT) || (inside === IN_ARRAY && d === CLOSE_ARRAY)) {
        depth--
        i++
        continue
      }
      return SCAN_INVALID
    }
  }
}
