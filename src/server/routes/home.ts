// GET /: where to start. Open like the health routes (it holds nothing but these paths), so
// an author who opens the service's address in a browser finds the API description.
import type { FastifyPluginAsync } from 'fastify'

export const homeRoutes: FastifyPluginAsync = async (app) => {
  app.get('/', async () => ({
    service: 'wasm-plugin-host',
    docs: '/openapi.yaml',
    plugins: '/plugins',
    health: '/healthz',
    ready: '/readyz',
    metrics: '/metrics'
  }))
}
