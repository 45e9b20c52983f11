// The json ABI: input JSON bytes written into guest memory, `entry(ptr, len)` returns the
// output as (ptr, len) (multi-value) or `ptr << 32 | len` (an i64, for toolchains without
// multi-value). Every pointer the guest hands back is bounds-checked before it is read.
import { GuestError } from './guest-error'
import { WASM_PAGE } from './limits'

type Exports = WebAssembly.Exports

function fn (exports: Exports, name: string): ((...args: number[]) => unknown) | undefined {
  const value = exports[name]
  return typeof value === 'function' ? value as (...args: number[]) => unknown : undefined
}

/** Writes `input` into guest memory: through `alloc(len)` when exported, else past the old end. */
export function writeInput (exports: Exports, memory: WebAssembly.Memory, input: Uint8Array): number {
  const alloc = fn(exports, 'alloc')
  let ptr: number
  if (alloc !== undefined) {
    ptr = Number(alloc(input.length)) >>> 0
    if (ptr + input.length > memory.buffer.byteLength) {
      throw new GuestError('PLUGIN_INVALID_OUTPUT', `alloc(${input.length}) returned ${ptr}, outside the ${memory.buffer.byteLength}-byte memory`)
    }
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
 * Calls a json entry: `_initialize` first when exported (WASI reactors), then the entry.
 * Returns a copy of the output bytes, checked for bounds, size and JSON validity.
 */
export function callJsonEntry (exports: Exports, memory: WebAssembly.Memory, entry: string, input: Uint8Array, outputBytes: number): Uint8Array {
  const main = fn(exports, entry)
  if (main === undefined) throw new GuestError('FUNCTION_NOT_FOUND', `plugin has no exported function '${entry}'`)
  fn(exports, '_initialize')?.()
  const ptr = writeInput(exports, memory, input)
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

const decoder = new TextDecoder('utf-8', { fatal: true })

/** True when `bytes` are UTF-8 JSON text. */
export function isJson (bytes: Uint8Array): boolean {
  try {
    JSON.parse(decoder.decode(bytes))
    return true
  } catch {
    return false
  }
}
