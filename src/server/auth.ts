// Bearer-token authentication. The admin token (AUTH_TOKEN) may do everything; execute
// tokens (EXECUTE_TOKENS) may only call POST /plugins/:name/execute; the metrics token
// (METRICS_TOKEN) may only read /metrics, which it closes to everyone else but the admin.
// Tokens are compared through their SHA-256 digests with timingSafeEqual: constant time
// whatever their length.
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { serviceError } from '../errors'

const OPEN_ROUTES = new Set(['/', '/healthz', '/readyz', '/metrics'])
const EXECUTE_ROUTE = '/plugins/:name/execute'
const METRICS_ROUTE = '/metrics'

function digest (token: string): Buffer {
  return createHash('sha256').update(token).digest()
}

function matchesAny (candidate: Buffer, digests: readonly Buffer[]): boolean {
  let match = false
  for (const d of digests) match = timingSafeEqual(candidate, d) || match // no early exit
  return match
}

export type Role = 'admin' | 'execute'

export interface AuthTokens {
  /** AUTH_TOKEN: when unset, every route but /metrics (see `metrics`) is open. */
  admin: string | undefined
  execute: readonly string[]
  /** METRICS_TOKEN: when unset, /metrics is open (Prometheus scrapes without a token). */
  metrics?: string | undefined
}

/** The digest of the request's bearer token; UNAUTHORIZED when there is none. */
function bearer (request: FastifyRequest): Buffer {
  const header = request.headers.authorization
  const match = typeof header === 'string' ? /^Bearer (\S+)$/i.exec(header) : null
  if (match?.[1] === undefined) throw serviceError('UNAUTHORIZED')
  return digest(match[1])
}

/** Installs the auth hook when a token is configured; otherwise every route is open. */
export function installAuth (app: FastifyInstance, tokens: AuthTokens): void {
  if (tokens.admin === undefined && tokens.metrics === undefined) return
  const admin = tokens.admin !== undefined ? [digest(tokens.admin)] : []
  const execute = tokens.execute.map(digest)
  const metrics = tokens.metrics !== undefined ? [digest(tokens.metrics)] : undefined
  app.addHook('onRequest', async (request: FastifyRequest) => {
    const route = request.routeOptions.url
    if (route === METRICS_ROUTE && metrics !== undefined) {
      // /metrics names every plugin and its call counts: with a metrics token, nobody else.
      const candidate = bearer(request)
      if (matchesAny(candidate, metrics) || matchesAny(candidate, admin)) return
      if (matchesAny(candidate, execute)) throw serviceError('FORBIDDEN')
      throw serviceError('UNAUTHORIZED')
    }
    if (route !== undefined && OPEN_ROUTES.has(route)) return
    if (tokens.admin === undefined) return
    const candidate = bearer(request)
    if (matchesAny(candidate, admin)) return
    if (matchesAny(candidate, execute)) {
      if (route === EXECUTE_ROUTE && request.method === 'POST') return
      throw serviceError('FORBIDDEN')
    }
    throw serviceError('UNAUTHORIZED')
  })
}
