// Primitives of the WebAssembly binary encoding shared by the section parser (binary.ts) and
// the rewriter (binary-rewrite.ts): a bounds-checked reader, a growable writer, and the one
// error type every malformed, unsupported or oversized input turns into. Nothing here
// allocates per byte: the reader hands out subarrays and the writer grows by doubling.
import type { ResizableLimits } from './binary'

/** Why a module was refused, so callers pick an error code without reading the message. */
export type WasmBinaryErrorReason = 'malformed' | 'unsupported' | 'limit'

/**
 * A module the host refuses. The message names the problem and, where there is one, the
 * section and byte offset. `reason` is `malformed` (not a valid binary), `unsupported` (a
 * valid feature the host does not run) or `limit` (a quantity above a configured maximum).
 */
export class WasmBinaryError extends Error {
  readonly reason: WasmBinaryErrorReason

  constructor (message: string, reason: WasmBinaryErrorReason = 'malformed') {
    super(message)
    this.name = 'WasmBinaryError'
    this.reason = reason
  }
}

// `ignoreBOM` keeps a leading U+FEFF: wasm names are compared byte for byte, never stripped.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Decodes UTF-8, or returns undefined when the bytes are not valid UTF-8. */
export function decodeUtf8 (bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes)
  } catch {
    return undefined
  }
}

/** `0x4e`, for messages. */
export function hex (byte: number): string {
  return `0x${byte.toString(16).padStart(2, '0')}`
}

/**
 * Reads the binary encoding between `pos` and `end`. The parser moves `end` and `context`
 * from section to section, so a read past a section's end fails with the section's name
 * instead of silently reading into the next one.
 */
export class Cursor {
  readonly bytes: Uint8Array
  pos: number
  end: number
  /** Where the cursor is, for messages: `section 3 (function)`. */
  context: string

  constructor (bytes: Uint8Array, pos = 0, end = bytes.length, context = 'module') {
    this.bytes = bytes
    this.pos = pos
    this.end = end
    this.context = context
  }

  get remaining (): number {
    return this.end - this.pos
  }

  /** Throws a WasmBinaryError that says where the problem is. */
  fail (problem: string, reason: WasmBinaryErrorReason = 'malformed', at = this.pos): never {
    throw new WasmBinaryError(`${problem} in ${this.context} at byte ${at}`, reason)
  }

  truncated (at = this.end, detail?: string): never {
    throw new WasmBinaryError(`truncated ${this.context} at byte ${at}${detail === undefined ? '' : `: ${detail}`}`)
  }

  u8 (): number {
    if (this.pos >= this.end) this.truncated()
    return this.bytes[this.pos++] as number
  }

  /** Unsigned LEB128 of at most 5 bytes whose value fits 32 bits, as the spec requires. */
  u32 (): number {
    const start = this.pos
    let result = 0
    for (let shift = 0; ; shift += 7) {
      const b = this.u8()
      if (shift === 28) {
        // The 5th byte carries bits 28..31: a continuation bit or any higher bit is overlong.
        if ((b & 0xf0) !== 0) this.fail('malformed LEB128: integer too long or too large for 32 bits', 'malformed', start)
        // Multiplication, not `<<`, so bit 31 does not turn the result negative.
        return result + b * 0x10000000
      }
      result |= (b & 0x7f) << shift
      if (b < 0x80) return result
    }
  }

  /**
   * Unsigned LEB128 of at most 10 bytes (memory64 limits). Values above 2^53 lose precision,
   * which is fine: they only ever reach a "too large" refusal.
   */
  u64 (): number {
    const start = this.pos
    let result = 0
    for (let shift = 0; ; shift += 7) {
      const b = this.u8()
      if (shift === 63) {
        if ((b & 0xfe) !== 0) this.fail('malformed LEB128: integer too long or too large for 64 bits', 'malformed', start)
        return result + b * 2 ** 63
      }
      result += (b & 0x7f) * 2 ** shift
      if (b < 0x80) return result
    }
  }

