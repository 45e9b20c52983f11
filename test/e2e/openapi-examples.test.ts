// openapi.yaml as a plugin author learns from it (issue 17): every request and response has a
// named example, and every response example is sent to the real service (node dist/main.js
// on 127.0.0.1, undici) with the request it documents, after the state it needs
// (`x-test-setup`: the plugins, built here from WAT, and a breaker, queue, registry or
// shutdown state). The answer
// must be the documented one: the status; the documented headers (x-request-id echoed); the
// body valid against the documented schema (ajv, with the per-code `details` schemas); and a
// JSON body of the same shape as the example: the same keys, recursively, the same array
// lengths, the same JSON types, and for an error the same statusCode, code and error. Values
// that naturally differ (sha256, timestamps, messages' numbers) are not compared. A module
// download must be the uploaded bytes; an extism byte output the example's bytes.
//
// The few examples that cannot be produced here are listed in NOT_SENT with the reason. The
// `registry-down` ones need a PostgreSQL cluster of their own to stop (TEST_PG_BIN, as CI
// has): without it they are skipped, and say so.
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import Ajv from 'ajv'
import type { ValidateFunction } from 'ajv'
import { request } from 'undici'
import { parse } from 'yaml'
import { manifestSchema, parseManifest } from '../../src/registry/manifest'
import { isServiceError } from '../../src/errors'
import { multipart, removeDir, tempDir } from '../helpers/build-app'
import { rawClient } from '../helpers/client'
import type { RawClient } from '../helpers/client'
import { fixturesDir, wat, watFixture } from '../helpers/fixtures'
import { startServer } from '../helpers/http'
import { connect } from 'node:net'
import { canRestartPostgres, startPrivateCluster } from '../helpers/postgres'
import type { PrivateCluster } from '../helpers/postgres'
import type { RunningServer } from '../helpers/http'

jest.setTimeout(60_000)

const root = resolve(__dirname, '..', '..')
type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type Obj = Record<string, unknown>
const spec = parse(readFileSync(resolve(root, 'openapi.yaml'), 'utf8')) as Obj

/** Examples that cannot be produced by this test, each with why (keep this list short). */
const NOT_SENT: Record<string, string> = {
  'replacePlugin 507 disk-full': 'needs a full disk: a tmpfs mount, root only (test/e2e/disk-full.test.ts)'
}

const TOKENS = { admin: 'admin-token-0123456789abcdef', execute: 'exec-token-0123456789abcdef', metrics: 'metrics-token-0123456789abcdef' }
/** The test server's limits: small, so that a body one byte over them is cheap to send. */
const LIMITS = { MAX_UPLOAD_BYTES: 1024 * 1024, MAX_INPUT_BYTES: 64 * 1024 }
const SERVER_ENV = {
  AUTH_TOKEN: TOKENS.admin,
  EXECUTE_TOKENS: TOKENS.execute,
  METRICS_TOKEN: TOKENS.metrics,
  // One worker and a queue of one: `queue-full` is one busy worker and one call waiting.
  WORKERS: '1',
  QUEUE_MAX: '1',
  // The first deadline kill pauses the plugin: `breaker-open` is one call.
  BREAKER_THRESHOLD: '1',
  // The 507 example: two plugins fill the registry.
  MAX_PLUGINS: '2',
  MAX_UPLOAD_BYTES: String(LIMITS.MAX_UPLOAD_BYTES),
  MAX_INPUT_BYTES: String(LIMITS.MAX_INPUT_BYTES)
}

// ---- reading the document ----

