// The floor of bench/http.mts: the ceiling's fastify route plus what any design that runs each
// call on a piscina worker thread must pay, and nothing else: the body handed to a worker, the
// worker hands the same bytes back, they are sent as the reply. No wasm, no admission, no
// metrics. The service's ratio to the ceiling cannot exceed this one's; what lies between the
// two is the service's own work (sandbox, admission, deadline, metrics).
import { createRequire } from 'node:module'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'

const require = createRequire(import.meta.url)
const Fastify = require('fastify') as typeof import('fastify').default
const { Piscina } = require('piscina') as typeof import('piscina')

const workers = Number(process.env.WORKERS ?? availableParallelism())
// The service's piscina settings (src/workers/pool.ts), so the hop costs the same;
// bench/piscina-options.mts varies two of them (FLOOR_ATOMICS, FLOOR_TASKS).
const atomics = (process.env.FLOOR_ATOMICS ?? 'sync') as 'sync' | 'async' | 'disabled'
const pool = new Piscina({
  filename: join(import.meta.dirname, 'floor-worker.mjs'),
  minThreads: workers,
  maxThreads: workers,
  atomics,
  concurrentTasksPerWorker: Number(process.env.FLOOR_TASKS ?? 4),
  idleTimeout: Number.MAX_SAFE_INTEGER,
  recordTiming: false
})

const app = Fastify({ logger: false, bodyLimit: 16 * 1024 * 1024 })
app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => { done(null, body) })
app.post('/echo', async (request, reply) => {
  const input = new Uint8Array(request.body as Buffer) // owned, as the service's route does
  const output = await pool.run(input) as Uint8Array
  return reply.type('application/json').send(Buffer.from(output.buffer, output.byteOffset, output.byteLength))
})

const port = Number(process.env.PORT ?? 0)
app.listen({ host: '127.0.0.1', port }).then(() => {
  const address = app.server.address()
  process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : port })}\n`)
}, (err: unknown) => { console.error(err); process.exit(1) })
process.once('SIGTERM', () => { app.close().then(async () => { await pool.close(); process.exit(0) }, () => process.exit(1)) })
