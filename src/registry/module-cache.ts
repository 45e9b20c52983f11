// Compiled modules, bounded by the memory they take, not by their number: a multi-tenant
// registry has hundreds of active plugins, and a count bound that is smaller than the working
// set makes every call a compile (measured: 200 plugins of 3,000 functions called round-robin
// ran at 0.17-0.28x the speed of one with a 64-module bound). A WebAssembly.Module is compiled
// once (off the main thread, by V8's async compile) and posted to workers by reference, so no
// worker ever recompiles it; concurrent misses of one key share one compile.

export interface ModuleCacheEvents {
  /** Time an actual compile took, in seconds. */
  onCompile?: (seconds: number) => void
  /** A lookup was served from the cache (`true`) or had to compile (`false`). */
  onLookup?: (hit: boolean) => void
  /** The estimated bytes the cached modules hold, after each change. */
  onBytes?: (bytes: number) => void
}

/** What the estimate of a compiled module's memory needs to know of the module. */
export interface ModuleShape {
  /** Size of the binary the workers instantiate, in bytes. */
  size: number
  /** Defined functions. */
  functions: number
  /** Size of the code section's payload. */
  codeBytes: number
}

/**
 * Estimated resident bytes of a compiled module (V8 12, TurboFan only, `--no-liftoff`),
 * fitted to RSS measured over 10-100 distinct compiled copies of each (bench/RESULTS.md,
 * "What a compiled module costs"): a fixed ~16 KiB, ~80 bytes per function (code object,
 * metadata, jump table slot), ~2 bytes of machine code per byte of wasm code, and the wire
 * bytes V8 keeps. Measured vs estimated: 0 functions 15 vs 16 KiB; 3,000 small functions
 * 283 vs 325 KiB; 30,000: 2.9 vs 3.1 MiB; the Rust example (207 functions, 63 KiB of code)
 * 131 vs 173 KiB; the C example 67 vs 84 KiB. It errs high, so the budget is not overrun.
 */
export function estimateCompiledBytes (m: ModuleShape): number {
  return 16 * 1024 + 80 * m.functions + 2 * m.codeBytes + Math.max(0, m.size - m.codeBytes)
}

interface Entry { module: Promise<WebAssembly.Module>, bytes: number }

export class ModuleCache {
  readonly #maxBytes: number
  readonly #entries = new Map<string, Entry>()
  readonly #events: ModuleCacheEvents
  #bytes = 0

  /** `maxBytes`: the budget for estimated compiled bytes (MODULE_CACHE_BYTES). */
  constructor (maxBytes: number, events: ModuleCacheEvents = {}) {
    this.#maxBytes = maxBytes
    this.#events = events
  }

  /**
   * The compiled module for `key`, compiling `load()`'s bytes on a miss. `bytes` is the
   * module's estimated cost (estimateCompiledBytes). Calls that miss while a compile of the
   * key is under way wait for that one.
   */
  get (key: string, bytes: number, load: () => Promise<Uint8Array>): Promise<WebAssembly.Module> {
    const hit = this.#entries.get(key)
    if (hit !== undefined) {
      this.#entries.delete(key)
      this.#entries.set(key, hit) // most recently used last
      this.#events.onLookup?.(true)
      return hit.module
    }
    this.#events.onLookup?.(false)
    const compiled = load().then(b => this.#compile(b))
    const entry: Entry = { module: compiled, bytes }
    compiled.catch(() => { if (this.#entries.get(key) === entry) this.#remove(key, entry) })
    this.#insert(key, entry)
    return compiled
  }

  /**
   * Compiles bytes (an upload); the module is cached only when `set()` is called, so a module
   * that fails to store is never cached. Throws V8's CompileError.
   */
  async compile (bytes: Uint8Array): Promise<WebAssembly.Module> {
    return this.#compile(bytes)
  }

  /** Caches a module compiled by `compile()`, with its estimated cost. */
  set (key: string, module: WebAssembly.Module, bytes: number): void {
    const old = this.#entries.get(key)
    if (old !== undefined) this.#remove(key, old)
    this.#insert(key, { module: Promise.resolve(module), bytes })
  }

  async #compile (bytes: Uint8Array): Promise<WebAssembly.Module> {
    const t0 = performance.now()
    // V8 compiles asynchronously on background threads: a big upload does not block requests.
    const module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>)
    this.#events.onCompile?.((performance.now() - t0) / 1000)
    return module
  }

  #insert (key: string, entry: Entry): void {
    this.#entries.set(key, entry)
    this.#bytes += entry.bytes
    // Least recently used first; the entry just inserted stays even when it alone is over the
    // budget, or a module larger than the budget would be compiled on every call.
    for (const [k, e] of this.#entries) {
      if (this.#bytes <= this.#maxBytes || k === key) break
      this.#remove(k, e)
    }
    this.#events.onBytes?.(this.#bytes)
  }

  #remove (key: string, entry: Entry): void {
    this.#entries.delete(key)
    this.#bytes -= entry.bytes
    this.#events.onBytes?.(this.#bytes)
  }

  /** Modules cached (or being compiled) now. */
  get size (): number {
    return this.#entries.size
  }

  /** Their estimated bytes. */
  get bytes (): number {
    return this.#bytes
  }
}
