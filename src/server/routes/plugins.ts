// Plugin administration: upload, replace, list, describe, unload. Uploads are multipart with
// one file part `module` and an optional small text field `manifest`.
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { Config } from '../../config'
import { isServiceError, serviceError } from '../../errors'
import { NAME_PATTERN } from '../../registry/manifest'
import type { IfMatch } from '../../registry/backend'
import type { PluginRegistry, Upload } from '../../registry/registry'
import type { Metrics } from '../metrics'

export interface PluginRoutesOptions {
  config: Config
  registry: PluginRegistry
  metrics: Metrics
}

export const MANIFEST_FIELD_BYTES = 64 * 1024

const nameParams = {
  type: 'object',
  required: ['name'],
  properties: { name: { type: 'string', pattern: NAME_PATTERN } }
} as const

/**
 * Refuses a manifest that would poison a prototype if some code ever merged it into an
 * object: a `__proto__` key, or a `constructor` holding a `prototype` (fastify's own rule for
 * JSON bodies, which multipart fields do not go through). Text that is not JSON is left to
 * parseManifest, which names the problem.
 */
function refusePoisonedManifest (text: string): void {
  try {
    JSON.parse(text, function (key, value: unknown) {
      if (key === '__proto__' || (key === 'constructor' && typeof value === 'object' && value !== null && Object.hasOwn(value, 'prototype'))) {
        throw serviceError('INVALID_MANIFEST', [`the key '${key}' is not allowed (prototype poisoning)`])
      }
      return value
    })
  } catch (err) {
    if (isServiceError(err)) throw err
  }
}

/** Reads the multipart body: exactly one `module` file, at most one `manifest` field. */
async function readUpload (request: FastifyRequest): Promise<Upload> {
  if (!request.isMultipart()) {
    throw serviceError('UNSUPPORTED_MEDIA_TYPE', ['upload as multipart/form-data with a file part "module" and an optional "manifest" field'])
  }
  let bytes: Buffer | undefined
  let filename: string | undefined
  let manifest: string | undefined
  try {
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        if (part.fieldname !== 'module' || bytes !== undefined) {
          part.file.resume()
          throw serviceError('INVALID_REQUEST', [`unexpected file part '${part.fieldname}'; send one file part named 'module'`])
        }
        bytes = await part.toBuffer()
        filename = part.filename
      } else if (part.fieldname === 'manifest' && manifest === undefined) {
        if (part.valueTruncated) throw serviceError('PAYLOAD_TOO_LARGE', [`manifest is over ${MANIFEST_FIELD_BYTES} bytes`])
        // @fastify/multipart parses a field sent as application/json (refusing poisoned keys,
        // FST_INVALID_JSON_FIELD_ERROR); take it back as text either way.
        manifest = part.mimetype === 'application/json' ? JSON.stringify(part.value) : String(part.value)
      } else {
        throw serviceError('INVALID_REQUEST', [`unexpected field '${part.fieldname}'; only 'manifest' is accepted`])
      }
    }
  } catch (err) {
    // Errors with a status are ours or the multipart plugin's (limits, JSON fields). The
    // multipart parser reports what it cannot read in the client's bytes (no boundary, a body
    // that ends mid-part, a malformed part header) as plain Errors: the client's mistake, not
    // a 500. Anything else (a TypeError...) would be a bug of ours and stays one.
    if (err instanceof Error && Object.getPrototypeOf(err) === Error.prototype && !('statusCode' in err)) {
      throw serviceError('INVALID_REQUEST', [`malformed multipart body: ${err.message}`])
    }
    throw err
  }
  if (bytes === undefined) throw serviceError('INVALID_REQUEST', ['missing the file part "module"'])
  if (manifest !== undefined) refusePoisonedManifest(manifest)
  return { bytes, manifest, filename }
}

/**
 * `If-Match: "<sha256>"` (a list, or `*`), as RFC 9110 writes entity tags. Weak tags (`W/`)
 * never match (strong comparison); a value that names no sha256 is the client's mistake.
 */
export function parseIfMatch (header: string | string[] | undefined): IfMatch | undefined {
  if (header === undefined) return undefined
  const text = Array.isArray(header) ? header.join(',') : header
  if (text.trim() === '*') return '*'
  const tags: string[] = []
  for (const item of text.split(',').map(s => s.trim()).filter(Boolean)) {
    const m = /^(W\/)?"([^"]*)"$/.exec(item)
    if (m === null) throw serviceError('INVALID_REQUEST', [`If-Match: '${item.slice(0, 80)}' is not a quoted sha256 ("<sha256>") or *`])
    if (m[1] === undefined) tags.push(m[2] as string)
  }
  return tags
}

const etag = (sha256: string): string => `"${sha256}"`

export const pluginRoutes: FastifyPluginAsync<PluginRoutesOptions> = async (app: FastifyInstance, { registry, metrics }) => {
  app.post('/plugins', async (request, reply) => {
    const descriptor = await registry.create(await readUpload(request))
    return reply.code(201).header('location', `/plugins/${descriptor.name}`).header('etag', etag(descriptor.sha256)).send(descriptor)
  })

  app.put<{ Params: { name: string } }>('/plugins/:name', { schema: { params: nameParams } }, async (request, reply) => {
    const ifMatch = parseIfMatch(request.headers['if-match'])
    const descriptor = await registry.replace(request.params.name, await readUpload(request), { ifMatch })
    return reply.header('etag', etag(descriptor.sha256)).send(descriptor)
  })

  app.get('/plugins', async () => ({ plugins: registry.list() }))

  app.get<{ Params: { name: string } }>('/plugins/:name', { schema: { params: nameParams } }, async (request, reply) => {
    const entry = registry.get(request.params.name)
    if (entry === undefined) throw serviceError('PLUGIN_NOT_FOUND', [request.params.name])
    return reply.header('etag', etag(entry.descriptor.sha256)).send(entry.descriptor)
  })

  app.delete<{ Params: { name: string } }>('/plugins/:name', { schema: { params: nameParams } }, async (request, reply) => {
    await registry.remove(request.params.name, { ifMatch: parseIfMatch(request.headers['if-match']) })
    metrics.forgetPlugin(request.params.name)
    return reply.code(204).send()
  })
}
