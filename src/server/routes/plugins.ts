// Plugin administration: upload, replace, list, describe, unload. Uploads are multipart with
// one file part `module` and an optional small text field `manifest`.
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { Config } from '../../config'
import { serviceError } from '../../errors'
import { NAME_PATTERN } from '../../registry/manifest'
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

/** Reads the multipart body: exactly one `module` file, at most one `manifest` field. */
async function readUpload (request: FastifyRequest): Promise<Upload> {
  if (!request.isMultipart()) {
    throw serviceError('UNSUPPORTED_MEDIA_TYPE', ['upload as multipart/form-data with a file part "module" and an optional "manifest" field'])
  }
  let bytes: Buffer | undefined
  let filename: string | undefined
  let manifest: string | undefined
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
      // @fastify/multipart parses a field sent as application/json; take the text either way.
      manifest = typeof part.value === 'string' ? part.value : JSON.stringify(part.value)
    } else {
      throw serviceError('INVALID_REQUEST', [`unexpected field '${part.fieldname}'; only 'manifest' is accepted`])
    }
  }
  if (bytes === undefined) throw serviceError('INVALID_REQUEST', ['missing the file part "module"'])
  return { bytes, manifest, filename }
}

export const pluginRoutes: FastifyPluginAsync<PluginRoutesOptions> = async (app: FastifyInstance, { registry, metrics }) => {
  app.post('/plugins', async (request, reply) => {
    const descriptor = await registry.create(await readUpload(request))
    return reply.code(201).header('location', `/plugins/${descriptor.name}`).send(descriptor)
  })

  app.put<{ Params: { name: string } }>('/plugins/:name', { schema: { params: nameParams } }, async (request) => {
    return registry.replace(request.params.name, await readUpload(request))
  })

  app.get('/plugins', async () => ({ plugins: registry.list() }))

  app.get<{ Params: { name: string } }>('/plugins/:name', { schema: { params: nameParams } }, async (request) => {
    const entry = registry.get(request.params.name)
    if (entry === undefined) throw serviceError('PLUGIN_NOT_FOUND', [request.params.name])
    return entry.descriptor
  })

  app.delete<{ Params: { name: string } }>('/plugins/:name', { schema: { params: nameParams } }, async (request, reply) => {
    await registry.remove(request.params.name)
    metrics.forgetPlugin(request.params.name)
    return reply.code(204).send()
  })
}
