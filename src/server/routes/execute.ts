// POST /plugins/:name/execute: the hot path. The body arrives as raw bytes (any content type),
// read into the buffer the worker reads (body-bytes.ts), and is posted to the worker as it is;
// nothing of it is parsed on this thread. The worker checks the JSON validity of json-ABI input and output, and validates input and output against
// the plugin's schemas, off the event loop and within the call's deadline; its output bytes are
// moved back and sent as they are.
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import type { Config } from '../../config'
import { isServiceError, serviceError } from '../../errors'
import type { ServiceError } from '../../errors'
import { pickEntry, usesPluginVolume, wasiSpec } from '../../registry/call'
import { isJson } from '../../sandbox/abi-json'
import { NAME_PATTERN } from '../../registry/manifest'
import type { PluginDescriptor, PluginRegistry } from '../../registry/registry'
import type { WorkerPool } from '../../workers/pool'
import type { Metrics } from '../metrics'
import { extismContentType } from '../extism-calls'
import { readBodyBytes } from '../body-bytes'
import type { ExtismCalls } from '../extism-calls'

export interface ExecuteRoutesOptions {
  config: Config
  registry: PluginRegistry
  pool: WorkerPool
  metrics: Metrics
  extism: ExtismCalls
}

/** The tail of a plugin's stderr that goes into the log line. */
const LOG_STDERR_CHARS = 2048

/** Names one version of a plugin: the key a worker keeps an instance under. */
function instanceKey (d: PluginDescriptor): string {
  return `${d.name}\0${d.sha256}\0${d.updatedAt}`
}

export const executeRoutes: FastifyPluginAsync<ExecuteRoutesOptions> = async (app: FastifyInstance, { config, registry, pool, metrics, extism }) => {
  // Encapsulated: only this route sees bodies as raw bytes, of any content type.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (request, payload, done) => {
    readBodyBytes(payload, request.headers['content-length'], config.maxInputBytes, done)
  })

  app.post<{ Params: { name: string }, Querystring: { function?: string } }>('/plugins/:name/execute', {
    bodyLimit: config.maxInputBytes,
    schema: {
      params: { type: 'object', required: ['name'], properties: { name: { type: 'string', pattern: NAME_PATTERN } } },
      querystring: { type: 'object', additionalProperties: false, properties: { function: { type: 'string', minLength: 1, maxLength: 256 } } }
    }
  }, async (request, reply) => {
    const { name } = request.params
    const entry = registry.get(name)
    if (entry === undefined) throw serviceError('PLUGIN_NOT_FOUND', [name])
    const d = entry.descriptor
    const input = request.body instanceof Uint8Array ? request.body : new Uint8Array(0)
    try {
      const fn = pickEntry(d, request.query.function)
      if (d.instance !== 'reuse' && entry.reset.mode === 'new-instance') metrics.instanceFallback(entry.reset.reason)
      const ext = d.abi === 'extism' ? extism.prepare(d, entry.config, request.log, request.id) : undefined
      const result = await pool.execute({
        plugin: name,
        module: await entry.module(),
        abi: d.abi,
        entry: fn,
        input,
        memory: entry.memory,
        timeoutMs: d.limits.timeoutMs,
        outputBytes: d.limits.outputBytes,
        wasi: wasiSpec(d, config, registry.volumePath(name), usesPluginVolume(d) ? await registry.volumeQuota(name) : undefined),
        // A key per plugin version: a PUT (new bytes, limits or manifest) gets new instances.
        reuse: d.instance === 'reuse' ? instanceKey(d) : undefined,
        reset: d.instance !== 'reuse' && entry.reset.mode === 'reset' ? instanceKey(d) : undefined,
        inputSchema: entry.inputSchema,
        outputSchema: entry.outputSchema,
        extism: ext?.task
      }, ext !== undefined ? { onEffects: ext.onEffects } : {})
      if (result.stderr !== undefined) request.log.info({ plugin: name, stderr: result.stderr.slice(-LOG_STDERR_CHARS) }, 'plugin stderr')
      let contentType = 'application/json'
      // Output the worker validated against an outputSchema is JSON.
      if (entry.outputSchema === undefined && d.abi === 'extism') {
        contentType = extismContentType(result.output, isJson)
      } else if (entry.outputSchema === undefined && d.abi === 'wasi' && !isJson(result.output)) {
        // For the content type only: a validating scan, nothing decoded or built (0.3 µs for
        // 100 bytes, vs 0.6-1 µs for decode + JSON.parse; 125 vs 420 µs for 64 KiB of records).
        contentType = 'text/plain; charset=utf-8'
      }
      metrics.executed(name, 'ok', result.durationMs / 1000)
      return reply
        .header('server-timing', `plugin;dur=${result.durationMs.toFixed(3)}`)
        .header('x-plugin-version', d.version)
        .type(contentType)
        .send(Buffer.from(result.output.buffer, result.output.byteOffset, result.output.byteLength))
    } catch (err) {
      // A plugin that exited or trapped usually said why on stderr: the log keeps it too.
      const stderr = isServiceError(err) ? err.details?.stderr : undefined
      if (typeof stderr === 'string' && stderr !== '') {
        request.log.info({ plugin: name, code: (err as ServiceError).code, stderr: stderr.slice(-LOG_STDERR_CHARS) }, 'plugin stderr')
      }
      metrics.executed(name, isServiceError(err) ? err.code.toLowerCase() : 'internal', undefined)
      reply.header('x-plugin-version', d.version).header('server-timing', 'plugin;dur=0')
      throw err
    }
  })
}
