// Liveness (the process answers) and readiness (registry loaded, worker threads up).
import type { FastifyPluginAsync } from 'fastify'
import { serviceError } from '../../errors'

export interface HealthRoutesOptions {
  ready: () => { ready: boolean, reason: string }
}

export const healthRoutes: FastifyPluginAsync<HealthRoutesOptions> = async (app, { ready }) => {
  app.get('/healthz', async () => ({ status: 'ok' }))
  app.get('/readyz', async () => {
    const state = ready()
    if (!state.ready) throw serviceError('NOT_READY', [state.reason])
    return { status: 'ready' }
  })
}
