// The service's Prometheus metrics. Names and labels are part of the API (DESIGN.md).
// A per-app registry, so two apps in one process (tests) never share series.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { VERSION } from '../version'

/**
 * Distinct `plugin` label values kept; calls of further plugins are counted under
 * OTHER_PLUGINS. With thousands of plugins the series count stays bounded (and deleted
 * plugins' series are removed).
 */
export const MAX_PLUGIN_LABELS = 500
export const OTHER_PLUGINS = '__other__'

export interface Metrics {
  readonly registry: Registry
  executed: (plugin: string, outcome: string, seconds: number | undefined) => void
  queueWait: (seconds: number) => void
  terminated: (reason: string) => void
  compiled: (seconds: number) => void
  /** A compiled-module cache lookup: served from the cache, or a compile. */
  moduleCacheLookup: (hit: boolean) => void
  moduleCacheBytes: (bytes: number) => void
  /** A request answered: `route` is the matched pattern (`/plugins/:name`), or `unmatched`. */
  httpRequest: (route: string, method: string, status: number) => void
  pluginsLoaded: (count: number) => void
  forgetPlugin: (plugin: string) => void
  /** A call ran on a new instance because its module cannot be reset in place (sandbox/reset-plan.ts). */
  instanceFallback: (reason: string) => void
  /** extism ABI: one http_request and its outcome ('ok' or a lower-cased error code). */
  pluginHttpRequest: (plugin: string, outcome: string) => void
  /** extism ABI: log lines dropped past a call's log budget. */
  logLinesDropped: (count: number) => void
  registryConnected: (up: boolean) => void
  registrySynced: (seconds: number) => void
  registryResynced: () => void
}

export interface PoolGauges {
  queueSize: () => number
  threads: () => number
  pausedPlugins: () => number
  callsInFlight: () => ReadonlyMap<string, number>
  keptBytes: () => number
}