  /** Skips a signed LEB128 of `bits` bits, checking its length and its sign extension. */
  skipSigned (bits: 32 | 64): void {
    const start = this.pos
    const last = Math.floor((bits - 1) / 7) * 7
    for (let shift = 0; ; shift += 7) {
      const b = this.u8()
      if (shift === last) {
        // The unused high bits of the last byte must repeat the sign bit.
        const mask = (0x7f << (bits - shift - 1)) & 0x7f
        const rest = b & (0x80 | mask)
        if (rest !== 0 && rest !== mask) this.fail(`malformed LEB128: integer too long or too large for ${bits} bits`, 'malformed', start)
        return
      }
      if (b < 0x80) return
    }
  }

  skip (n: number): void {
    if (n > this.remaining) this.truncated(this.end, `${n} bytes declared, ${this.remaining} left`)
    this.pos += n
  }

  /** A view of the next `n` bytes, not a copy. */
  take (n: number): Uint8Array {
    const start = this.pos
    this.skip(n)
    return this.bytes.subarray(start, this.pos)
  }

  /** A `name`: a length-prefixed UTF-8 string. */
  name (): string {
    const at = this.pos
    const text = decodeUtf8(this.take(this.u32()))
    if (text === undefined) this.fail('name is not valid UTF-8', 'malformed', at)
    return text
  }

  /**
   * The length of a vector whose elements take at least `minBytes` each. Checked against
   * the bytes left before anyone loops or allocates on it, so 10 bytes that declare 2^32-1
   * entries fail at once.
   */
  count (what: string, minBytes = 1): number {
    const n = this.u32()
    if (n * minBytes > this.remaining) this.truncated(this.pos, `${n} ${what} declared, ${this.remaining} bytes left`)
    return n
  }

  /**
   * Table and memory limits. Shared and 64-bit forms are recorded, not refused: refusing
   * them is the caller's policy, and the message is better there.
   */
  limits (): ResizableLimits {
    const at = this.pos
    const flags = this.u8()
    // 0x08 is the custom-page-sizes proposal; anything above is not defined at all.
    if (flags > 0x07) this.fail(`unsupported limits flags ${hex(flags)}`, flags < 0x10 ? 'unsupported' : 'malformed', at)
    const index64 = (flags & 0x04) !== 0
    const shared = (flags & 0x02) !== 0
    const min = index64 ? this.u64() : this.u32()
    const max = (flags & 0x01) === 0 ? undefined : index64 ? this.u64() : this.u32()
    if (shared && max === undefined) this.fail('shared limits without a maximum', 'malformed', at)
    if (max !== undefined && max < min) this.fail(`limits maximum ${max} is below the minimum ${min}`, 'malformed', at)
    const limits: ResizableLimits = { min }
    if (max !== undefined) limits.max = max
    if (shared) limits.shared = true
    if (index64) limits.index64 = true
    return limits
  }
}

/** Appends to a buffer that doubles when full. */
export class Writer {
  #buf: Uint8Array<ArrayBuffer>
  #length = 0

  constructor (capacity = 64) {
    this.#buf = new Uint8Array(Math.max(16, capacity))
  }

  get length (): number {
    return this.#length
  }

  byte (b: number): void {
    this.#reserve(1)
    this.#buf[this.#length++] = b
  }

  u32 (value: number): void {
    this.#reserve(5)
    let v = value >>> 0
    do {
      const b = v & 0x7f
      v >>>= 7
      this.#buf[this.#length++] = v === 0 ? b : b | 0x80
    } while (v !== 0)
  }

  bytes (src: Uint8Array): void {
    this.#reserve(src.length)
    this.#buf.set(src, this.#length)
    this.#length += src.length
  }

  /** The bytes written, as a new array the writer no longer touches. */
  finish (): Uint8Array<ArrayBuffer> {
    return this.#buf.slice(0, this.#length)
  }

  #reserve (n: number): void {
    if (this.#length + n <= this.#buf.length) return
    let size = this.#buf.length * 2
    while (size < this.#length + n) size *= 2
    const next = new Uint8Array(size)
    next.set(this.#buf.subarray(0, this.#length))
    this.#buf = next
  }
}
