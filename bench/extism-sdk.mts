// The Extism comparison of bench/http.mts: a fastify route that runs the same Extism plugin
// with the Extism JS SDK (@extism/extism), in two ways a service built on the SDK would:
//   POST /per-call   a plugin created per call (fresh state per call, as the service gives),
//                    closed after it
//   POST /worker     one plugin created at start with runInWorker: true and reused by every
//                    call, one call at a time (the SDK refuses a call while one runs)
// The body is the plugin's input as it is; the reply is its output. Prints {"port"} when up.
//   WASM=/path/to/plugin.wasm FUNCTION=count_vowels PORT=0 node bench/extism-sdk.mts
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const Fastify = require('fastify') as typeof import('fastify').default
const createPlugin = (require('@extism/extism') as typeof import('@extism/extism')).default

const wasm = readFileSync(process.env.WASM ?? '')
const fn = process.env.FUNCTION ?? 'count_vowels'
// Quiet, as the service's pino at LOG_LEVEL=warn drops the plugin's info lines.
const quiet = { trace () {}, debug () {}, info () {}, warn () {}, error () {}, log () {} } as unknown as Console
// The SDK compiles the module per createPlugin; give it the compiled module once, as the
// service compiles once at upload.
const module = await WebAssembly.compile(wasm)
const manifest = { wasm: [{ module }] }
const reused = await createPlugin(manifest, { useWasi: false, runInWorker: true, logger: quiet })

const app = Fastify({ logger: false, bodyLimit: 16 * 1024 * 1024 })
app.removeAllContentTypeParsers()
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => { done(null, body) })
app.post('/per-call', async (request, reply) => {
  const plugin = await createPlugin(manifest, { useWasi: false, logger: quiet })
  try {
    const out = await plugin.call(fn, new Uint8Array(request.body as Buffer))
    return reply.type('application/json').send(out === null ? '' : Buffer.from(out.bytes()))
  } finally {
    await plugin.close()
  }
})
// A background plugin takes one call at a time ("plugin is not reentrant" otherwise): calls
// wait their turn here, as a service built on one reused plugin would have to make them.
let turn: Promise<unknown> = Promise.resolve()
app.post('/worker', async (request, reply) => {
  const input = new Uint8Array(request.body as Buffer)
  const call = turn.then(async () => await reused.call(fn, input))
  turn = call.catch(() => {})
  const out = await call
  return reply.type('application/json').send(out === null ? '' : Buffer.from(out.bytes()))
})

const port = Number(process.env.PORT ?? 0)
await app.listen({ host: '127.0.0.1', port })
const address = app.server.address()
process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : port })}\n`)
process.once('SIGTERM', () => { app.close().then(async () => { await reused.close(); process.exit(0) }, () => process.exit(1)) })
