// buildApp(config): all the wiring, visible in one place. It never listens; main.ts does.
import Fastify from 'fastify'
import type { FastifyInstance } from 'fastify'
import multipart from '@fastify/multipart'
import { redactUrl } from './config'
import type { Config } from './config'
import { serviceError } from './errors'
import { PluginRegistry } from './registry/registry'
import { ModuleCache } from './registry/module-cache'
import type { RegistryBackend } from './registry/backend'
import { FsBackend } from './registry/fs-backend'
import { PgBackend } from './registry/pg-backend'
import { PluginStore } from './registry/store'
import { applyV8SandboxFlags } from './sandbox/v8-flags'
import { installAuth } from './server/auth'
import { clientErrorHandler, frameworkErrorHandler, installErrorHandler } from './server/error-handler'
import { createMetrics } from './server/metrics'
import { executeRoutes } from './server/routes/execute'
import { healthRoutes } from './server/routes/health'
import { homeRoutes } from './server/routes/home'
import { metricsRoutes } from './server/routes/metrics'
import { openapiRoutes } from './server/routes/openapi'
import { MANIFEST_FIELD_BYTES, pluginRoutes } from './server/routes/plugins'
import { WorkerPool } from './workers/pool'
import { randomUUID } from 'node:crypto'
import { PluginVars } from './registry/plugin-vars'
import { ExtismCalls } from './server/extism-calls'
import { OutboundHttp } from './server/outbound-http'
import { serveHttpBridge } from './workers/http-bridge'

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

  // The longest a request may legitimately sit silent on its socket: a call waits in the
  // queue, then runs up to its deadline, before the first byte of the answer is written.
  const longestCallMs = config.queueTimeoutMs + config.maxTimeoutMs
  const app = Fastify({
    logger: options.logger ?? { level: config.logLevel },
    requestIdHeader: 'x-request-id',
    // fastify's requestTimeout defaults to 0 (none): a slow client could hold a socket forever.
    // Node enforces it (and headersTimeout) with a periodic sweep, by default every 30 s,
    // which would let a trickling client overstay a short timeout by that much: sweep at a
    // quarter of the shorter timeout instead (cheap: it walks the connections mid-request).
    requestTimeout: config.requestTimeoutMs,
    http: {
      requestTimeout: config.requestTimeoutMs,
      headersTimeout: config.headersTimeoutMs,
      connectionsCheckingInterval: Math.max(250, Math.min(30_000, Math.floor(config.headersTimeoutMs / 4)))
    },
    // Socket inactivity: never shorter than a call may run, or a slow plugin's answer would be
    // cut off by a silent socket destroy.
    connectionTimeout: Math.max(config.requestTimeoutMs, longestCallMs) + 10_000,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    forceCloseConnections: 'idle',
    bodyLimit: 1024 * 1024,
    // While draining, a request still arriving on an open connection is refused by the hook
    // below, in our shape (fastify's own 503 carries no code).
    return503OnClosing: false,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    routerOptions: { maxParamLength: 200 },
    // Errors raised before a route or a request exists, answered in our shape too.
    frameworkErrors: frameworkErrorHandler,
    clientErrorHandler
  })
  let closing = false
  app.addHook('preClose', async () => { closing = true })
  app.addHook('onRequest', async () => {
    if (closing) throw serviceError('NOT_READY', ['shutting down'], { retryAfterSeconds: 1 })
  })
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id)
    // While draining, answers close their connection: a keep-alive client would otherwise
    // hold the server open until keepAliveTimeout.
    if (closing) reply.header('connection', 'close')
  })
  app.addHook('onResponse', async (request, reply) => {
    // The route's pattern, never the raw URL: a label per plugin name or typo would be unbounded.
    metrics.httpRequest(request.routeOptions.url ?? 'unmatched', request.method, reply.statusCode)
    // Answered before the whole body arrived (an upload refused at a limit or at a bad part,
    // with the body piped into the multipart parser): node only drains bodies nobody read,
    // so the rest would sit unread in front of the next request on this keep-alive
    // connection, which would hang until the request timeout. Drain it as node would.
    // (Closing instead makes clients that are still sending lose the answer to EPIPE.)
    if (!request.raw.complete) {
      request.raw.unpipe()
      request.raw.resume()
    }
  })

  // The gauges read the pool lazily: it is created below, after the registry has loaded.
  const metrics = createMetrics(() => ({
    queueSize: () => pool.queueSize,
    threads: () => pool.threads,
    pausedPlugins: () => pool.pausedPlugins,
    callsInFlight: () => pool.callsInFlight,
    keptBytes: () => pool.keptBytes
  }))
  const store = new PluginStore(config.dataDir, (msg, err) => app.log.warn({ err }, msg))
  const cache = new ModuleCache(config.moduleCacheBytes, {
    onCompile: metrics.compiled,
    onLookup: metrics.moduleCacheLookup,
    onBytes: metrics.moduleCacheBytes
  })
  // The one place that knows which registry runs: DATA_DIR, or PostgreSQL shared by replicas.
  const backend: RegistryBackend = config.registryUrl === undefined
    ? new FsBackend(store)
    : new PgBackend({ url: config.registryUrl, store, log: (msg, err) => app.log.warn({ err }, msg) })
  // A replaced or deleted plugin starts with a closed breaker (pool is created below).
  // Extism vars live on this thread, per plugin; a replace or delete clears them.
  const vars = new PluginVars()
  const registry = new PluginRegistry(config, store, cache, {
    onChange: metrics.pluginsLoaded,
    onRetire: (name) => { pool.forget(name); vars.clear(name) },
    onSync: metrics.registrySynced,
    onConnected: metrics.registryConnected,
    onResync: metrics.registryResynced,
    onError: (msg, err) => app.log.warn({ err }, msg)
  }, backend)
  app.log.info({ registry: config.registryUrl === undefined ? `DATA_DIR ${config.dataDir}` : redactUrl(config.registryUrl) }, 'loading the registry')
  try {
    await registry.load((msg, err) => app.log.warn({ err }, msg))
  } catch (err) {
    await registry.close()
    throw err
  }

  const pool = new WorkerPool({
    workers: config.workers,
    queueMax: config.queueMax,
    queueTimeoutMs: config.queueTimeoutMs,
    pluginConcurrency: config.pluginConcurrency,
    breakerThreshold: config.breakerThreshold,
    breakerCooldownMs: config.breakerCooldownMs,
    idleReleaseMs: config.idleReleaseMs,
    ...(options.workerFile !== undefined ? { workerFile: options.workerFile } : {})
  }, { onTermination: metrics.terminated, onQueueWait: metrics.queueWait })
  // Extism plugins' outbound HTTP: workers post requests on this app's own channel.
  const outbound = new OutboundHttp({ operatorHosts: config.allowedHosts, allowPrivate: config.httpAllowPrivate })
  const httpChannel = `wph-http-${randomUUID()}`
  const closeBridge = serveHttpBridge(httpChannel, async (m) => await outbound.request({ ...m.request, allowedHosts: m.allowedHosts, responseBytes: m.responseBytes, deadline: m.deadline }))
  const extism = new ExtismCalls(config, vars, metrics, httpChannel)
  app.addHook('onClose', async () => {
    await pool.close()
    closeBridge()
    await outbound.close()
    await registry.close()
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
    installAuth(app, { admin: config.authToken, execute: config.executeTokens, metrics: config.metricsToken })
    await app.register(multipart, {
      limits: { fileSize: config.maxUploadBytes, files: 2, fields: 1, parts: 2, fieldSize: MANIFEST_FIELD_BYTES, headerPairs: 100 },
      throwFileSizeLimit: true
    })
    await app.register(healthRoutes, {
      ready: () => closing
        ? { ready: false, reason: 'shutting down' }
        : !registry.synced
            ? { ready: false, reason: 'loading the registry' }
            : pool.threads > 0 ? { ready: true, reason: '' } : { ready: false, reason: 'starting worker threads' }
    })
    await app.register(metricsRoutes, { metrics })
    await app.register(openapiRoutes)
    await app.register(homeRoutes)
    await app.register(pluginRoutes, { config, registry, metrics })
    await app.register(executeRoutes, { config, registry, pool, metrics, extism })
  }
}
