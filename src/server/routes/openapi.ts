// GET /openapi.yaml: the API description shipped with the service, read once at start.
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import type { FastifyPluginAsync } from 'fastify'

export const OPENAPI_FILE = resolve(__dirname, '..', '..', '..', 'openapi.yaml')

export const openapiRoutes: FastifyPluginAsync = async (app) => {
  const text = readFileSync(OPENAPI_FILE, 'utf8')
  app.get('/openapi.yaml', async (_request, reply) => reply.type('application/yaml').send(text))
}
