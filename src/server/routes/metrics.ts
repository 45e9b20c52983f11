// GET /metrics: Prometheus text format from the app's own registry.
import type { FastifyPluginAsync } from 'fastify'
import type { Metrics } from '../metrics'

export const metricsRoutes: FastifyPluginAsync<{ metrics: Metrics }> = async (app, { metrics }) => {
  app.get('/metrics', async (_request, reply) => {
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })
}
