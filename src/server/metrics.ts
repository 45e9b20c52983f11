// The service's Prometheus metrics. Names and labels are part of the API (DESIGN.md).
// A per-app registry, so two apps in one process (tests) never share series.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

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
  pluginsLoaded: (count: number) => void
  forgetPlugin: (plugin: string) => void
  registryConnected: (up: boolean) => void
  registrySynced: (seconds: number) => void
  registryResynced: () => void
}

export interface PoolGauges { queueSize: () => number, threads: () => number }

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
  /* eslint-enable no-new */
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
    pluginsLoaded: (count) => loaded.set(count),
    registryConnected: (up) => connected.set(up ? 1 : 0),
    registrySynced: (seconds) => sync.observe(seconds),
    registryResynced: () => resyncs.inc(),
    forgetPlugin (plugin) {
      if (!labelled.delete(plugin)) return
      duration.remove({ plugin })
      // remove() needs every label: find the outcomes this plugin was counted under.
      executions.get().then(({ values }) => {
        for (const v of values) {
          if (v.labels.plugin === plugin && typeof v.labels.outcome === 'string') executions.remove({ plugin, outcome: v.labels.outcome })
        }
      }, () => {})
    }
  }
}
