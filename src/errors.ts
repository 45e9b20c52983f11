// The error catalogue: every error a client can see, created once with its stable code and
// HTTP status. Keys equal codes; a released code is never reused. openapi.yaml and the README
// list the same codes (test/contract checks it).
import createError from '@fastify/error'
import type { FastifyErrorConstructor } from '@fastify/error'

export const errors = {
  INVALID_MODULE: createError('INVALID_MODULE', 'invalid module: %s', 400),
  INVALID_MANIFEST: createError('INVALID_MANIFEST', 'invalid manifest: %s', 400),
  INVALID_INPUT: createError('INVALID_INPUT', 'invalid input: %s', 400),
  INVALID_REQUEST: createError('INVALID_REQUEST', 'invalid request: %s', 400),
  UNAUTHORIZED: createError('UNAUTHORIZED', 'missing or invalid bearer token', 401),
  FORBIDDEN: createError('FORBIDDEN', 'this token may only execute plugins', 403),
  PLUGIN_NOT_FOUND: createError('PLUGIN_NOT_FOUND', "plugin '%s' not found", 404),
  FUNCTION_NOT_FOUND: createError('FUNCTION_NOT_FOUND', '%s', 404),
  ROUTE_NOT_FOUND: createError('ROUTE_NOT_FOUND', 'route %s %s not found', 404),
  METHOD_NOT_ALLOWED: createError('METHOD_NOT_ALLOWED', '%s is not allowed on %s; use %s', 405),
  PLUGIN_EXISTS: createError('PLUGIN_EXISTS', "plugin '%s' exists; use PUT /plugins/%s to replace it", 409),
  PRECONDITION_FAILED: createError('PRECONDITION_FAILED', "plugin '%s' has changed: its sha256 is not one If-Match names", 412),
  PAYLOAD_TOO_LARGE: createError('PAYLOAD_TOO_LARGE', '%s', 413),
  UNSUPPORTED_MEDIA_TYPE: createError('UNSUPPORTED_MEDIA_TYPE', '%s', 415),
  CAPABILITY_DENIED: createError('CAPABILITY_DENIED', '%s', 422),
  PLUGIN_TRAP: createError('PLUGIN_TRAP', 'plugin trapped: %s', 422),
  PLUGIN_EXIT: createError('PLUGIN_EXIT', 'plugin exited with code %s', 422),
  PLUGIN_ERROR: createError('PLUGIN_ERROR', 'plugin failed: %s', 422),
  PLUGIN_THROTTLED: createError('PLUGIN_THROTTLED', '%s', 429),
  PLUGIN_INVALID_OUTPUT: createError('PLUGIN_INVALID_OUTPUT', 'invalid plugin output: %s', 502),
  OVERLOADED: createError('OVERLOADED', '%s', 503),
  NOT_READY: createError('NOT_READY', 'service is %s', 503),
  REGISTRY_UNAVAILABLE: createError('REGISTRY_UNAVAILABLE', 'the shared registry cannot be reached (%s); nothing was written', 503),
  DEADLINE_EXCEEDED: createError('DEADLINE_EXCEEDED', 'plugin ran past its %s ms deadline and was stopped', 504),
  INSUFFICIENT_STORAGE: createError('INSUFFICIENT_STORAGE', 'not enough disk space; nothing was written', 507),
  INTERNAL: createError('INTERNAL', 'internal error', 500)
} as const satisfies Record<string, FastifyErrorConstructor>

export type ErrorCode = keyof typeof errors

/** Codes a worker may report across the thread boundary (plain data, see workers/protocol.ts). */
export type GuestErrorCode = 'PLUGIN_TRAP' | 'PLUGIN_EXIT' | 'PLUGIN_ERROR' | 'CAPABILITY_DENIED' | 'PLUGIN_INVALID_OUTPUT' | 'INVALID_INPUT' | 'FUNCTION_NOT_FOUND' | 'PAYLOAD_TOO_LARGE' | 'OVERLOADED' | 'INTERNAL'

/** Extra, documented fields an error may carry to the client (`details`, `retry-after`). */
export interface ErrorExtras {
  details?: Record<string, unknown>
  retryAfterSeconds?: number
}

export type ServiceError = Error & { code: string, statusCode: number } & ErrorExtras

/** Creates the catalogue error `code` with printf arguments and optional extras. */
export function serviceError (code: ErrorCode, args: unknown[] = [], extras: ErrorExtras = {}): ServiceError {
  const Ctor = errors[code] as FastifyErrorConstructor
  const err = new Ctor(...args) as ServiceError
  if (extras.details !== undefined) err.details = extras.details
  if (extras.retryAfterSeconds !== undefined) err.retryAfterSeconds = extras.retryAfterSeconds
  return err
}

/**
 * INTERNAL (a bug of ours, or the host failing under a call) with what went wrong kept as its
 * `cause`: for the log, never for the client, since it may hold host paths and error text.
 */
export function internalError (cause: unknown): ServiceError {
  const err = serviceError('INTERNAL')
  err.cause = cause
  return err
}

export function isServiceError (err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string' &&
    Object.hasOwn(errors, (err as unknown as { code: string }).code)
}
