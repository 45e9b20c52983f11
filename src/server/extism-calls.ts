// The main thread's side of an extism call: what the task carries (config, a vars snapshot,
// the log level, the HTTP grant) and what is done with the call's effects when it ends (var
// writes applied, log lines written to pino with the plugin and request id, metrics).
import { isUtf8 } from 'node:buffer'
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config'
import { EXTISM_LIMITS } from '../registry/manifest'
import type { PluginDescriptor } from '../registry/descriptor'
import type { PluginVars } from '../registry/plugin-vars'
import { LOG_LEVELS } from '../sandbox/extism/types'
import type { ExtismEffects, LogLevel } from '../sandbox/extism/types'
import type { ExtismTask } from '../workers/protocol'
import type { Metrics } from './metrics'

export interface ExtismCall {
  task: ExtismTask
  /** Applies the call's effects; passed to pool.execute as its onEffects hook. */
  onEffects: (effects: ExtismEffects) => void
}

export class ExtismCalls {
  readonly #config: Config
  readonly #vars: PluginVars
  readonly #metrics: Metrics
  readonly #httpChannel: string

  constructor (config: Config, vars: PluginVars, metrics: Metrics, httpChannel: string) {
    this.#config = config
    this.#vars = vars
    this.#metrics = metrics
    this.#httpChannel = httpChannel
  }

  /** The task part of one call of `d` (with the manifest's `config`), and its effects hook. */
  prepare (d: PluginDescriptor, config: Readonly<Record<string, string>>, log: Pick<FastifyBaseLogger, LogLevel>, reqId: string): ExtismCall {
    const plugin = d.name
    const snapshot = this.#vars.snapshot(plugin)
    const varBytes = d.limits.varBytes ?? EXTISM_LIMITS.varBytes.default
    const http = d.capabilities.http
    const task: ExtismTask = {
      config,
      vars: snapshot.vars,
      varBytes,
      memoryBytes: d.limits.memoryBytes,
      logLevel: LOG_LEVELS.indexOf(this.#config.pluginLogLevel),
      http: http === undefined
        ? undefined
        : {
            allowedHosts: http.allowedHosts,
            requests: d.limits.httpRequests ?? EXTISM_LIMITS.httpRequests.default,
            responseBytes: d.limits.httpResponseBytes ?? EXTISM_LIMITS.httpResponseBytes.default,
            responseHeaders: http.responseHeaders
          },
      httpChannel: http === undefined ? undefined : this.#httpChannel
    }
    const onEffects = (effects: ExtismEffects): void => {
      const skipped = this.#vars.apply(plugin, snapshot.epoch, effects.varWrites, varBytes)
      if (skipped > 0) log.warn({ plugin, reqId, skipped }, 'plugin var writes skipped: limits.varBytes reached by concurrent calls')
      for (const line of effects.logs) log[line.level]({ plugin, reqId }, line.msg)
      if (effects.logsDropped > 0) this.#metrics.logLinesDropped(effects.logsDropped)
      for (const outcome of effects.http) this.#metrics.pluginHttpRequest(plugin, outcome)
    }
    return { task, onEffects }
  }
}

/** The content type of an extism plugin's output: JSON, else UTF-8 text, else bytes. */
export function extismContentType (output: Uint8Array, isJson: (b: Uint8Array) => boolean): string {
  if (isJson(output)) return 'application/json'
  return isUtf8(output) ? 'text/plain; charset=utf-8' : 'application/octet-stream'
}
