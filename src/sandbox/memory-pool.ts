// Recycled host-provided memories. Every fresh WebAssembly.Memory reserves ~10 GiB of address
// space that only GC returns: measured (bench/sandbox.mts), a fresh instance over a fresh
// memory costs 10-15x one over a recycled memory, and fresh memories under load wreck p99.
// A recycled memory must be indistinguishable from a fresh one: every byte is zeroed before
// reuse, and only memories still at their initial size are kept. A memory cannot shrink, and
// one that grew would hand the next call less headroom under the same maximum (measured: a
// no-`alloc` plugin with a 4-page maximum failed its 4th call with PAYLOAD_TOO_LARGE when
// grown memories were kept) and a different memory.size; so it is dropped.
// The zeroing is deferred to setImmediate, but piscina's default `atomics: 'sync'` blocks the
// worker in Atomics.wait between tasks and its event loop never turns there (measured: no
// setImmediate callback ran in 200 tasks), so in the service acquire() does the zeroing, on
// the critical path: 2-4 µs for a 64 KiB memory.
// Bounded by bytes, not only by count (security issue 16): what a worker keeps, free memories
// here plus the memories of the instances it keeps (reported through hold()), stays under
// maxBytes. Measured before the bound: 8 plugins of distinct ~256 MiB shapes, 2 calls each,
// took the service's RSS from 225 MiB to 4.3 GiB, and it stayed there.
import { zeroMemory } from './instance-state'
import { WASM_PAGE } from './limits'

/** Clean + dirty memories kept per (initial, maximum) shape. */
const PER_SHAPE = 4
/** Shapes kept; the least recently used is dropped past this. */
const MAX_SHAPES = 64
/** Default of what one worker keeps, free memories and kept instances together. */
export const DEFAULT_POOL_BYTES = 64 * 1024 * 1024

interface Shape { clean: WebAssembly.Memory[], dirty: WebAssembly.Memory[] }

/** Where a call gets its host memory from (the pool; bench/sandbox.mts also measures "always fresh"). */
export interface MemorySource {
  acquire: (initial: number, maximum: number) => WebAssembly.Memory
  release: (memory: WebAssembly.Memory, initial: number, maximum: number) => void
}

export class MemoryPool implements MemorySource {
  readonly #shapes = new Map<string, Shape>()
  readonly #maxBytes: number
  #scrubScheduled = false
  #fresh = 0
  #reused = 0
  /** Bytes of the free memories kept here. */
  #freeBytes = 0
  /** Bytes held by kept instances (hold/unhold). */
  #heldBytes = 0

  constructor (maxBytes = DEFAULT_POOL_BYTES) {
    this.#maxBytes = maxBytes
  }

  /** A zeroed memory of exactly this shape (the import's declared limits must match). */
  acquire (initial: number, maximum: number): WebAssembly.Memory {
    const key = `${initial}:${maximum}`
    const shape = this.#shapes.get(key)
    if (shape !== undefined) {
      this.#shapes.delete(key)
      this.#shapes.set(key, shape) // LRU order
      const clean = shape.clean.pop()
      if (clean !== undefined) { this.#taken(clean); return clean }
      const dirty = shape.dirty.pop()
      if (dirty !== undefined) { scrub(dirty); this.#taken(dirty); return dirty }
    }
    this.#fresh++
    return new WebAssembly.Memory({ initial, maximum })
  }

  /** Gives a memory back after a call; it is zeroed before anyone sees it again, or dropped if it grew. */
  release (memory: WebAssembly.Memory, initial: number, maximum: number): void {
    const size = memory.buffer.byteLength
    if (size !== initial * WASM_PAGE) return
    const key = `${initial}:${maximum}`
    let shape = this.#shapes.get(key)
    if (shape !== undefined && shape.clean.length + shape.dirty.length >= PER_SHAPE) return
    if (!this.#makeRoom(size)) return
    shape = this.#shapes.get(key) // #makeRoom may have dropped it
    if (shape === undefined) {
      shape = { clean: [], dirty: [] }
      this.#shapes.set(key, shape)
      if (this.#shapes.size > MAX_SHAPES) {
        const oldest = this.#shapes.keys().next().value
        if (oldest !== undefined) this.#dropShape(oldest)
      }
    }
    shape.dirty.push(memory)
    this.#freeBytes += size
    this.#scheduleScrub()
  }

  /**
   * Counts `bytes` that a kept instance holds against the budget (negative when it lets go).
   * Free memories are dropped, least recently used shape first, to make room.
   */
  hold (bytes: number): void {
    this.#heldBytes += bytes
    // Free memories go first, even when kept instances alone are over the budget (the caller
    // then drops instances too).
    for (const key of this.#shapes.keys()) {
      if (this.bytes <= this.#maxBytes) break
      this.#dropShape(key)
    }
  }

  /** Drops every free memory (released on idle; what kept instances hold is theirs to let go). */
  clear (): void {
    for (const key of [...this.#shapes.keys()]) this.#dropShape(key)
  }

  /** Everything this worker keeps: free memories and what kept instances hold. */
  get bytes (): number {
    return this.#freeBytes + this.#heldBytes
  }

  get maxBytes (): number {
    return this.#maxBytes
  }

  get stats (): { fresh: number, reused: number } {
    return { fresh: this.#fresh, reused: this.#reused }
  }

  #taken (memory: WebAssembly.Memory): void {
    this.#reused++
    this.#freeBytes -= memory.buffer.byteLength
  }

  /** Drops free memories until `bytes` more fit in the budget; false (dropping nothing) when they cannot. */
  #makeRoom (bytes: number): boolean {
    if (bytes + this.#heldBytes > this.#maxBytes) return false
    for (const key of this.#shapes.keys()) {
      if (this.bytes + bytes <= this.#maxBytes) break
      this.#dropShape(key)
    }
    return this.bytes + bytes <= this.#maxBytes
  }

  #dropShape (key: string): void {
    const shape = this.#shapes.get(key)
    if (shape === undefined) return
    for (const m of [...shape.clean, ...shape.dirty]) this.#freeBytes -= m.buffer.byteLength
    this.#shapes.delete(key)
  }

  #scheduleScrub (): void {
    if (this.#scrubScheduled) return
    this.#scrubScheduled = true
    setImmediate(() => {
      this.#scrubScheduled = false
      for (const shape of this.#shapes.values()) {
        for (let m = shape.dirty.pop(); m !== undefined; m = shape.dirty.pop()) {
          scrub(m)
          shape.clean.push(m)
        }
      }
    })
  }
}

function scrub (memory: WebAssembly.Memory): void {
  zeroMemory(new Uint8Array(memory.buffer))
}
