// Outbound HTTP for extism plugins (http_request), made on the main thread with undici. The
// security checks live here, outside the sandbox: the URL's scheme and host against the
// plugin's allowedHosts and the operator's ALLOWED_HOSTS; and, unless HTTP_ALLOW_PRIVATE, the
// address. The address is checked inside the socket's own DNS lookup, so the address checked
// is the address connected to (no second resolution a rebinding DNS server could answer
// differently); an IP literal, which net.connect never looks up, is checked before.
// Redirects are returned to the plugin, never followed; the body is capped while it streams.
import { lookup as dnsLookup } from 'node:dns'
import type { LookupAddress, LookupOptions } from 'node:dns'
import { BlockList, isIP } from 'node:net'
import { Agent, request } from 'undici'
import { hostMatches } from '../registry/host-patterns'
import type { HttpReply, HttpRequestSpec } from '../sandbox/extism/types'

/** Loopback, private, link-local, unspecified (and CGNAT, multicast, reserved) ranges. */
const PRIVATE = new BlockList()
for (const [net, prefix] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4]] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv4')
}
for (const [net, prefix] of [['::', 128], ['::1', 128], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['64:ff9b::', 96], ['100::', 64]] as const) {
  PRIVATE.addSubnet(net, prefix, 'ipv6')
}

/** Whether an address may not be reached by plugins (IPv4-mapped IPv6 is checked as IPv4). */
export function isPrivateAddress (address: string): boolean {
  const family = isIP(address)
  if (family === 4) return PRIVATE.check(address, 'ipv4')
  if (family !== 6) return true
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped !== null) return PRIVATE.check(mapped[1] as string, 'ipv4')
  return PRIVATE.check(address, 'ipv6')
}

class RefusedAddress extends Error {
  constructor (readonly host: string, readonly address: string) {
    super(`'${host}' resolves to ${address}, a private, loopback, link-local or unspecified address (HTTP_ALLOW_PRIVATE is off)`)
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

/** dns.lookup that answers only public addresses: what it answers is what the socket connects to. */
function publicLookup (hostname: string, options: LookupOptions, callback: LookupCallback): void {
  dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err !== null) { callback(err, []); return }
    const allowed = addresses.filter(a => !isPrivateAddress(a.address))
    const first = allowed[0]
    if (first === undefined) {
      callback(new RefusedAddress(hostname, addresses[0]?.address ?? 'nothing') as NodeJS.ErrnoException, [])
      return
    }
    if (options.all === true) callback(null, allowed); else callback(null, first.address, first.family)
  })
}

export interface OutboundOptions {
  /** The operator's ALLOWED_HOSTS. */
  operatorHosts: readonly string[]
  allowPrivate: boolean
}

export interface OutboundRequest extends HttpRequestSpec {
  allowedHosts: readonly string[]
  responseBytes: number
  /** Absolute Date.now() ms: the request is aborted then. */
  deadline: number
}

/** Makes plugins' requests; one per app, closed with it. */
export class OutboundHttp {
  readonly #agent: Agent
  readonly #options: OutboundOptions

  constructor (options: OutboundOptions) {
    this.#options = options
    this.#agent = new Agent({
      connect: options.allowPrivate ? {} : { lookup: publicLookup as never },
      keepAliveTimeout: 4000
    })
  }

  async request (req: OutboundRequest): Promise<HttpReply> {
    let url: URL
    try {
      url = new URL(req.url)
    } catch {
      return { ok: false, code: 'PLUGIN_ERROR', message: `http_request: invalid URL '${req.url.slice(0, 200)}'` }
    }
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase()
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return { ok: false, code: 'CAPABILITY_DENIED', message: `http_request: scheme '${url.protocol}' is not allowed (http and https only)`, host }
    }
    if (!req.allowedHosts.some(p => hostMatches(p, host)) || !this.#options.operatorHosts.some(p => hostMatches(p, host))) {
      return { ok: false, code: 'CAPABILITY_DENIED', message: `http_request: host '${host}' is not in the plugin's allowedHosts`, host }
    }
    if (!this.#options.allowPrivate && isIP(host) !== 0 && isPrivateAddress(host)) {
      return { ok: false, code: 'CAPABILITY_DENIED', message: new RefusedAddress(host, host).message, host }
    }
    const abort = new AbortController()
    const timer = setTimeout(() => abort.abort(), Math.max(0, req.deadline - Date.now()))
    try {
      const res = await request(url, {
        dispatcher: this.#agent,
        method: req.method as 'GET',
        headers: req.headers,
        ...(req.body !== undefined ? { body: req.body } : {}),
        signal: abort.signal
      })
      const chunks: Buffer[] = []
      let size = 0
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length
        if (size > req.responseBytes) {
          res.body.destroy()
          return { ok: false, code: 'PLUGIN_ERROR', message: `http_request: the response body is over limits.httpResponseBytes (${req.responseBytes})` }
        }
        chunks.push(chunk)
      }
      const headers: Record<string, string> = {}
      for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v
      return { ok: true, status: res.statusCode, headers, body: Buffer.concat(chunks) }
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause ?? err
      if (cause instanceof RefusedAddress || err instanceof RefusedAddress) {
        return { ok: false, code: 'CAPABILITY_DENIED', message: `http_request: ${(cause as Error).message}`, host }
      }
      // The pool terminates the worker at this same deadline (504); the worker must not take
      // this answer for the call's end first (see workers/http-bridge.ts).
      if (abort.signal.aborted) return { ok: false, code: 'PLUGIN_ERROR', message: 'http_request: aborted at the deadline', deadline: true }
      const code = (err as { code?: unknown }).code
      return { ok: false, code: 'PLUGIN_ERROR', message: `http_request to '${host}' failed: ${typeof code === 'string' ? `${code}: ` : ''}${(err as Error).message}` }
    } finally {
      clearTimeout(timer)
    }
  }

  async close (): Promise<void> {
    await this.#agent.destroy()
  }
}