/** The value at a local JSON pointer (`#/components/...`). */
function pointer (ref: string): unknown {
  let node: unknown = spec
  for (const raw of ref.replace(/^#\//, '').split('/')) {
    node = (node as Obj)[raw.replace(/~1/g, '/').replace(/~0/g, '~')]
    if (node === undefined) throw new Error(`unresolved $ref ${ref}`)
  }
  return node
}

/** An object with its `$ref` followed; keys beside the `$ref` (x-request, summary) win. */
function deref<T = Obj> (node: unknown): T {
  const o = node as Obj
  if (typeof o.$ref !== 'string') return o as T
  const { $ref, ...siblings } = o
  return { ...deref<Obj>(pointer($ref as string)), ...siblings } as T
}

interface Operation { id: string, method: string, path: string, op: Obj }
const METHODS = ['get', 'put', 'post', 'delete', 'patch']
const operations: Operation[] = []
for (const [path, item] of Object.entries(spec.paths as Record<string, Obj>)) {
  for (const method of METHODS) {
    const op = item[method] as Obj | undefined
    if (op !== undefined) operations.push({ id: op.operationId as string, method: method.toUpperCase(), path, op })
  }
}

interface XRequest {
  example?: string
  name?: string
  query?: Record<string, string>
  headers?: Record<string, string>
  auth?: 'none' | 'execute' | 'metrics'
  contentType?: string
  body?: string
}
interface XSetup { plugins?: string[], state?: 'breaker-open' | 'queue-full' | 'registry-down' | 'shutting-down' }
interface Example { value?: unknown, 'x-request'?: XRequest, 'x-test-setup'?: XSetup, 'x-module'?: string, 'x-oversize'?: keyof typeof LIMITS, 'x-base64'?: string }
interface Case { key: string, operation: Operation, status: string, response: Obj, mediaType: string | undefined, name: string, example: Example }

/** Every response example of every operation (a response without content is its own example). */
const cases: Case[] = []
for (const operation of operations) {
  for (const [status, raw] of Object.entries(operation.op.responses as Obj)) {
    const response = deref(raw)
    const content = response.content as Record<string, Obj> | undefined
    if (content === undefined) {
      cases.push({ key: `${operation.id} ${status}`, operation, status, response, mediaType: undefined, name: '', example: response as Example })
      continue
    }
    for (const [mediaType, media] of Object.entries(content)) {
      for (const [name, ex] of Object.entries((media.examples ?? {}) as Obj)) {
        cases.push({ key: `${operation.id} ${status} ${name}`, operation, status, response, mediaType, name, example: deref<Example>(ex) })
      }
    }
  }
}

/** The request body example `name` of an operation, with its media type. */
function requestExample (operation: Operation, name: string): { mediaType: string, example: Example } {
  const content = (deref(operation.op.requestBody ?? {}).content ?? {}) as Record<string, Obj>
  for (const [mediaType, media] of Object.entries(content)) {
    const ex = (media.examples as Obj | undefined)?.[name]
    if (ex !== undefined) return { mediaType, example: deref<Example>(ex) }
  }
  throw new Error(`${operation.id}: no request body example '${name}'`)
}

// ---- schemas (ajv) ----

/** A copy with every `#/components/schemas/X` made `openapi#/definitions/X`. */
function localRefs (node: unknown): unknown {
  if (Array.isArray(node)) return node.map(localRefs)
  if (typeof node !== 'object' || node === null) return node
  const out: Obj = {}
  for (const [k, v] of Object.entries(node)) {
    out[k] = k === '$ref' && typeof v === 'string' ? v.replace('#/components/schemas/', 'openapi#/definitions/') : localRefs(v)
  }
  return out
}

const ajv = new Ajv({ strict: true, strictTypes: false, allowUnionTypes: true })
ajv.addFormat('binary', true)
ajv.addFormat('date-time', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)$/)
ajv.addSchema({ $id: 'openapi', definitions: localRefs((spec.components as Obj).schemas) as Obj })
const validators = new Map<unknown, ValidateFunction>()
function validator (schema: unknown): ValidateFunction {
  let v = validators.get(schema)
  if (v === undefined) {
    v = ajv.compile(localRefs(schema) as Obj)
    validators.set(schema, v)
  }
  return v
}
function schemaProblem (schema: unknown, value: unknown): string | undefined {
  const v = validator(schema)
  return v(value) ? undefined : ajv.errorsText(v.errors)
}

