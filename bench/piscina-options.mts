// piscina's options on the service's hop (issue 14): bench/floor.mts (a fastify route plus one
// piscina round trip, the service's settings) started once per variant, the variants' trials
// interleaved so a noisy machine moves them alike; req/s, p50/p99 and CPU per request of the
// whole process (/proc/<pid>/stat), medians of the trials.
//   node bench/piscina-options.mts   BENCH_SECONDS=5 BENCH_TRIALS=3 WORKERS=2
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'

const root = resolve(import.meta.dirname, '..')
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const TRIALS = Number(process.env.BENCH_TRIALS ?? 3)
const WORKERS = process.env.WORKERS ?? '2'
const VARIANTS: Array<{ label: string, env: Record<string, string> }> = [
  { label: "atomics 'sync', 4 tasks per thread (the service's)", env: { FLOOR_ATOMICS: 'sync', FLOOR_TASKS: '4' } },
  { label: "atomics 'sync', 1 task per thread", env: { FLOOR_ATOMICS: 'sync', FLOOR_TASKS: '1' } },
  { label: "atomics 'async', 4 tasks per thread", env: { FLOOR_ATOMICS: 'async', FLOOR_TASKS: '4' } },
  { label: "atomics 'disabled', 4 tasks per thread", env: { FLOOR_ATOMICS: 'disabled', FLOOR_TASKS: '4' } }
]

const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
/** CPU time of a process so far (all its threads), in µs. */
function cpuUs (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
  return (Number(fields[11]) + Number(fields[12])) * 1e6 / ticks
}

async function start (env: Record<string, string>): Promise<{ child: ChildProcess, url: string }> {
  const child = spawn(process.execPath, [join(root, 'bench/floor.mts')], { env: { ...process.env, PORT: '0', WORKERS, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  const line = await new Promise<string>(resolve => createInterface({ input: child.stdout as NodeJS.ReadableStream }).once('line', resolve))
  return { child, url: `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}/echo` }
}

const bodyFile = join(tmpdir(), `wph-piscina-options-${process.pid}.json`)
writeFileSync(bodyFile, JSON.stringify({ text: 'The quick brown fox jumps over the lazy dog', n: [1, 2, 3], nested: { ok: true, ratio: 0.75 } }))
const servers = await Promise.all(VARIANTS.map(async v => start(v.env)))
const results = VARIANTS.map(() => [] as Array<{ rps: number, p50: number, p99: number, cpuUs: number }>)
try {
  for (let t = 0; t < TRIALS; t++) {
    for (const [i, server] of servers.entries()) {
      const pid = server.child.pid as number
      const cpu0 = cpuUs(pid)
      const out = execFileSync(process.execPath, [join(root, 'bench/load.mts'), JSON.stringify({ url: server.url, bodyFile, seconds: SECONDS, connections: 16 })], { encoding: 'utf8' })
      const r = JSON.parse(out.trim().split('\n').pop() as string) as { rps: number, p50: number, p99: number, ok: number }
      results[i]?.push({ rps: r.rps, p50: r.p50, p99: r.p99, cpuUs: (cpuUs(pid) - cpu0) / Math.max(1, r.ok) })
      console.error(`trial ${t + 1}/${TRIALS} ${VARIANTS[i]?.label}: ${r.rps.toFixed(0)} req/s`)
    }
  }
} finally {
  for (const s of servers) s.child.kill('SIGTERM')
}
const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN
console.log(`\n${WORKERS} workers, 16 connections, ${TRIALS} x ${SECONDS} s trials interleaved, medians\n`)
console.log('| piscina options | req/s | p50 ms | p99 ms | process CPU µs/req |\n| --- | ---: | ---: | ---: | ---: |')
for (const [i, v] of VARIANTS.entries()) {
  const r = results[i] ?? []
  console.log(`| ${v.label} | ${med(r.map(x => x.rps)).toFixed(0)} | ${med(r.map(x => x.p50)).toFixed(2)} | ${med(r.map(x => x.p99)).toFixed(2)} | ${med(r.map(x => x.cpuUs)).toFixed(0)} |`)
}
