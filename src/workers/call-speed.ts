// How long each plugin's calls take on a thread, smoothed: the pool lets only plugins with short
// calls queue several calls per thread. Forgotten with the plugin (replace, delete).

/** Calls shorter than this (smoothed) may queue behind each other on a thread. */
const FAST_CALL_MS = 1
/** Weight of the newest call in the moving average. */
const ALPHA = 0.2

export class CallSpeed {
  readonly #averageMs = new Map<string, number>()

  record (plugin: string, durationMs: number): void {
    const old = this.#averageMs.get(plugin)
    this.#averageMs.set(plugin, old === undefined ? durationMs : old + ALPHA * (durationMs - old))
  }

  /** True once the plugin's calls are known to be short; unknown plugins are not. */
  fast (plugin: string): boolean {
    return (this.#averageMs.get(plugin) ?? Infinity) < FAST_CALL_MS
  }

  forget (plugin: string): void {
    this.#averageMs.delete(plugin)
  }
}
