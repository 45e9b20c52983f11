// In-memory stdout and stderr. Stdout is the response body, so it is bounded and a write past
// the bound fails (the guest sees EFBIG, the host sees `overflowed`); stderr only feeds logs
// and error details, so it keeps a tail and never fails the guest.

/** Where fd_write on a sink puts bytes. */
export interface Sink {
  /** Appends `chunks` whole, or throws; returns the bytes taken. */
  write: (chunks: readonly Uint8Array[]) => number
  /** Bytes the sink would still take (for poll_oneoff's `nbytes`). */
  readonly capacity: number
  /** A copy of what the sink holds. */
  contents: () => Uint8Array
}

/** Thrown by `BoundedSink.write` when the bound would be passed. */
export class SinkFull extends Error {
  constructor () {
    super('sink is full')
    this.name = 'SinkFull'
  }
}

/**
 * Keeps everything up to `limit` bytes. A write that does not fit entirely is refused as a
 * whole (nothing of it is kept) and marks the sink overflowed, so the output is never a
 * silently truncated prefix.
 */
export class BoundedSink implements Sink {
  readonly limit: number
  #buf = new Uint8Array(0)
  #length = 0
  #overflowed = false

  constructor (limit: number) {
    this.limit = Math.max(0, Math.floor(limit))
  }

  get overflowed (): boolean { return this.#overflowed }
  get capacity (): number { return this.limit - this.#length }

  write (chunks: readonly Uint8Array[]): number {
    let total = 0
    for (const c of chunks) total += c.byteLength
    if (total > this.capacity) {
      this.#overflowed = true
      throw new SinkFull()
    }
    this.#reserve(this.#length + total)
    for (const c of chunks) {
      this.#buf.set(c, this.#length)
      this.#length += c.byteLength
    }
    return total
  }

  contents (): Uint8Array {
    return this.#buf.slice(0, this.#length)
  }

  // Grows geometrically up to the limit: never allocates the whole limit for small output.
  // Starts at 64 bytes, which V8 keeps on its heap: a first 4 KiB buffer (off the heap) cost
  // ~7 µs a call, a sixth of a Rust plugin's call on a reset instance.
  #reserve (size: number): void {
    if (size <= this.#buf.byteLength) return
    const next = new Uint8Array(Math.min(this.limit, Math.max(size, this.#buf.byteLength * 2, 64)))
    next.set(this.#buf.subarray(0, this.#length))
    this.#buf = next
  }
}

/** Keeps the last `limit` bytes written (a ring buffer); writes always succeed. */
export class TailSink implements Sink {
  readonly limit: number
  // Allocated at the first write: most calls write nothing to stderr, and a 64 KiB ring per
  // call was a third of createWasi's time (measured with a Rust plugin on a reset instance).
  #ring = new Uint8Array(0)
  #start = 0
  #length = 0

  constructor (limit: number) {
    this.limit = Math.max(0, Math.floor(limit))
  }

  get capacity (): number { return 0xffffffff }

  write (chunks: readonly Uint8Array[]): number {
    let total = 0
    for (const c of chunks) {
      total += c.byteLength
      this.#append(c)
    }
    return total
  }

  contents (): Uint8Array {
    const out = new Uint8Array(this.#length)
    const first = Math.min(this.#length, this.limit - this.#start)
    out.set(this.#ring.subarray(this.#start, this.#start + first))
    out.set(this.#ring.subarray(0, this.#length - first), first)
    return out
  }

  #append (data: Uint8Array): void {
    if (this.limit === 0) return
    if (this.#ring.length === 0) this.#ring = new Uint8Array(this.limit)
    // Only the last `limit` bytes of a long write can survive.
    const src = data.byteLength > this.limit ? data.subarray(data.byteLength - this.limit) : data
    for (let off = 0; off < src.byteLength;) {
      const end = (this.#start + this.#length) % this.limit
      if (this.#length === this.limit) {
        // Full: overwrite the oldest bytes and move the start along.
        const n = Math.min(src.byteLength - off, this.limit - this.#start)
        this.#ring.set(src.subarray(off, off + n), this.#start)
        this.#start = (this.#start + n) % this.limit
        off += n
      } else {
        const n = Math.min(src.byteLength - off, this.limit - this.#length, this.limit - end)
        this.#ring.set(src.subarray(off, off + n), end)
        this.#length += n
        off += n
      }
    }
  }
}
