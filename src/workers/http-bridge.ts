// http_request across the thread boundary. A guest's host call is synchronous, so the worker
// cannot await a request: it posts the request on a BroadcastChannel (one per app, named in
// the task, so re-posting a task needs no transfer) with a SharedArrayBuffer for the answer,
// and blocks on Atomics.wait. The main thread makes the request (server/outbound-http.ts),
// writes the answer into the buffer and wakes it. The socket belongs to the main thread, which
// aborts the request at the call's deadline: a worker terminated while it waits leaves nothing
// open behind it.
import { BroadcastChannel } from 'node:worker_threads'
import type { HttpFunction, HttpReply, HttpRequestSpec } from '../sandbox/extism/types'

// The answer buffer: Int32 [STATE] 0 waiting, 1 answered; [META_LEN] bytes of the JSON
// {ok, status, headers} | {ok: false, code, message, host}; [BODY_LEN]; then the JSON at
// META_AT, then the body at META_AT + META_BYTES.
const STATE = 0
const META_LEN = 1
const BODY_LEN = 2
const META_AT = 16
const META_BYTES = 64 * 1024

interface BridgeMessage {
  answer: SharedArrayBuffer
  request: HttpRequestSpec
  allowedHosts: string[]
  responseBytes: number
  deadline: number
}

export type BridgeHandler = (m: Omit<BridgeMessage, 'answer'>) => Promise<HttpReply>

/** Main thread: answers the requests posted on `name` until the returned close() is called. */
export function serveHttpBridge (name: string, handle: BridgeHandler): () => void {
  const channel = new BroadcastChannel(name)
  channel.onmessage = (event: unknown) => {
    const m = (event as { data: BridgeMessage }).data
    const { answer, ...rest } = m
    handle(rest).then(reply => { write(answer, reply) }, (err: unknown) => {
      write(answer, { ok: false, code: 'PLUGIN_ERROR', message: `http_request failed: ${(err as Error).message}` })
    })
  }
  // A channel keeps the event loop alive; the app closes it.
  return () => { channel.close() }
}

function write (answer: SharedArrayBuffer, reply: HttpReply): void {
  const ints = new Int32Array(answer, 0, 4)
  const bytes = new Uint8Array(answer)
  let body = reply.ok ? reply.body : new Uint8Array(0)
  if (body.length > answer.byteLength - META_AT - META_BYTES) {
    reply = { ok: false, code: 'PLUGIN_ERROR', message: 'http_request: the response body is over limits.httpResponseBytes' }
    body = new Uint8Array(0)
  }
  const { body: _omit, ...meta } = reply as HttpReply & { body?: Uint8Array }
  let json = Buffer.from(JSON.stringify(meta))
  if (json.length > META_BYTES) json = Buffer.from(JSON.stringify({ ok: false, code: 'PLUGIN_ERROR', message: 'http_request: the response headers are over 64 KiB' }))
  bytes.set(json, META_AT)
  bytes.set(body, META_AT + META_BYTES)
  ints[META_LEN] = json.length
  ints[BODY_LEN] = body.length
  Atomics.store(ints, STATE, 1)
  Atomics.notify(ints, STATE)
}

let workerChannel: { name: string, channel: BroadcastChannel } | undefined

/**
 * Worker thread: an HttpFunction that blocks until the main thread answers. Past `deadline`
 * it keeps blocking: the pool terminates the thread at the deadline (504), and the main
 * thread aborts the request then.
 */
export function httpOverBridge (name: string, allowedHosts: string[], deadline: number): HttpFunction {
  return (request, responseBytes) => {
    if (workerChannel?.name !== name) {
      workerChannel?.channel.close()
      const channel = new BroadcastChannel(name)
      channel.unref()
      workerChannel = { name, channel }
    }
    const answer = new SharedArrayBuffer(META_AT + META_BYTES + responseBytes)
    const ints = new Int32Array(answer, 0, 4)
    const message: BridgeMessage = { answer, request, allowedHosts, responseBytes, deadline }
    workerChannel.channel.postMessage(message)
    while (Atomics.load(ints, STATE) === 0) {
      const left = deadline - Date.now()
      Atomics.wait(ints, STATE, 0, left > 0 ? left : undefined)
    }
    const meta = JSON.parse(Buffer.from(answer, META_AT, ints[META_LEN] as number).toString('utf8')) as HttpReply
    // Aborted at the deadline: the pool is terminating this thread (504); answering now would
    // race it with a 422. Block until the thread is gone.
    if (!meta.ok && meta.deadline === true) for (;;) Atomics.wait(ints, STATE, 1)
    if (!meta.ok) return meta
    return { ...meta, body: new Uint8Array(answer, META_AT + META_BYTES, ints[BODY_LEN] as number).slice() }
  }
}
