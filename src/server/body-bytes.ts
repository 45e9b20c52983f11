// The execute route's body, read straight into the buffer the worker will read it from.
//
// Fastify's buffer parser keeps the chunks and concatenates them at the end: for a 16 MiB body
// one 70 ms copy on the event loop (bench:stalls, profiled), and the body then had to be copied
// once more into shared memory for the worker (another 60 ms). Here each chunk is copied as it
// arrives (64 KiB at a time, between other requests' events) into a buffer sized from
// content-length: shared memory from SHARE_FROM_BYTES on, which every posting of the task
// shares (workers/dispatch.ts), or an array of its own below that (postMessage copies a view's
// whole ArrayBuffer, and fastify's small buffers are views of Node's 8 KiB slab).
import type { Readable } from 'node:stream'
import { errorCodes } from 'fastify'
import { SHARE_FROM_BYTES } from '../workers/dispatch'

/** First capacity of a body sent without content-length (chunked); it doubles as needed. */
const CHUNKED_START_BYTES = 16 * 1024

function allocate (bytes: number): Uint8Array {
  return bytes >= SHARE_FROM_BYTES ? new Uint8Array(new SharedArrayBuffer(bytes)) : new Uint8Array(bytes)
}

/**
 * Reads `payload` into one buffer, refusing more than `limit` bytes the way fastify's own
 * parser does (FST_ERR_CTP_BODY_TOO_LARGE, FST_ERR_CTP_INVALID_CONTENT_LENGTH, a stream error
 * as a 400), so the error handler maps them as before.
 */
export function readBodyBytes (payload: Readable, contentLengthHeader: string | undefined, limit: number, done: (err: Error | null, body?: Uint8Array) => void): void {
  const declared = contentLengthHeader === undefined ? NaN : Number(contentLengthHeader)
  if (declared > limit) { done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE()); return }
  let body = allocate(Number.isInteger(declared) && declared >= 0 ? declared : CHUNKED_START_BYTES)
  let received = 0

  const stop = (): void => {
    payload.removeListener('data', onData)
    payload.removeListener('end', onEnd)
    payload.removeListener('error', onEnd)
  }
  function onData (chunk: Buffer | string): void {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk
    if (received + bytes.length > limit) { stop(); done(new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE()); return }
    if (received + bytes.length > body.length) {
      // Chunked, or more than declared (HTTP/1.1 framing never delivers that; kept safe anyway).
      const grown = allocate(Math.min(limit, Math.max(received + bytes.length, body.length * 2)))
      grown.set(body.subarray(0, received))
      body = grown
    }
    body.set(bytes, received)
    received += bytes.length
  }
  function onEnd (err?: Error & { statusCode?: number }): void {
    stop()
    if (err != null) {
      if (!(typeof err.statusCode === 'number' && err.statusCode >= 400)) err.statusCode = 400
      done(err)
      return
    }
    if (!Number.isNaN(declared) && received !== declared) { done(new errorCodes.FST_ERR_CTP_INVALID_CONTENT_LENGTH()); return }
    if (received === body.length) { done(null, body); return }
    // Sized by doubling: a shared view may be shorter than its buffer (postMessage shares the
    // buffer, not a copy); a small owned one is cut to size, as a view would be copied whole.
    done(null, body.buffer instanceof SharedArrayBuffer ? body.subarray(0, received) : body.slice(0, received))
  }
  payload.on('data', onData)
  payload.on('end', onEnd)
  payload.on('error', onEnd)
  payload.resume()
}
