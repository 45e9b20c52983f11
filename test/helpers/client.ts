// What the reliability tests (crash, disk-full, fuzz, clients) share: a seeded PRNG, the
// documented error shape, wasm variants with a distinct hash, and raw sockets for clients
// that undici will not imitate (slow, half-sent, malformed).
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { request } from 'undici'
import { errors } from '../../src/errors'
import { multipart } from './build-app'

/** Every code a client may see (src/errors.ts). */
export const ERROR_CODES: ReadonlySet<string> = new Set(Object.keys(errors))

/**
 * The seed of a randomized test: `env[variable]` when set (to replay a failure), else fresh.
 * Printed, so a failing run can be replayed with the same sequence.
 */
export function testSeed (variable: string, label: string): number {
  const given = process.env[variable]
  const seed = given !== undefined && given !== '' ? Number(given) >>> 0 : (Math.random() * 2 ** 32) >>> 0
  console.log(`${label}: seed ${seed} (replay with ${variable}=${seed})`)
  return seed
}

/** mulberry32: small, fast, good enough to pick test actions; same seed, same sequence. */
export function prng (seed: number): { next: () => number, int: (n: number) => number, pick: <T>(items: readonly T[]) => T, bytes: (n: number) => Buffer } {
  let a = seed >>> 0
  const next = (): number => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number): number => Math.floor(next() * n)
  return {
    next,
    int,
    pick: <T>(items: readonly T[]): T => items[int(items.length)] as T,
    bytes: (n: number) => {
      const out = Buffer.alloc(n)
      for (let i = 0; i < n; i++) out[i] = int(256)
      return out
    }
  }
}

/**
 * Why `body` is not a documented error of status `status` ({statusCode, code, error, message},
 * optional details, code from the catalogue), or undefined when it is.
 */
export function errorShapeProblem (status: number, text: string): string | undefined {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    return `not JSON: ${text.slice(0, 200)}`
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return `not an object: ${text.slice(0, 200)}`
  const b = body as Record<string, unknown>
  const keys = Object.keys(b).filter(k => !['statusCode', 'code', 'error', 'message', 'details'].includes(k))
  if (keys.length > 0) return `unexpected keys ${keys.join(', ')}: ${text.slice(0, 200)}`
  if (b.statusCode !== status) return `statusCode ${String(b.statusCode)} != HTTP status ${status}: ${text.slice(0, 200)}`
  if (typeof b.code !== 'string' || !ERROR_CODES.has(b.code)) return `code ${JSON.stringify(b.code)} is not in the catalogue: ${text.slice(0, 200)}`
  if (typeof b.error !== 'string' || b.error === '') return `no error text: ${text.slice(0, 200)}`
  if (typeof b.message !== 'string') return `no message: ${text.slice(0, 200)}`
  if (b.details !== undefined && (typeof b.details !== 'object' || b.details === null)) return `details is not an object: ${text.slice(0, 200)}`
  return undefined
}

/** `wasm` plus a custom section (`name`, `payload`): another hash, same behaviour. */
export function withCustomSection (wasm: Buffer, payload: Buffer, name = 'nonce'): Buffer {
  const nameBytes = Buffer.from(name)
  const content = Buffer.concat([uleb(nameBytes.length), nameBytes, payload])
  return Buffer.concat([wasm, Buffer.from([0]), uleb(content.length), content])
}

function uleb (n: number): Buffer {
  const out: number[] = []
  do {
    let byte = n & 0x7f
    n = Math.floor(n / 128)
    if (n !== 0) byte |= 0x80
    out.push(byte)
  } while (n !== 0)
  return Buffer.from(out)
}

export interface Answer { status: number, text: string, headers: Record<string, string | string[] | undefined> }

/** An upload (POST /plugins or PUT /plugins/:name) over undici. */
export async function sendUpload (url: string, method: 'POST' | 'PUT', path: string, wasm: Buffer, manifest?: unknown, extraHeaders: Record<string, string> = {}): Promise<Answer> {
  const { payload, headers } = multipart([
    { name: 'module', filename: 'plugin.wasm', content: wasm },
    ...(manifest !== undefined ? [{ name: 'manifest', content: JSON.stringify(manifest), type: 'text/plain' }] : [])
  ])
  const res = await request(`${url}${path}`, { method, body: payload, headers: { ...headers, ...extraHeaders } })
  return { status: res.statusCode, text: await res.body.text(), headers: res.headers }
}

/** A raw TCP client: what it received, and when (ms since connect) the server closed it. */
export interface RawClient {
  socket: Socket
  received: () => string
  /** resolves with ms since connect when the server ends or resets the connection */
  closed: Promise<number>
  write: (data: string | Buffer) => boolean
  destroy: () => void
}

export async function rawClient (url: string): Promise<RawClient> {
  const { hostname, port } = new URL(url)
  const socket = connect(Number(port), hostname)
  let data = ''
  socket.on('data', (d: Buffer) => { data += d.toString('latin1') })
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const t0 = performance.now()
  const closed = new Promise<number>(resolve => {
    socket.on('error', () => {})
    socket.once('close', () => resolve(performance.now() - t0))
  })
  return {
    socket,
    received: () => data,
    closed,
    write: (chunk) => !socket.destroyed && socket.write(chunk),
    destroy: () => socket.destroy()
  }
}

/** Splits a raw HTTP/1.1 answer into status and body (content-length bodies only). */
export function parseRawResponse (raw: string): { status: number, body: string } | undefined {
  const m = /^HTTP\/1\.1 (\d{3})[^\r]*\r\n([\s\S]*?)\r\n\r\n([\s\S]*)$/.exec(raw)
  if (m === null) return undefined
  const length = /content-length:\s*(\d+)/i.exec(m[2] ?? '')
  const body = m[3] ?? ''
  return { status: Number(m[1]), body: length !== null ? body.slice(0, Number(length[1])) : body }
}

export async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}
