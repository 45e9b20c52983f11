// Bearer-token authentication. The admin token (AUTH_TOKEN) may do everything; execute
// tokens (EXECUTE_TOKENS) may only call POST /plugins/:name/execute. Tokens are compared
// through their SHA-256 digests with timingSafeEqual: constant time whatever their length.
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { serviceError } from '../errors'

const OPEN_ROUTES = new Set(['/healthz', '/readyz', '/metrics'])
const EXECUTE_ROUTE = '/plugins/:name/execute'

function digest (token: string): Buffer {
  return createHash('sha256').update(token).digest()
}

function matchesAny (candidate: Buffer, digests: readonly Buffer[]): boolean {
  let match = false
  for (const d of digests) match = timingSafeEqual(candidate, d) || match // no early exit
  return match
}

export type Role = 'admin' | 'execute'

/** Installs the auth hook when an admin token is configured; otherwise every route is open. */
export function installAuth (app: FastifyInstance, adminToken: string | undefined, executeTokens: readonly string[]): void {
  if (adminToken === undefined) return
  const admin = [digest(adminToken)]
  const execute = executeTokens.map(digest)
  app.addHook('onRequest', async (request: FastifyRequest) => {
    const route = request.routeOptions.url
    if (route !== undefined && OPEN_ROUTES.has(route)) return
    const header = request.headers.authorization
    const match = typeof header === 'string' ? /^Bearer (\S+)$/i.exec(header) : null
    if (match?.[1] === undefined) throw serviceError('UNAUTHORIZED')
    const candidate = digest(match[1])
    if (matchesAny(candidate, admin)) return
    if (matchesAny(candidate, execute)) {
      if (route === EXECUTE_ROUTE && request.method === 'POST') return
      throw serviceError('FORBIDDEN')
    }
    throw serviceError('UNAUTHORIZED')
  })
}
