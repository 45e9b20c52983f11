// One load trial of bench/http.mts, in its own process so the load generator never shares an
// event loop with a server: autocannon against one URL, the same body on every request.
// Prints one JSON line: req/s (2xx per second), latency percentiles (ms, from every 2xx
// response's own timing, not autocannon's whole-millisecond histogram), and failures.
//   node bench/load.mts '{"url":"http://127.0.0.1:8080/x","bodyFile":"/tmp/b.json","seconds":5,"connections":16}'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

interface Options { url: string, bodyFile: string, seconds: number, connections: number, contentType?: string }
interface Instance {
  on: ((event: 'response', fn: (client: unknown, status: number, bytes: number, ms: number) => void) => void) &
  ((event: 'done', fn: (result: AutocannonResult) => void) => void)
}
interface AutocannonResult { errors: number, timeouts: number, non2xx: number, requests: { average: number }, duration: number }
type Autocannon = (opts: Record<string, unknown>) => Instance

const require = createRequire(import.meta.url)
const autocannon = require('autocannon') as Autocannon
const options = JSON.parse(process.argv[2] ?? '{}') as Options
const body = readFileSync(options.bodyFile)

const latencies: number[] = []
const started = performance.now()
const instance = autocannon({
  url: options.url,
  method: 'POST',
  headers: { 'content-type': options.contentType ?? 'application/json' },
  body,
  connections: options.connections,
  duration: options.seconds
})
instance.on('response', (_client, status, _bytes, ms) => { if (status >= 200 && status < 300) latencies.push(ms) })
instance.on('done', (result) => {
  const elapsed = (performance.now() - started) / 1000
  const sorted = Float64Array.from(latencies).sort()
  const at = (p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN
  process.stdout.write(`${JSON.stringify({
    rps: sorted.length / elapsed,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    max: at(1),
    ok: sorted.length,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts
  })}\n`)
})