/** The same shape: same JSON types, same keys recursively, same array lengths. */
function shapeProblem (actual: unknown, documented: unknown, at = 'body'): string | undefined {
  const kind = (v: unknown): string => v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v
  if (kind(actual) !== kind(documented)) return `${at}: ${kind(actual)}, documented ${kind(documented)}`
  if (Array.isArray(actual) && Array.isArray(documented)) {
    if (actual.length !== documented.length) return `${at}: ${actual.length} items, documented ${documented.length}`
    for (let i = 0; i < actual.length; i++) {
      const p = shapeProblem(actual[i], documented[i], `${at}[${i}]`)
      if (p !== undefined) return p
    }
  } else if (kind(actual) === 'object') {
    const a = Object.keys(actual as Obj).sort()
    const d = Object.keys(documented as Obj).sort()
    if (a.join() !== d.join()) return `${at}: keys ${a.join(', ')}, documented ${d.join(', ')}`
    for (const key of a) {
      const p = shapeProblem((actual as Obj)[key], (documented as Obj)[key], `${at}.${key}`)
      if (p !== undefined) return p
    }
  }
  return undefined
}

// ---- the plugins the examples use ----

const uploadExample = requestExample(operations.find(o => o.id === 'uploadPlugin') as Operation, 'json-plugin')
const MODULES: Record<string, () => Promise<Buffer>> = {
  echo: async () => watFixture('echo'),
  hostile: async () => watFixture('hostile'),
  cat: async () => watFixture('bench-wasi-echo'),
  exit: async () => wat(readFileSync(resolve(fixturesDir, 'wasi-exit.wat'), 'utf8').replaceAll('EXIT_CODE', '3')),
  kernel: async () => watFixture('extism-kernel')
}
const MANIFESTS: Record<string, unknown> = {
  // echo is what the upload example uploads, so the descriptors in the examples are its own.
  echo: (uploadExample.example.value as Obj).manifest,
  hostile: { name: 'hostile', limits: { timeoutMs: 1000 } },
  cat: { name: 'cat', abi: 'wasi' },
  exit: { name: 'exit', abi: 'wasi' },
  kernel: { name: 'kernel', abi: 'extism', entry: 'echo' }
}
const modules = new Map<string, Buffer>()
function moduleBytes (name: string): Buffer {
  const bytes = modules.get(name)
  if (bytes === undefined) throw new Error(`no test module '${name}' (x-module / x-test-setup)`)
  return bytes
}

// ---- talking to the server ----

let server: RunningServer
interface Answer { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer }

async function send (method: string, path: string, options: { headers?: Record<string, string>, body?: Buffer | string, auth?: XRequest['auth'] } = {}): Promise<Answer> {
  const auth = options.auth === 'none' ? {} : { authorization: `Bearer ${TOKENS[options.auth ?? 'admin']}` }
  const res = await request(`${server.url}${path}`, { method: method as 'GET', headers: { ...auth, ...options.headers }, body: options.body })
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
}

async function upload (name: string): Promise<void> {
  const { payload, headers } = multipart([
    { name: 'module', filename: `${name}.wasm`, content: moduleBytes(name) },
    { name: 'manifest', content: JSON.stringify(MANIFESTS[name]), type: 'application/json' }
  ])
  const res = await send('POST', '/plugins', { headers, body: payload })
  if (res.status !== 201) throw new Error(`setup: uploading ${name}: ${res.status} ${res.body.toString()}`)
}

/** Nothing but `plugins` in the registry (a deleted plugin's breaker and queue go with it). */
async function resetTo (plugins: string[]): Promise<void> {
  const list = JSON.parse((await send('GET', '/plugins')).body.toString()) as { plugins: Array<{ name: string }> }
  for (const p of list.plugins) {
    const res = await send('DELETE', `/plugins/${p.name}`)
    if (res.status !== 204) throw new Error(`setup: deleting ${p.name}: ${res.status}`)
  }
  for (const name of plugins) await upload(name)
}

