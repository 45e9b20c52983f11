// POST /plugins/:name/execute: the hot path. The body arrives as raw bytes (any content type)
// and is posted to the worker as it is; JSON is parsed on this thread only when the plugin
// declares an inputSchema or an outputSchema. The worker checks the JSON validity of json-ABI
// input and output off the event loop; its output bytes are moved back and sent as they are.
import { isArrayBuffer } from 'node:util/types'
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import type { Config } from '../../config'
import { isServiceError, serviceError } from '../../errors'
import { pickEntry, wasiSpec } from '../../registry/call'
import { isJson } from '../../sandbox/abi-json'
import { NAME_PATTERN } from '../../registry/manifest'
import type { PluginRegistry } from '../../registry/registry'
import type { WorkerPool } from '../../workers/pool'
import type { Metrics } from '../metrics'
import { extismContentType } from '../extism-calls'
import type { ExtismCalls } from '../extism-calls'

export interface ExecuteRoutesOptions {
  config: Config
  registry: PluginRegistry
  pool: WorkerPool
  metrics: Metrics
  extism: ExtismCalls
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

function parseJson (bytes: Uint8Array, what: string): { ok: true, value: unknown } | { ok: false, message: string } {
  try {
    return { ok: true, value: JSON.parse(utf8.decode(bytes)) }
  } catch (err) {
    return { ok: false, message: `${what} is not valid JSON: ${(err as Error).message}` }
  }
}

/**
 * The body as a Uint8Array that owns its whole ArrayBuffer. Fastify's buffer parser
 * concatenates with Buffer.allocUnsafe: bodies under 4 KiB are views into Node's shared 8 KiB
 * slab, and postMessage serializes a view's whole ArrayBuffer, so a 100-byte body cost an 8 KiB
 * copy and allocation on each side (measured: posting and receiving a task took 46 µs with a
 * slab view, 11 µs with an owned 100-byte buffer). Copying the small ones once is cheaper.
 * (The pool copies the body to the worker rather than moving it: see ExecuteTask.input.)
 */
function ownedBytes (body: unknown): Uint8Array {
  if (!Buffer.isBuffer(body)) return new Uint8Array(0)
  if (body.byteOffset === 0 && body.byteLength === body.buffer.byteLength && isArrayBuffer(body.buffer)) return body
  return new Uint8Array(body)
}

export const executeRoutes: FastifyPluginAsync<ExecuteRoutesOptions> = async (app: FastifyInstance, { config, registry, pool, metrics, extism }) => {
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
    const input = ownedBytes(request.body)
    try {
      const fn = pickEntry(d, request.query.function)
      if (entry.validateInput !== undefined) {
        const parsed = parseJson(input, 'body')
        if (!parsed.ok) throw serviceError('INVALID_INPUT', [parsed.message])
        const problem = entry.validateInput(parsed.value)
        if (problem !== undefined) throw serviceError('INVALID_INPUT', [problem])
      }
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
        wasi: wasiSpec(d, config, registry.volumePath(name)),
        // A key per plugin version: a PUT (new bytes, limits or manifest) gets new instances.
        reuse: d.instance === 'reuse' ? `${d.name}\0${d.sha256}\0${d.updatedAt}` : undefined,
        extism: ext?.task
      }, ext !== undefined ? { onEffects: ext.onEffects } : {})
      if (result.stderr !== undefined) request.log.info({ plugin: name, stderr: result.stderr.slice(-2048) }, 'plugin stderr')
      let contentType = 'application/json'
      if (entry.validateOutput !== undefined) {
        const parsed = parseJson(result.output, 'output')
        if (!parsed.ok) throw serviceError('PLUGIN_INVALID_OUTPUT', [parsed.message])
        const problem = entry.validateOutput(parsed.value)
        if (problem !== undefined) throw serviceError('PLUGIN_INVALID_OUTPUT', [`output fails the outputSchema: ${problem}`])
      } else if (d.abi === 'extism') {
        contentType = extismContentType(result.output, isJson)
      } else if (d.abi === 'wasi' && !isJson(result.output)) {
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
      metrics.executed(name, isServiceError(err) ? err.code.toLowerCase() : 'internal', undefined)
      reply.header('x-plugin-version', d.version).header('server-timing', 'plugin;dur=0')
      throw err
    }
  })
}
