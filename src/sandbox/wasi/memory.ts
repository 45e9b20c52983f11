// Bounds-checked access to guest memory. Every pointer and length comes from the guest, so
// every access is checked here and an out-of-bounds one is EFAULT, never a host exception.
// A GuestMemory is built per syscall from `memory.buffer`: the guest may have grown its
// memory since the last call, which detaches the previous buffer.
import { Errno } from './errno'
import { fail } from './errors'

/** The part of a WebAssembly.Memory the WASI layer uses. */
export interface MemoryLike {
  readonly buffer: ArrayBuffer | SharedArrayBuffer
}

/** Most iovecs one call may pass (POSIX IOV_MAX): bounds host work per syscall. */
export const IOV_MAX = 1024

const utf8 = new TextDecoder('utf-8', { fatal: true })
const utf8Encoder = new TextEncoder()

/** Encodes a host string as UTF-8 bytes. */
export function encode (text: string): Uint8Array {
  return utf8Encoder.encode(text)
}

/** An i32 argument from the guest, as an unsigned pointer/length/fd. Anything else is EFAULT. */
export function u32 (value: unknown): number {
  if (typeof value !== 'number') fail(Errno.FAULT)
  return value >>> 0
}

/** An i64 argument from the guest (arrives as a bigint), as an unsigned u64. */
export function u64 (value: unknown): bigint {
  if (typeof value !== 'bigint') fail(Errno.FAULT)
  return BigInt.asUintN(64, value)
}

/** A view of the guest's memory for the duration of one syscall. */
export class GuestMemory {
  readonly bytes: Uint8Array
  readonly #view: DataView

  constructor (buffer: ArrayBuffer | SharedArrayBuffer) {
    this.bytes = new Uint8Array(buffer)
    this.#view = new DataView(buffer)
  }

  /** Throws EFAULT unless [ptr, ptr + len) lies inside memory. */
  check (ptr: number, len: number): void {
    if (!Number.isSafeInteger(ptr) || !Number.isSafeInteger(len) || ptr < 0 || len < 0 ||
        ptr + len > this.bytes.byteLength) {
      fail(Errno.FAULT)
    }
  }

  getU8 (ptr: number): number { this.check(ptr, 1); return this.#view.getUint8(ptr) }
  getU16 (ptr: number): number { this.check(ptr, 2); return this.#view.getUint16(ptr, true) }
  getU32 (ptr: number): number { this.check(ptr, 4); return this.#view.getUint32(ptr, true) }
  getU64 (ptr: number): bigint { this.check(ptr, 8); return this.#view.getBigUint64(ptr, true) }
  setU8 (ptr: number, v: number): void { this.check(ptr, 1); this.#view.setUint8(ptr, v) }
  setU16 (ptr: number, v: number): void { this.check(ptr, 2); this.#view.setUint16(ptr, v, true) }
  setU32 (ptr: number, v: number): void { this.check(ptr, 4); this.#view.setUint32(ptr, v, true) }
  setU64 (ptr: number, v: bigint): void { this.check(ptr, 8); this.#view.setBigUint64(ptr, BigInt.asUintN(64, v), true) }

  /** A live view of guest bytes (no copy): valid for this syscall only. */
  view (ptr: number, len: number): Uint8Array {
    this.check(ptr, len)
    return this.bytes.subarray(ptr, ptr + len)
  }

  /** Copies `data` into guest memory at `ptr`. */
  write (ptr: number, data: Uint8Array): void {
    this.check(ptr, data.byteLength)
    this.bytes.set(data, ptr)
  }

  /** Fills [ptr, ptr + len) with zeros (structs are written whole, padding included). */
  zero (ptr: number, len: number): void {
    this.check(ptr, len)
    this.bytes.fill(0, ptr, ptr + len)
  }

  /** Decodes a UTF-8 string the guest passed as (ptr, len); invalid UTF-8 is EILSEQ. */
  string (ptr: number, len: number): string {
    // A copy: TextDecoder refuses views of a SharedArrayBuffer (shared memories).
    const bytes = this.view(ptr, len).slice()
    try {
      return utf8.decode(bytes)
    } catch {
      return fail(Errno.ILSEQ)
    }
  }

  /**
   * Reads an array of `iovec`/`ciovec` ({buf: u32, buf_len: u32}, 8 bytes each) and returns
   * live views of the buffers they describe, each bounds-checked.
   */
  iovecs (ptr: number, count: number): Uint8Array[] {
    if (count > IOV_MAX) fail(Errno.INVAL)
    this.check(ptr, count * 8)
    const views: Uint8Array[] = []
    let total = 0
    for (let i = 0; i < count; i++) {
      const buf = this.getU32(ptr + i * 8)
      const len = this.getU32(ptr + i * 8 + 4)
      views.push(this.view(buf, len))
      total += len
    }
    // The byte count is returned as a u32: a total that does not fit is refused (POSIX: EINVAL).
    if (total > 0xffffffff) fail(Errno.INVAL)
    return views
  }
}
