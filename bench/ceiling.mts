// The ceiling of bench/http.mts: a plain fastify app in its own node process whose route parses
// the JSON body and returns it (fastify's own JSON parser and serializer). What an execute call
// costs above this is what the service adds: the worker hop, the sandbox, the plugin.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const Fastify = require('fastify') as typeof import('fastify').default

const app = Fastify({ logger: false, bodyLimit: 16 * 1024 * 1024 })
app.post('/echo', async (request) => request.body)
app.get('/hello', async () => ({ hello: 'world' }))

const port = Number(process.env.PORT ?? 0)
app.listen({ host: '127.0.0.1', port }).then(() => {
  const address = app.server.address()
  process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : port })}\n`)
}, (err: unknown) => { console.error(err); process.exit(1) })
process.once('SIGTERM', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