export function createMetrics (pool: () => PoolGauges | undefined): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const executions = new Counter({
    name: 'plugin_executions_total',
    help: 'Plugin calls by plugin and outcome (ok, or the lower-cased error code).',
    labelNames: ['plugin', 'outcome'] as const,
    registers: [registry]
  })
  const duration = new Histogram({
    name: 'plugin_execution_duration_seconds',
    help: 'Time a plugin call ran in its worker, instantiate to output.',
    labelNames: ['plugin'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry]
  })
  const queueWait = new Histogram({
    name: 'plugin_queue_wait_seconds',
    help: 'Time a call waited for a free worker thread.',
    buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry]
  })
  /* eslint-disable no-new */
  new Gauge({
    name: 'worker_pool_queue_size',
    help: 'Calls waiting for a worker thread.',
    registers: [registry],
    collect () { this.set(pool()?.queueSize() ?? 0) }
  })
  new Gauge({
    name: 'worker_pool_threads',
    help: 'Worker threads in the pool.',
    registers: [registry],
    collect () { this.set(pool()?.threads() ?? 0) }
  })
  new Gauge({
    name: 'worker_kept_bytes',
    help: 'Bytes the worker threads keep between calls (recycled memories and kept instances), as each last reported; bounded per thread.',
    registers: [registry],
    collect () { this.set(pool()?.keptBytes() ?? 0) }
  })
  new Gauge({
    name: 'plugins_paused',
    help: 'Plugins paused by the breaker (they kept running past their deadline).',
    registers: [registry],
    collect () { this.set(pool()?.pausedPlugins() ?? 0) }
  })
  new Gauge({
    name: 'plugin_calls_in_flight',
    help: 'Calls admitted and not yet answered (queued or running), by plugin.',
    labelNames: ['plugin'] as const,
    registers: [registry],
    collect () {
      this.reset()
      const byLabel = new Map<string, number>()
      for (const [plugin, n] of pool()?.callsInFlight() ?? []) {
        const l = label(plugin)
        byLabel.set(l, (byLabel.get(l) ?? 0) + n)
      }
      for (const [plugin, n] of byLabel) this.set({ plugin }, n)
    }
  })
  new Gauge({
    name: 'wasm_plugin_host_build_info',
    help: 'Always 1; the labels say which build runs.',
    labelNames: ['version', 'node'] as const,
    registers: [registry],
    collect () { this.set({ version: VERSION, node: process.versions.node }, 1) }
  })
  /* eslint-enable no-new */
  const httpRequests = new Counter({
    name: 'http_requests_total',
    help: 'HTTP requests answered, by route pattern, method and status (uploads, 401/413/415 included).',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [registry]
  })
  const fallbacks = new Counter({
    name: 'plugin_instance_fallbacks_total',
    help: 'Calls that ran on a new instance because the module cannot be reset in place, by reason.',
    labelNames: ['reason'] as const,
    registers: [registry]
  })
  const terminations = new Counter({
    name: 'worker_terminations_total',
    help: 'Worker threads terminated on purpose, by reason.',
    labelNames: ['reason'] as const,
    registers: [registry]
  })
  const loaded = new Gauge({ name: 'plugins_loaded', help: 'Plugins in the registry.', registers: [registry] })
  const compile = new Histogram({
    name: 'plugin_compile_duration_seconds',
    help: 'Time to compile a plugin module (upload or cache miss).',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30],
    registers: [registry]
  })
  const cacheLookups = new Counter({
    name: 'module_cache_lookups_total',
    help: 'Compiled-module cache lookups by result (hit, or miss: the module was compiled).',
    labelNames: ['result'] as const,
    registers: [registry]
  })
  const cacheBytes = new Gauge({
    name: 'module_cache_bytes',
    help: 'Estimated memory of the cached compiled modules (bounded by MODULE_CACHE_BYTES).',
    registers: [registry]
  })
  const pluginHttpRequests = new Counter({
    name: 'plugin_http_requests_total',
    help: 'Outbound HTTP requests of extism plugins by plugin and outcome (ok, or the lower-cased error code).',
    labelNames: ['plugin', 'outcome'] as const,
    registers: [registry]
  })
  const logDropped = new Counter({
    name: 'plugin_log_lines_dropped_total',
    help: 'Log lines of extism plugins dropped past the 64 KiB a call may log.',
    registers: [registry]
  })
  const connected = new Gauge({
    name: 'registry_connected',
    help: 'Whether the registry can be written: 1 (DATA_DIR always), 0 while the shared registry is unreachable.',
    registers: [registry]
  })
  const sync = new Histogram({
    name: 'registry_sync_seconds',
    help: "From a write's commit on another replica to this replica serving it.",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry]
  })
  const resyncs = new Counter({
    name: 'registry_resyncs_total',
    help: 'Full resyncs of the shared registry (after a lost connection came back).',
    registers: [registry]
  })
  const labelled = new Set<string>()
  const label = (plugin: string): string => {
    if (labelled.has(plugin)) return plugin
    if (labelled.size >= MAX_PLUGIN_LABELS) return OTHER_PLUGINS
    labelled.add(plugin)
    return plugin
  }
  return {
    registry,
    executed (plugin, outcome, seconds) {
      const p = label(plugin)
      executions.inc({ plugin: p, outcome })
      if (seconds !== undefined) duration.observe({ plugin: p }, seconds)
    },
    queueWait: (seconds) => queueWait.observe(seconds),
    terminated: (reason) => terminations.inc({ reason }),
    compiled: (seconds) => compile.observe(seconds),
    moduleCacheLookup: (hit) => cacheLookups.inc({ result: hit ? 'hit' : 'miss' }),
    moduleCacheBytes: (bytes) => cacheBytes.set(bytes),
    httpRequest: (route, method, status) => httpRequests.inc({ route, method, status: String(status) }),
    pluginHttpRequest: (plugin, outcome) => pluginHttpRequests.inc({ plugin: label(plugin), outcome }),
    logLinesDropped: (count) => logDropped.inc(count),
    pluginsLoaded: (count) => loaded.set(count),
    instanceFallback: (reason) => fallbacks.inc({ reason }),
    registryConnected: (up) => connected.set(up ? 1 : 0),
    registrySynced: (seconds) => sync.observe(seconds),
    registryResynced: () => resyncs.inc(),
    forgetPlugin (plugin) {
      if (!labelled.delete(plugin)) return
      duration.remove({ plugin })
      for (const outcome of ['ok', 'capability_denied', 'plugin_error']) pluginHttpRequests.remove({ plugin, outcome })
      // remove() needs every label: find the outcomes this plugin was counted under.
      executions.get().then(({ values }) => {
        for (const v of values) {
          if (v.labels.plugin === plugin && typeof v.labels.outcome === 'string') executions.remove({ plugin, outcome: v.labels.outcome })
        }
      }, () => {})
    }
  }
}