async function gauge (name: string): Promise<number> {
  const text = (await send('GET', '/metrics')).body.toString()
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)
  return m === null ? 0 : Number(m[1])
}

/** Waits (polling, at most `limit` tries) until `check` holds. */
async function until (what: string, check: () => Promise<boolean>, limit = 200): Promise<void> {
  for (let i = 0; i < limit; i++) {
    if (await check()) return
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  throw new Error(`setup: never ${what}`)
}

const LOOP = '/plugins/hostile/execute?function=loop'
const JSON_HEADERS = { 'content-type': 'application/json' }

/** Puts the server in `state`; returns what to await after the example (calls left running). */
async function enterState (state: XSetup['state']): Promise<Array<Promise<unknown>>> {
  if (state === 'breaker-open') {
    const killed = await send('POST', LOOP, { headers: JSON_HEADERS, body: '{}' })
    if (killed.status !== 504) throw new Error(`setup: the loop answered ${killed.status}, not 504`)
    return []
  }
  if (state === 'queue-full') {
    // The one worker runs hostile's loop (up to its 1000 ms deadline); one echo call waits.
    const busy = send('POST', LOOP, { headers: JSON_HEADERS, body: '{}' })
    await until('a call in flight', async () => await gauge('worker_pool_queue_size') === 0 && /plugin_calls_in_flight\{plugin="hostile"\} 1/.test((await send('GET', '/metrics')).body.toString()))
    const waiting = send('POST', '/plugins/echo/execute', { headers: JSON_HEADERS, body: '{"name":"waiting"}' })
    await until('a call queued', async () => await gauge('worker_pool_queue_size') === 1)
    return [busy, waiting]
  }
  return []
}

/** The request a response example documents. */
function buildRequest (c: Case, requestId: string): { method: string, path: string, headers: Record<string, string>, body?: Buffer | string, auth?: XRequest['auth'] } {
  const x = c.example['x-request'] ?? {}
  const query = x.query !== undefined ? `?${new URLSearchParams(x.query).toString()}` : ''
  const path = c.operation.path.replace('{name}', x.name ?? 'echo') + query
  const headers: Record<string, string> = { 'x-request-id': requestId, ...x.headers }
  let body: Buffer | string | undefined
  if (x.contentType !== undefined) {
    headers['content-type'] = x.contentType
    body = x.body ?? ''
  } else if (x.example !== undefined) {
    const { mediaType, example } = requestExample(c.operation, x.example)
    const value = example.value as Obj
    const oversize = example['x-oversize'] !== undefined ? LIMITS[example['x-oversize']] + 1 : undefined
    if (mediaType === 'multipart/form-data') {
      const module = example['x-module'] !== undefined
        ? moduleBytes(example['x-module'])
        : oversize !== undefined ? Buffer.alloc(oversize) : Buffer.from(String(value.module))
      const parts: Parameters<typeof multipart>[0] = [{ name: 'module', filename: `${example['x-module'] ?? 'plugin'}.wasm`, content: module }]
      if (value.manifest !== undefined) parts.push({ name: 'manifest', content: JSON.stringify(value.manifest), type: 'application/json' })
      const mp = multipart(parts)
      Object.assign(headers, mp.headers)
      body = mp.payload
    } else if (mediaType === 'application/wasm') {
      headers['content-type'] = 'application/wasm'
      body = example['x-module'] !== undefined ? moduleBytes(example['x-module']) : String(example.value)
    } else if (mediaType === 'application/json') {
      headers['content-type'] = 'application/json'
      body = oversize !== undefined ? `"${'x'.repeat(oversize - 2)}"` : JSON.stringify(example.value)
    } else if (example['x-base64'] !== undefined) {
      headers['content-type'] = 'application/octet-stream'
      body = Buffer.from(example['x-base64'], 'base64')
    } else {
      headers['content-type'] = 'text/plain'
      body = String(example.value)
    }
  }
  return { method: c.operation.method, path, headers, body, auth: x.auth }
}

/** Why the answer is not the documented one, or undefined. */
function answerProblem (c: Case, res: Answer, requestId: string): string | undefined {
  if (String(res.status) !== c.status) return `status ${res.status}, documented ${c.status}: ${res.body.toString().slice(0, 300)}`
  if (res.headers['x-request-id'] !== requestId) return `x-request-id ${String(res.headers['x-request-id'])}, sent ${requestId}`
  for (const header of Object.keys((c.response.headers ?? {}) as Obj)) {
    if (res.headers[header] === undefined) return `no ${header} header`
  }
  if (c.mediaType === undefined) return res.body.length === 0 ? undefined : `a body, documented none: ${res.body.toString().slice(0, 100)}`
  const contentType = String(res.headers['content-type'] ?? '').split(';')[0]
  if (contentType !== c.mediaType) return `content-type ${contentType}, documented ${c.mediaType}`
  const media = (c.response.content as Record<string, Obj>)[c.mediaType] as Obj
  if (c.mediaType === 'application/json') {
    const body = JSON.parse(res.body.toString()) as Json
    const invalid = schemaProblem(media.schema, body)
    if (invalid !== undefined) return `does not match the documented schema: ${invalid}: ${res.body.toString().slice(0, 300)}`
    const documented = c.example.value as Json
    const shape = shapeProblem(body, documented)
    if (shape !== undefined) return `not the documented shape: ${shape}: ${res.body.toString().slice(0, 300)}`
    if (typeof documented === 'object' && documented !== null && !Array.isArray(documented) && 'code' in documented) {
      for (const key of ['statusCode', 'code', 'error']) {
        const got = (body as Obj)[key]
        if (got !== documented[key]) return `${key} ${String(got)}, documented ${String(documented[key])}`
      }
    }
    return undefined
  }
  if (c.example['x-module'] !== undefined) return res.body.equals(moduleBytes(c.example['x-module'])) ? undefined : 'not the uploaded bytes'
  if (c.example['x-base64'] !== undefined) return res.body.equals(Buffer.from(c.example['x-base64'], 'base64')) ? undefined : `bytes ${res.body.toString('hex')}`
  // Text: a string as documented (a plugin's stdout is compared exactly).
  if (c.operation.id === 'executePlugin' && res.body.toString() !== c.example.value) return `'${res.body.toString()}', documented '${String(c.example.value)}'`
  return res.body.length > 0 ? undefined : 'an empty body'
}

function registryDown (c: Case): boolean {
  return c.example['x-test-setup']?.state === 'registry-down'
}

function shuttingDown (c: Case): boolean {
  return c.example['x-test-setup']?.state === 'shutting-down'
}

/** Sends the request of example `c` and checks the answer is the documented one. */
async function sendCase (c: Case): Promise<void> {
  const requestId = `openapi-${c.key.replace(/\W+/g, '-')}`
  const { method, path, ...options } = buildRequest(c, requestId)
  const res = await send(method, path, options)
  expect(answerProblem(c, res, requestId)).toBeUndefined()
}

async function buildModules (): Promise<void> {
  for (const [name, build] of Object.entries(MODULES)) if (!modules.has(name)) modules.set(name, await build())
}

// ---- the tests ----

test('info.version is package.json\'s version', () => {
  const pkg = JSON.parse(readFileSync(resolve(root, 'package.json'), 'utf8')) as { version: string }
  expect((spec.info as Obj).version).toBe(pkg.version)
})

test('x-request-id is documented on every request and every response', () => {
  for (const { id, op } of operations) {
    const params = ((op.parameters ?? []) as Obj[]).map(p => deref(p))
    expect([id, params.some(p => p.name === 'x-request-id' && p.in === 'header')]).toEqual([id, true])
    for (const [status, raw] of Object.entries(op.responses as Obj)) {
      const headers = (deref(raw).headers ?? {}) as Obj
      expect([id, status, headers['x-request-id'] !== undefined]).toEqual([id, status, true])
    }
  }
})

test('every request body and every response has examples, and every request example is sent', () => {
  const sent = new Set(cases.map(c => `${c.operation.id} ${c.example['x-request']?.example ?? ''}`))
  for (const { id, op } of operations) {
    for (const [mediaType, media] of Object.entries((deref(op.requestBody ?? {}).content ?? {}) as Record<string, Obj>)) {
      const names = Object.keys((media.examples ?? {}) as Obj)
      expect([id, mediaType, names.length > 0]).toEqual([id, mediaType, true])
      for (const name of names) expect(sent).toContain(`${id} ${name}`)
    }
    for (const [status, raw] of Object.entries(op.responses as Obj)) {
      for (const [mediaType, media] of Object.entries((deref(raw).content ?? {}) as Record<string, Obj>)) {
        expect([id, status, mediaType, Object.keys((media.examples ?? {}) as Obj).length > 0]).toEqual([id, status, mediaType, true])
      }
    }
  }
  // An exception names an example that exists.
  for (const key of Object.keys(NOT_SENT)) expect(cases.map(c => c.key)).toContain(key)
})

test('responses, media types and examples use only OpenAPI 3.1 fields (a misspelt key would hide an example)', () => {
  const allowed = (o: Obj, fields: string[], where: string): void => {
    const extra = Object.keys(o).filter(k => !k.startsWith('x-') && !fields.includes(k))
    expect([where, extra]).toEqual([where, []])
  }
  const EXAMPLE = ['summary', 'description', 'value', 'externalValue', '$ref']
  const examples = (media: Obj, where: string): void => {
    allowed(media, ['schema', 'example', 'examples', 'encoding'], where)
    for (const [name, ex] of Object.entries((media.examples ?? {}) as Obj)) allowed(ex as Obj, EXAMPLE, `${where} example ${name}`)
  }
  for (const { id, op } of operations) {
    allowed(op, ['operationId', 'summary', 'description', 'parameters', 'requestBody', 'responses', 'security', 'tags', 'deprecated'], id)
    for (const p of (op.parameters ?? []) as Obj[]) allowed(deref(p), ['name', 'in', 'required', 'description', 'schema', 'example', 'examples', 'deprecated', 'style', 'explode'], `${id} parameter`)
    for (const [mediaType, media] of Object.entries((deref(op.requestBody ?? {}).content ?? {}) as Record<string, Obj>)) examples(media, `${id} request ${mediaType}`)
    for (const [status, raw] of Object.entries(op.responses as Obj)) {
      const response = deref(raw)
      allowed(response, ['description', 'headers', 'content', 'links'], `${id} ${status}`)
      expect([id, status, typeof response.description]).toEqual([id, status, 'string'])
      for (const [mediaType, media] of Object.entries((response.content ?? {}) as Record<string, Obj>)) examples(media, `${id} ${status} ${mediaType}`)
    }
  }
})

test('every JSON example is valid against its schema (a request only when it is answered 2xx)', () => {
  for (const c of cases) {
    if (c.mediaType !== 'application/json') continue
    const schema = ((c.response.content as Record<string, Obj>)[c.mediaType] as Obj).schema
    expect([c.key, schemaProblem(schema, c.example.value)]).toEqual([c.key, undefined])
    const name = c.example['x-request']?.example
    if (name === undefined || !c.status.startsWith('2')) continue
    const { mediaType, example } = requestExample(c.operation, name)
    const requestSchema = (((deref(c.operation.op.requestBody).content as Record<string, Obj>)[mediaType]) as Obj).schema
    if (mediaType === 'application/json' || mediaType === 'multipart/form-data') {
      expect([c.key, name, schemaProblem(requestSchema, example.value)]).toEqual([c.key, name, undefined])
    }
  }
})

test('the Manifest schema is the server\'s manifest schema, nested objects closed alike', () => {
  // The same schema once $refs are followed and annotations left out (no property of the
  // manifest is named like an annotation, so dropping those keys anywhere is safe).
  const ANNOTATIONS = new Set(['description', 'default', 'example', 'examples', 'title'])
  const plain = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(plain)
    if (typeof node !== 'object' || node === null) return node
    return Object.fromEntries(Object.entries(deref(node)).filter(([k]) => !ANNOTATIONS.has(k)).map(([k, v]) => [k, plain(v)]))
  }
  const documented = ((spec.components as Obj).schemas as Obj).Manifest
  expect(plain(documented)).toEqual(JSON.parse(JSON.stringify(manifestSchema)))

  // And the two validators agree on manifests, good and bad.
  const validate = validator({ $ref: '#/components/schemas/Manifest' })
  const manifests: unknown[] = [
    {}, { name: 'echo', version: '1.0.0' }, { abi: 'wasi', capabilities: { wasi: { env: { A: 'b' }, preopens: [{ guest: '/data', volume: '@plugin', mode: 'rw' }] } } },
    { abi: 'extism', entry: 'run', config: { k: 'v' }, capabilities: { http: { allowedHosts: ['*.example.com'], responseHeaders: true } }, limits: { varBytes: 10 } },
    { limitz: {} }, { limits: { timeoutMs: 1, extra: 1 } }, { capabilities: { wasi: { preopens: [{ guest: '/d', volume: 'v', extra: 1 }] } } },
    { capabilities: { http: { allowedHosts: ['a'], other: true } } }, { capabilities: { net: {} } }, { capabilities: { wasi: { env: { 'not-a-name': 'x' } } } },
    { limits: { memoryBytes: 1000 } }, { version: '' }, { name: 'UPPER' }, { instance: 'pooled' }, { abi: 'wasm' }, { entry: '' }, { inputSchema: 'string' }
  ]
  for (const m of manifests) {
    let serverAccepts = true
    try { parseManifest(JSON.stringify(m)) } catch (err) { if (isServiceError(err) && err.code === 'INVALID_MANIFEST') serverAccepts = false; else throw err }
    expect([m, validate(m)]).toEqual([m, serverAccepts])
  }
})

