// A hostile client in its own process (so it does not share the measuring client's event
// loop): CLIENTS concurrent loops calling a runaway plugin for SECONDS, ignoring retry-after.
// Prints a JSON object of response counts by status.   node bench/hammer.mts URL SECONDS CLIENTS
import { call } from './service.mts'

const [url = '', seconds = '5', clients = '4'] = process.argv.slice(2)
const end = performance.now() + Number(seconds) * 1000
const statuses: Record<string, number> = {}
await Promise.all(Array.from({ length: Number(clients) }, async () => {
  while (performance.now() < end) {
    const res = await call(url, 'runaway', '{}', '?function=loop')
    statuses[res.status] = (statuses[res.status] ?? 0) + 1
  }
}))
process.stdout.write(JSON.stringify(statuses))
