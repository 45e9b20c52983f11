// The root error handler: every error leaves in fastify's shape
// {statusCode, code, error, message} (+ details), with a code from the catalogue. Client
// mistakes are 4xx; a 500 always means a bug of ours, logged with its stack, never leaked.
import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { isServiceError, serviceError } from '../errors'
import type { ErrorCode, ServiceError } from '../errors'

/** Fastify's and its plugins' own error codes, translated into ours. */
const FRAMEWORK_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_REQ_FILE_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_PARTS_LIMIT: 'PAYLOAD_TOO_LARGE',
  FST_FILES_LIMIT: 'PAYLOAD_TOO_LARGE',
  FST_FIELDS_LIMIT: 'PAYLOAD_TOO_LARGE',
  FST_PROTO_VIOLATION: 'INVALID_REQUEST',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_REQUEST',
  FST_ERR_VALIDATION: 'INVALID_REQUEST'
}

const BY_STATUS: Record<number, ErrorCode> = {
  400: 'INVALID_REQUEST',
  404: 'ROUTE_NOT_FOUND',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE'
}

/** Maps anything thrown on a request to a catalogue error. */
export function toServiceError (err: FastifyError | Error): ServiceError {
  if (isServiceError(err)) return err
  const code = (err as FastifyError).code
  const mapped = code !== undefined ? FRAMEWORK_CODES[code] : undefined
  const status = (err as FastifyError).statusCode
  const byStatus = status !== undefined ? BY_STATUS[status] : undefined
  if (mapped !== undefined || byStatus !== undefined) {
    const out = serviceError(mapped ?? byStatus ?? 'INVALID_REQUEST', [err.message])
    // Multipart's messages carry no useful argument formatting; keep the original text.
    out.message = err.message
    return out
  }
  if (status !== undefined && status >= 400 && status < 500) {
    const out = serviceError('INVALID_REQUEST', [err.message])
    out.statusCode = status
    return out
  }
  return serviceError('INTERNAL')
}

export function errorBody (err: ServiceError): Record<string, unknown> {
  const body: Record<string, unknown> = {
    statusCode: err.statusCode,
    code: err.code,
    error: STATUS_CODES[err.statusCode] ?? 'Error',
    message: err.message
  }
  if (err.details !== undefined) body.details = err.details
  return body
}

export function installErrorHandler (app: FastifyInstance): void {
  app.setErrorHandler((raw: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const err = toServiceError(raw)
    if (err.statusCode >= 500 && err.code === 'INTERNAL') {
      request.log.error({ err: raw }, 'request failed')
    } else {
      request.log.info({ code: err.code, statusCode: err.statusCode }, err.message)
    }
    if (err.retryAfterSeconds !== undefined) reply.header('retry-after', String(err.retryAfterSeconds))
    return reply.code(err.statusCode).type('application/json').send(errorBody(err))
  })
  app.setNotFoundHandler((request, reply) => {
    const err = serviceError('ROUTE_NOT_FOUND', [request.method, request.url.split('?')[0]])
    return reply.code(404).type('application/json').send(errorBody(err))
  })
}