describe('every example, sent to the real server, gets the documented answer', () => {
  beforeAll(async () => {
    await buildModules()
    server = await startServer(SERVER_ENV)
  })
  afterAll(async () => {
    await server.stop()
    removeDir(server.dataDir)
  })

  const sent = cases.filter(c => NOT_SENT[c.key] === undefined && !registryDown(c) && !shuttingDown(c))
  test.each(sent.map(c => [c.key, c]))('%s', async (_key, c) => {
    const setup = c.example['x-test-setup'] ?? {}
    await resetTo(setup.plugins ?? [])
    const left = await enterState(setup.state)
    await sendCase(c)
    await Promise.allSettled(left)
  })

  test('without x-request-id, the server makes one and says it', async () => {
    const res = await send('GET', '/healthz', { auth: 'none' })
    expect(res.headers['x-request-id']).toMatch(/^req-[0-9a-z]+$/)
  })
})

// Stopping PostgreSQL cuts off everyone on it: a cluster of this test's own (TEST_PG_BIN).
const describeRegistryDown = canRestartPostgres ? describe : describe.skip
if (!canRestartPostgres && process.env.REQUIRE_POSTGRES === '1') throw new Error('REQUIRE_POSTGRES=1 but TEST_PG_BIN is not set: the registry-down examples must run')
if (!canRestartPostgres) console.warn('openapi examples: the registry-down examples need TEST_PG_BIN (a PostgreSQL cluster of their own); skipped')
describeRegistryDown('the registry-down examples, with the server\'s PostgreSQL registry stopped', () => {
  let cluster: PrivateCluster | undefined
  beforeAll(async () => {
    await buildModules()
    cluster = await startPrivateCluster()
    server = await startServer({ ...SERVER_ENV, REGISTRY_URL: cluster.url }, tempDir(), 60_000)
    await resetTo(['echo'])
    cluster.ctl('stop')
    await until('disconnected from PostgreSQL', async () => await gauge('registry_connected') === 0, 1000)
  }, 120_000)
  afterAll(async () => {
    await server.stop()
    removeDir(server.dataDir)
    cluster?.remove()
  })

  test.each(cases.filter(registryDown).map(c => [c.key, c]))('%s', async (_key, c) => {
    expect(c.example['x-test-setup']?.plugins).toEqual(['echo'])
    await sendCase(c)
  })
})

