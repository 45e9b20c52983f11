// POST /plugins/:name/execute: the hot path. The body arrives as raw bytes (any content type)
// and is passed to the worker as it is; JSON is parsed on this thread only when the plugin
// declares an inputSchema. The worker checks JSON validity off the event loop.
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import type { Config } from '../../config'
import { isServiceError, serviceError } from '../../errors'
import { pickEntry, wasiSpec } from '../../registry/call'
import { NAME_PATTERN } from '../../registry/manifest'
import type { PluginRegistry } from '../../registry/registry'
import type { WorkerPool } from '../../workers/pool'
import type { Metrics } from '../metrics'

export interface ExecuteRoutesOptions {
  config: Config
  registry: PluginRegistry
  pool: WorkerPool
  metrics: Metrics
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

function parseJson (bytes: Uint8Array, what: string): { ok: true, value: unknown } | { ok: false, message: string } {
  try {
    return { ok: true, value: JSON.parse(utf8.decode(bytes)) }
  } catch (err) {
    return { ok: false, message: `${what} is not valid JSON: ${(err as Error).message}` }
  }
}

export const executeRoutes: FastifyPluginAsync<ExecuteRoutesOptions> = async (app: FastifyInstance, { config, registry, pool, metrics }) => {
  // Encapsulated: only this route sees bodies as raw bytes, of any content type.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: config.maxInputBytes }, (_request, body, done) => {
    done(null, body)
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
    const input: Uint8Array = Buffer.isBuffer(request.body) ? request.body : new Uint8Array(0)
    try {
      const fn = pickEntry(d, request.query.function)
      if (entry.validateInput !== undefined) {
        const parsed = parseJson(input, 'body')
        if (!parsed.ok) throw serviceError('INVALID_INPUT', [parsed.message])
        const problem = entry.validateInput(parsed.value)
        if (problem !== undefined) throw serviceError('INVALID_INPUT', [problem])
      }
      const result = await pool.execute({
        plugin: name,
        module: await entry.module(),
        abi: d.abi,
        entry: fn,
        input,
        memory: entry.memory,
        timeoutMs: d.limits.timeoutMs,
        outputBytes: d.limits.outputBytes,
        wasi: wasiSpec(d, config, registry.volumePath(name))
      })
      if (result.stderr !== undefined) request.log.info({ plugin: name, stderr: result.stderr.slice(-2048) }, 'plugin stderr')
      let contentType = 'application/json'
      if (d.abi === 'wasi' || entry.validateOutput !== undefined) {
        const parsed = parseJson(result.output, 'output')
        if (entry.validateOutput !== undefined) {
          if (!parsed.ok) throw serviceError('PLUGIN_INVALID_OUTPUT', [parsed.message])
          const problem = entry.validateOutput(parsed.value)
          if (problem !== undefined) throw serviceError('PLUGIN_INVALID_OUTPUT', [`output fails the outputSchema: ${problem}`])
        }
        if (!parsed.ok) contentType = 'text/plain; charset=utf-8'
      }
      metrics.executed(name, 'ok', result.durationMs / 1000)
      return reply
        .header('server-timing', `plugin;dur=${result.durationMs.toFixed(3)}`)
        .header('x-plugin-version', d.version)
        .type(contentType)
        .send(Buffer.from(result.output.buffer, result.output.byteOffset, result.output.byteLength))
    } catch (err) {
      metrics.executed(name, isServiceError(err) ? err.code.toLowerCase() : 'internal', undefined)
      reply.header('x-plugin-version', d.version).header('server-timing', 'plugin;dur=0')
      throw err
    }
  })
}
