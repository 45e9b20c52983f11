// The root error handler: every error leaves in fastify's shape
// {statusCode, code, error, message} (+ details), with a code from the catalogue. Client
// mistakes are 4xx; a 500 always means a bug of ours, logged with its stack, never leaked.
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { isServiceError, serviceError } from '../errors'
import type { ErrorCode, ServiceError } from '../errors'
import { RouteMethods } from './route-methods'

/** Fastify's and its plugins' own error codes, translated into ours. */
const FRAMEWORK_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_REQ_FILE_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_PARTS_LIMIT: 'PAYLOAD_TOO_LARGE',
  FST_FILES_LIMIT: 'PAYLOAD_TOO_LARGE',
  FST_FIELDS_LIMIT: 'PAYLOAD_TOO_LARGE',
  FST_PROTO_VIOLATION: 'INVALID_REQUEST',
  // @fastify/multipart parses a field sent as application/json; `manifest` is the only field.
  FST_INVALID_JSON_FIELD_ERROR: 'INVALID_MANIFEST',
  FST_MP_PREMATURE_CLOSE: 'INVALID_REQUEST',
  // Raised by the router before any route runs (see frameworkErrorHandler).
  FST_ERR_BAD_URL: 'INVALID_REQUEST',
  FST_ERR_MAX_PARAM_LENGTH: 'INVALID_REQUEST',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_REQUEST',
  FST_ERR_VALIDATION: 'INVALID_REQUEST'
}

/**
 * A request whose client went away mid-body (node's 'aborted', a reset, or our own 408 cutting
 * it off): nobody reads the answer, and it is not a bug of ours to log as one.
 */
const CLIENT_GONE = new Set(['ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE'])

const BY_STATUS: Record<number, ErrorCode> = {
  400: 'INVALID_REQUEST',
  404: 'ROUTE_NOT_FOUND',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE'
}

/** The setting behind a route's body limit, named in the 413 (routes not listed: a fixed limit). */
const BODY_LIMIT_SETTINGS: Record<string, string> = { '/plugins/:name/execute': 'MAX_INPUT_BYTES' }

/** A body over its route's limit, said with the number (and the setting that sets it). */
function bodyTooLarge (request: FastifyRequest): ServiceError {
  const limit = request.routeOptions.bodyLimit
  const url = request.routeOptions.url
  const setting = url !== undefined ? BODY_LIMIT_SETTINGS[url] : undefined
  return serviceError('PAYLOAD_TOO_LARGE', [setting !== undefined
    ? `input is over ${setting} (${limit} bytes)`
    : `request body is over ${limit} bytes`])
}

/** Maps anything thrown on a request to a catalogue error. */
export function toServiceError (err: FastifyError | Error, request?: FastifyRequest): ServiceError {
  if (isServiceError(err)) return err
  const code = (err as FastifyError).code
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE' && request?.routeOptions.bodyLimit !== undefined) return bodyTooLarge(request)
  const mapped = code !== undefined ? FRAMEWORK_CODES[code] : undefined
  const status = (err as FastifyError).statusCode
  const byStatus = status !== undefined ? BY_STATUS[status] : undefined
  if (mapped !== undefined || byStatus !== undefined) {
    const out = serviceError(mapped ?? byStatus ?? 'INVALID_REQUEST', [err.message])
    // Multipart's messages carry no useful argument formatting; keep the original text.
    out.message = err.message
    return out
  }
  if (code !== undefined && CLIENT_GONE.has(code)) return serviceError('INVALID_REQUEST', ['the client closed the connection before the request was complete'])
  if (status !== undefined && status >= 400 && status < 500) {
    const out = serviceError('INVALID_REQUEST', [err.message])
    out.statusCode = status
    return out
  }
  return serviceError('INTERNAL')
}

/** What INTERNAL says to a client, whatever it was created with: the detail is in the log. */
const INTERNAL_MESSAGE = serviceError('INTERNAL').message

export function errorBody (err: ServiceError): Record<string, unknown> {
  // An INTERNAL answer never carries text or details of what failed (host paths, errno text):
  // the catalogue's message only, whatever code built it (security issue 16).
  const internal = err.code === 'INTERNAL'
  const body: Record<string, unknown> = {
    statusCode: err.statusCode,
    code: err.code,
    error: STATUS_CODES[err.statusCode] ?? 'Error',
    message: internal ? INTERNAL_MESSAGE : err.message
  }
  if (err.details !== undefined && !internal) body.details = err.details
  return body
}

/**
 * Fastify's `frameworkErrors` option: errors the router raises before a route (and so before
 * the error handler) is chosen, such as a malformed percent-encoding or a path parameter over
 * `maxParamLength`. Without it fastify answers in its own shape, with a code of its own.
 */
export function frameworkErrorHandler (raw: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const err = toServiceError(raw)
  request.log.info({ code: err.code, statusCode: err.statusCode }, err.message)
  reply.code(err.statusCode).type('application/json').header('x-request-id', request.id).send(errorBody(err))
}

/** What node's HTTP parser reports on a connection, answered before any request exists. */
const CLIENT_ERRORS: Record<string, { status: number, message: string }> = {
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, message: 'the request (headers or body) did not arrive in time' },
  HPE_HEADER_OVERFLOW: { status: 431, message: 'request headers are too large' }
}

/**
 * Fastify's `clientErrorHandler` option: a connection-level error (a request or header
 * timeout, a malformed request line, headers too large). There is no request object yet, so
 * the answer is written on the socket by hand, in the same shape as every other error, and
 * the connection is closed.
 */
export function clientErrorHandler (this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const known = err.code !== undefined ? CLIENT_ERRORS[err.code] : undefined
  const status = known?.status ?? 400
  const body = JSON.stringify({
    statusCode: status,
    code: 'INVALID_REQUEST' satisfies ErrorCode,
    error: STATUS_CODES[status] ?? 'Error',
    message: known?.message ?? 'malformed HTTP request'
  })
  this.log.debug({ err }, 'client error')
  // Never write into a response that has started (node's own handler checks the same).
  const response = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage
  if (socket.writable && response?.headersSent !== true) {
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  }
  socket.destroy()
}

export function installErrorHandler (app: FastifyInstance): void {
  app.setErrorHandler((raw: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const err = toServiceError(raw, request)
    // The plugin a failed call was for, so a log search by plugin finds every failure.
    const name = (request.params as { name?: unknown } | undefined)?.name
    const plugin = typeof name === 'string' ? { plugin: name } : {}
    if (err.code === 'INTERNAL') {
      // With the request id (pino's reqId), so an operator can match the client's answer.
      request.log.error({ err: raw, cause: raw.cause !== undefined ? String(raw.cause) : undefined, ...plugin }, 'request failed')
    } else {
      request.log.info({ code: err.code, statusCode: err.statusCode, ...plugin }, err.message)
    }
    if (err.retryAfterSeconds !== undefined) reply.header('retry-after', String(err.retryAfterSeconds))
    return reply.code(err.statusCode).type('application/json').send(errorBody(err))
  })
  // Installed before the routes, so it sees every one of them.
  const methods = new RouteMethods()
  app.addHook('onRoute', (route) => { methods.add(route.url, route.method) })
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? ''
    const allowed = methods.allowed(path)
    if (allowed.length > 0) {
      const err = serviceError('METHOD_NOT_ALLOWED', [request.method, path, allowed.join(', ')])
      return reply.code(405).header('allow', allowed.join(', ')).type('application/json').send(errorBody(err))
    }
    const err = serviceError('ROUTE_NOT_FOUND', [request.method, path])
    return reply.code(404).type('application/json').send(errorBody(err))
  })
}