/** Splits a raw HTTP/1.1 answer (content-length body) into status, headers and body. */
function rawAnswer (raw: Buffer): Answer {
  const end = raw.indexOf('\r\n\r\n')
  const [statusLine = '', ...lines] = raw.subarray(0, end).toString('latin1').split('\r\n')
  const headers: Answer['headers'] = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  const length = Number(headers['content-length'] ?? 0)
  return { status: Number(statusLine.split(' ')[1]), headers, body: raw.subarray(end + 4, end + 4 + length) }
}

// While the server drains (SIGTERM), a request that arrives on a connection that had begun it
// before is refused with 503 NOT_READY (new connections are no longer accepted, idle ones are
// closed). Each example's request is begun on a raw connection (its head but the last line
// end), the server gets SIGTERM, and once it refuses new connections the requests are ended.
describe('the shutting-down examples, on a server that drains', () => {
  const draining = cases.filter(shuttingDown)
  const clients: RawClient[] = []
  const answers = new Map<string, Answer>()
  beforeAll(async () => {
    await buildModules()
    server = await startServer(SERVER_ENV)
    await resetTo(['echo'])
    const ends: Array<Buffer | undefined> = []
    for (const c of draining) {
      const { method, path, headers, body, auth } = buildRequest(c, `openapi-${c.key.replace(/\W+/g, '-')}`)
      const bytes = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body)
      const all: Record<string, string> = { host: new URL(server.url).host, ...(auth === 'none' ? {} : { authorization: `Bearer ${TOKENS[auth ?? 'admin']}` }), ...headers }
      if (bytes !== undefined) all['content-length'] = String(bytes.length)
      const client = await rawClient(server.url)
      client.write(`${method} ${path} HTTP/1.1\r\n${Object.entries(all).map(([k, v]) => `${k}: ${v}\r\n`).join('')}`)
      clients.push(client)
      ends.push(bytes)
    }
    // A round trip after the heads were written: the server has read them by its answer.
    expect((await send('GET', '/healthz', { auth: 'none' })).status).toBe(200)
    server.child.kill('SIGTERM')
    await until('refusing new connections', async () => await new Promise<boolean>(resolve => {
      const probe = connect(Number(new URL(server.url).port), '127.0.0.1')
      probe.once('connect', () => { probe.destroy(); resolve(false) })
      probe.once('error', () => resolve(true))
    }))
    for (const [i, client] of clients.entries()) {
      const bytes: Array<string | Buffer> = ['\r\n', ...(ends[i] !== undefined ? [ends[i] as Buffer] : [])]
      for (const b of bytes) client.write(b)
    }
    for (const [i, client] of clients.entries()) {
      await client.closed
      answers.set((draining[i] as Case).key, rawAnswer(Buffer.from(client.received(), 'latin1')))
    }
  })
  afterAll(async () => {
    for (const client of clients) client.destroy()
    await server.stop()
    removeDir(server.dataDir)
  })

  test.each(draining.map(c => [c.key, c]))('%s', async (_key, c) => {
    expect(['echo']).toEqual(expect.arrayContaining(c.example['x-test-setup']?.plugins ?? []))
    const answer = answers.get(c.key) as Answer
    expect(answerProblem(c, answer, `openapi-${c.key.replace(/\W+/g, '-')}`)).toBeUndefined()
  })
})
