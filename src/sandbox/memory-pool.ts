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
import { WASM_PAGE } from './limits'

/** Clean + dirty memories kept per (initial, maximum) shape. */
const PER_SHAPE = 4
/** Shapes kept; the least recently used is dropped past this. */
const MAX_SHAPES = 64

interface Shape { clean: WebAssembly.Memory[], dirty: WebAssembly.Memory[] }

/** Where a call gets its host memory from (the pool; bench/sandbox.mts also measures "always fresh"). */
export interface MemorySource {
  acquire: (initial: number, maximum: number) => WebAssembly.Memory
  release: (memory: WebAssembly.Memory, initial: number, maximum: number) => void
}

export class MemoryPool implements MemorySource {
  readonly #shapes = new Map<string, Shape>()
  #scrubScheduled = false
  #fresh = 0
  #reused = 0

  /** A zeroed memory of exactly this shape (the import's declared limits must match). */
  acquire (initial: number, maximum: number): WebAssembly.Memory {
    const key = `${initial}:${maximum}`
    const shape = this.#shapes.get(key)
    if (shape !== undefined) {
      this.#shapes.delete(key)
      this.#shapes.set(key, shape) // LRU order
      const clean = shape.clean.pop()
      if (clean !== undefined) { this.#reused++; return clean }
      const dirty = shape.dirty.pop()
      if (dirty !== undefined) { scrub(dirty); this.#reused++; return dirty }
    }
    this.#fresh++
    return new WebAssembly.Memory({ initial, maximum })
  }

  /** Gives a memory back after a call; it is zeroed before anyone sees it again, or dropped if it grew. */
  release (memory: WebAssembly.Memory, initial: number, maximum: number): void {
    if (memory.buffer.byteLength !== initial * WASM_PAGE) return
    const key = `${initial}:${maximum}`
    let shape = this.#shapes.get(key)
    if (shape === undefined) {
      shape = { clean: [], dirty: [] }
      this.#shapes.set(key, shape)
      if (this.#shapes.size > MAX_SHAPES) {
        const oldest = this.#shapes.keys().next().value
        if (oldest !== undefined) this.#shapes.delete(oldest)
      }
    }
    if (shape.clean.length + shape.dirty.length >= PER_SHAPE) return
    shape.dirty.push(memory)
    this.#scheduleScrub()
  }

  get stats (): { fresh: number, reused: number } {
    return { fresh: this.#fresh, reused: this.#reused }
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
  new Uint8Array(memory.buffer).fill(0)
}
