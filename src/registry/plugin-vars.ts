// Extism vars: state the host keeps per plugin across calls (each call still gets a fresh
// instance), in this process's memory only, as in Extism. A call takes a snapshot at its start
// and its writes apply when it ends, in the order calls end (DESIGN.md). A replace or delete
// clears a plugin's vars and starts a new epoch, so a call of the old version that ends later
// never writes into the new version's vars.

interface Store { epoch: number, values: Map<string, Uint8Array>, bytes: number }

export interface VarsSnapshot { epoch: number, vars: Array<[string, Uint8Array]> }

const size = (key: string, value: Uint8Array): number => Buffer.byteLength(key) + value.length

export class PluginVars {
  readonly #stores = new Map<string, Store>()
  #epochs = 0

  #store (plugin: string): Store {
    let s = this.#stores.get(plugin)
    if (s === undefined) {
      s = { epoch: ++this.#epochs, values: new Map(), bytes: 0 }
      this.#stores.set(plugin, s)
    }
    return s
  }

  /** The vars a call starts with. Values are never mutated in place, so they are shared. */
  snapshot (plugin: string): VarsSnapshot {
    const s = this.#store(plugin)
    return { epoch: s.epoch, vars: [...s.values] }
  }

  /**
   * Applies a finished call's writes in order. A write that would take the plugin's vars past
   * `limit` bytes (other calls wrote meanwhile) is skipped; returns how many were.
   */
  apply (plugin: string, epoch: number, writes: ReadonlyArray<[string, Uint8Array | null]>, limit: number): number {
    const s = this.#stores.get(plugin)
    if (s === undefined || s.epoch !== epoch) return 0
    let skipped = 0
    for (const [key, value] of writes) {
      const old = s.values.get(key)
      const oldSize = old === undefined ? 0 : size(key, old)
      if (value === null) {
        if (s.values.delete(key)) s.bytes -= oldSize
        continue
      }
      const next = s.bytes - oldSize + size(key, value)
      if (next > limit) { skipped++; continue }
      s.values.set(key, value)
      s.bytes = next
    }
    return skipped
  }

  /** Forgets a plugin's vars (PUT, DELETE). */
  clear (plugin: string): void {
    this.#stores.delete(plugin)
  }
}
