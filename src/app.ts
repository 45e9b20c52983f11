// buildApp(config): all the wiring, visible in one place. It never listens; main.ts does.
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import multipart from '@fastify/multipart'
import type { Config } from './config'
import { PluginRegistry } from './registry/registry'
import { ModuleCache } from './registry/module-cache'
import { PluginStore } from './registry/store'
import { applyV8SandboxFlags } from './sandbox/v8-flags'
import { installAuth } from './server/auth'
import { installErrorHandler } from './server/error-handler'
import { createMetrics } from './server/metrics'
import { executeRoutes } from './server/routes/execute'
import { healthRoutes } from './server/routes/health'
import { metricsRoutes } from './server/routes/metrics'
import { openapiRoutes } from './server/routes/openapi'
import { MANIFEST_FIELD_BYTES, pluginRoutes } from './server/routes/plugins'
import { WorkerPool } from './workers/pool'

export interface AppOptions {
  /** pino options or false; tests pass `false`. */
  logger?: boolean | Record<string, unknown>
  /** Worker entry override (tests of the pool itself). */
  workerFile?: string
}

export interface App {
  fastify: FastifyInstance
  registry: PluginRegistry
  pool: WorkerPool
}

export async function buildApp (config: Config, options: AppOptions = {}): Promise<FastifyInstance> {
  // Before the first module is compiled: the tier choice that lets termination stop any loop.
  applyV8SandboxFlags(config.maxMemoryBytes, config.maxTableElements)

  const app = Fastify({
    logger: options.logger ?? { level: config.logLevel },
    requestIdHeader: 'x-request-id',
    // fastify's requestTimeout defaults to 0 (none): a slow client could hold a socket forever.
    requestTimeout: config.requestTimeoutMs,
    connectionTimeout: config.requestTimeoutMs + 10_000,
    keepAliveTimeout: 72_000,
    forceCloseConnections: 'idle',
    bodyLimit: 1024 * 1024,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    routerOptions: { maxParamLength: 200 }
  })
  app.server.headersTimeout = 30_000
  let closing = false
  app.addHook('preClose', async () => { closing = true })
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id)
    // While draining, answers close their connection: a keep-alive client would otherwise
    // hold the server open until keepAliveTimeout.
    if (closing) reply.header('connection', 'close')
  })

  // The gauges read the pool lazily: it is created below, after the registry has loaded.
  const metrics = createMetrics(() => ({ queueSize: () => pool.queueSize, threads: () => pool.threads }))
  const store = new PluginStore(config.dataDir)
  const cache = new ModuleCache(config.moduleCacheSize, { onCompile: metrics.compiled })
  const registry = new PluginRegistry(config, store, cache, { onChange: metrics.pluginsLoaded })
  await registry.load((msg, err) => app.log.warn({ err }, msg))

  const pool = new WorkerPool({
    workers: config.workers,
    queueMax: config.queueMax,
    queueTimeoutMs: config.queueTimeoutMs,
    pluginConcurrency: config.pluginConcurrency,
    breakerThreshold: config.breakerThreshold,
    breakerCooldownMs: config.breakerCooldownMs,
    ...(options.workerFile !== undefined ? { workerFile: options.workerFile } : {})
  }, { onTermination: metrics.terminated, onQueueWait: metrics.queueWait })
  app.addHook('onClose', async () => {
    await pool.close()
  })

  try {
    await registerRoutes()
  } catch (err) {
    await app.close()
    throw err
  }
  app.decorate('registry', registry)
  app.decorate('pool', pool)
  return app

  async function registerRoutes (): Promise<void> {
    installErrorHandler(app)
    installAuth(app, config.authToken, config.executeTokens)
    await app.register(multipart, {
      limits: { fileSize: config.maxUploadBytes, files: 1, fields: 1, parts: 2, fieldSize: MANIFEST_FIELD_BYTES, headerPairs: 100 },
      throwFileSizeLimit: true
    })
    await app.register(healthRoutes, {
      ready: () => closing
        ? { ready: false, reason: 'shutting down' }
        : pool.threads > 0 ? { ready: true, reason: '' } : { ready: false, reason: 'starting worker threads' }
    })
    await app.register(metricsRoutes, { metrics })
    await app.register(openapiRoutes)
    await app.register(pluginRoutes, { config, registry, metrics })
    await app.register(executeRoutes, { config, registry, pool, metrics })
  }
}
