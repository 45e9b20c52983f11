// Compiled modules, bounded: thousands of registered plugins do not all sit in memory.
// A WebAssembly.Module is compiled once (off the main thread, by V8's async compile) and
// posted to workers by reference, so no worker ever recompiles it.

export interface ModuleCacheEvents {
  /** Time an actual compile took, in seconds. */
  onCompile?: (seconds: number) => void
}

export class ModuleCache {
  readonly #max: number
  readonly #entries = new Map<string, Promise<WebAssembly.Module>>()
  readonly #events: ModuleCacheEvents

  constructor (max: number, events: ModuleCacheEvents = {}) {
    this.#max = max
    this.#events = events
  }

  /** The compiled module for `key`, compiling `load()`'s bytes on a miss. */
  get (key: string, load: () => Promise<Uint8Array>): Promise<WebAssembly.Module> {
    const hit = this.#entries.get(key)
    if (hit !== undefined) {
      this.#entries.delete(key)
      this.#entries.set(key, hit) // most recently used last
      return hit
    }
    const compiled = load().then(bytes => this.#compile(bytes))
    compiled.catch(() => this.#entries.delete(key))
    this.#entries.set(key, compiled)
    this.#evict()
    return compiled
  }

  /**
   * Compiles bytes (an upload) and caches the module under `key` once `publish()` is called,
   * so a module that fails to store is never cached. Throws V8's CompileError.
   */
  async compile (bytes: Uint8Array): Promise<WebAssembly.Module> {
    return this.#compile(bytes)
  }

  /** Caches a module compiled by `compile()`. */
  set (key: string, module: WebAssembly.Module): void {
    this.#entries.delete(key)
    this.#entries.set(key, Promise.resolve(module))
    this.#evict()
  }

  async #compile (bytes: Uint8Array): Promise<WebAssembly.Module> {
    const t0 = performance.now()
    // V8 compiles asynchronously on background threads: a big upload does not block requests.
    const module = await WebAssembly.compile(bytes as Uint8Array<ArrayBuffer>)
    this.#events.onCompile?.((performance.now() - t0) / 1000)
    return module
  }

  #evict (): void {
    for (const key of this.#entries.keys()) {
      if (this.#entries.size <= this.#max) break
      this.#entries.delete(key)
    }
  }

  get size (): number {
    return this.#entries.size
  }
}
