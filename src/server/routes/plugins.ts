// Plugin administration: upload, replace, list, describe, unload. Uploads are multipart with
// one file part `module` and an optional small text field `manifest`.
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { MultipartFile } from '@fastify/multipart'
import type { Config } from '../../config'
import { isServiceError, serviceError } from '../../errors'
import { NAME_PATTERN } from '../../registry/manifest'
import type { IfMatch } from '../../registry/backend'
import type { PluginRegistry, Upload } from '../../registry/registry'
import { jsonListStream } from '../json-list'
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

/** What to send, said by every 415 of the upload routes. */
const HOW_TO_UPLOAD = 'send the module as multipart/form-data (curl -F module=@plugin.wasm [-F manifest=@manifest.json]) ' +
  "or as the raw body (curl -T plugin.wasm -H 'content-type: application/wasm', with ?name= on POST /plugins)"

/** Reads a `manifest` sent as a file part (curl -F manifest=@manifest.json), at most MANIFEST_FIELD_BYTES. */
async function readManifestFile (part: MultipartFile): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of part.file as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MANIFEST_FIELD_BYTES) {
      part.file.resume()
      throw serviceError('PAYLOAD_TOO_LARGE', [`manifest is over ${MANIFEST_FIELD_BYTES} bytes`])
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}

/**
 * Reads the multipart body: exactly one `module` file, at most one `manifest`, as a text
 * field or as a file part (the natural curl, -F manifest=@manifest.json).
 */
async function readMultipart (request: FastifyRequest): Promise<Upload> {
  let bytes: Buffer | undefined
  let filename: string | undefined
  let manifest: string | undefined
  try {
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        if (part.fieldname === 'manifest' && manifest === undefined) {
          manifest = await readManifestFile(part)
          continue
        }
        if (part.fieldname !== 'module' || bytes !== undefined) {
          part.file.resume()
          throw serviceError('INVALID_REQUEST', [`unexpected file part '${part.fieldname}'; send one file part named 'module' (and optionally one named 'manifest')`])
        }
        bytes = await part.toBuffer()
        filename = part.filename
      } else if (part.fieldname === 'manifest' && manifest === undefined) {
        if (part.valueTruncated) throw serviceError('PAYLOAD_TOO_LARGE', [`manifest is over ${MANIFEST_FIELD_BYTES} bytes`])
        // @fastify/multipart parses a field sent as application/json (refusing poisoned keys,
        // FST_INVALID_JSON_FIELD_ERROR); take it back as text either way.
        manifest = part.mimetype === 'application/json' ? JSON.stringify(part.value) : String(part.value)
      } else {
        throw serviceError('INVALID_REQUEST', [`unexpected field '${part.fieldname}'; only 'module' and 'manifest' are accepted`])
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
 * The upload in either form: multipart, or the module as the raw body. A raw body is taken
 * whatever its content type (curl --data-binary sends x-www-form-urlencoded, -T none): the
 * bytes are checked as a module, which names what is wrong with them (WAT text, say).
 */
async function readUpload (request: FastifyRequest): Promise<Upload> {
  if (request.isMultipart()) return readMultipart(request)
  const body = request.body
  if (Buffer.isBuffer(body) && body.length > 0) return { bytes: body }
  throw serviceError('UNSUPPORTED_MEDIA_TYPE', [`no module in this ${request.headers['content-type'] ?? 'untyped'} body: ${HOW_TO_UPLOAD}`])
}

const createQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { name: { type: 'string', pattern: NAME_PATTERN } }
} as const

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

export const pluginRoutes: FastifyPluginAsync<PluginRoutesOptions> = async (app: FastifyInstance, { config, registry, metrics }) => {
  // Encapsulated: only these routes take a raw body, the module itself, of any content type
  // but multipart (the multipart plugin's parser is more specific) and JSON (refused below).
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: config.maxUploadBytes }, (_request, body, done) => {
    done(null, body)
  })

  app.post<{ Querystring: { name?: string } }>('/plugins', { schema: { querystring: createQuery }, bodyLimit: config.maxUploadBytes }, async (request, reply) => {
    const upload = await readUpload(request)
    const descriptor = await registry.create({ ...upload, ...(request.query.name !== undefined ? { name: request.query.name } : {}) })
    return reply.code(201).header('location', `/plugins/${descriptor.name}`).header('etag', etag(descriptor.sha256)).send(descriptor)
  })

  app.put<{ Params: { name: string } }>('/plugins/:name', { schema: { params: nameParams }, bodyLimit: config.maxUploadBytes }, async (request, reply) => {
    const ifMatch = parseIfMatch(request.headers['if-match'])
    const descriptor = await registry.replace(request.params.name, await readUpload(request), { ifMatch })
    return reply.header('etag', etag(descriptor.sha256)).send(descriptor)
  })

  // Streamed, one descriptor at a time: never one string of every descriptor at once.
  app.get('/plugins', async (_request, reply) => reply.type('application/json').send(jsonListStream('plugins', registry.list())))

  app.get<{ Params: { name: string } }>('/plugins/:name', { schema: { params: nameParams } }, async (request, reply) => {
    const entry = registry.get(request.params.name)
    if (entry === undefined) throw serviceError('PLUGIN_NOT_FOUND', [request.params.name])
    return reply.header('etag', etag(entry.descriptor.sha256)).send(entry.descriptor)
  })

  // The module as uploaded (admin only, like every route but execute): what runs is what the
  // author can fetch back, byte for byte.
  app.get<{ Params: { name: string } }>('/plugins/:name/module', { schema: { params: nameParams } }, async (request, reply) => {
    const { name } = request.params
    const { bytes, sha256 } = await registry.moduleBytes(name)
    return reply
      .type('application/wasm')
      .header('etag', etag(sha256))
      .header('content-disposition', `attachment; filename="${name}.wasm"`)
      .send(bytes)
  })

  app.delete<{ Params: { name: string } }>('/plugins/:name', { schema: { params: nameParams } }, async (request, reply) => {
    await registry.remove(request.params.name, { ifMatch: parseIfMatch(request.headers['if-match']) })
    metrics.forgetPlugin(request.params.name)
    return reply.code(204).send()
  })
}
