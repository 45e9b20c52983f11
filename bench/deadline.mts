// Deadline overshoot: how long after `timeoutMs` a runaway call's 504 arrives, over real
// HTTP against `node dist/main.js`. A benchmark, not a test: run `npm run bench:deadline`
// (BENCH_DIST=/other/build/dist to run another build).
import { spawn } from 'node:child_process'
import { readFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { FormData, request } from 'undici'
import wabtInit from 'wabt'

const root = resolve(import.meta.dirname, '..')
const TIMEOUT_MS = 250
const CALLS = Number(process.env.CALLS ?? 30)

async function main (): Promise<void> {
  const wabt = await wabtInit()
  const source = readFileSync(join(root, 'test/fixtures/plugins/hostile.wat'), 'utf8')
  const wasm = Buffer.from(wabt.parseWat('hostile.wat', source, { bulk_memory: true, multi_value: true }).toBinary({}).buffer)
  const dataDir = mkdtempSync(join(tmpdir(), 'wph-bench-'))
  const port = 18000 + Math.floor(Math.random() * 1000)
  const child = spawn(process.execPath, [join(process.env.BENCH_DIST ?? join(root, 'dist'), 'main.js')], {
    // BREAKER_THRESHOLD=0: the breaker would pause the plugin after a few kills; every call here must be killed.
    env: { PATH: process.env.PATH ?? '', PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: 'warn', WORKERS: '2', BREAKER_THRESHOLD: '0' },
    stdio: 'inherit'
  })
  const url = `http://127.0.0.1:${port}`
  try {
    for (let i = 0; ; i++) {
      try { const r = await request(`${url}/readyz`); await r.body.dump(); if (r.statusCode === 200) break } catch {}
      if (i > 200) throw new Error('server did not start')
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    const form = new FormData()
    form.append('module', new Blob([new Uint8Array(wasm)]), 'hostile.wasm')
    form.append('manifest', JSON.stringify({ name: 'hostile', limits: { timeoutMs: TIMEOUT_MS } }))
    const up = await request(`${url}/plugins`, { method: 'POST', body: form })
    if (up.statusCode !== 201) throw new Error(`upload: ${up.statusCode} ${await up.body.text()}`)
    await up.body.dump()
    const results: Record<string, number[]> = {}
    for (const fn of ['loop', 'fill_loop']) {
      const overshoot: number[] = []
      for (let i = 0; i < CALLS; i++) {
        const t0 = performance.now()
        const res = await request(`${url}/plugins/hostile/execute?function=${fn}`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })
        await res.body.dump()
        if (res.statusCode !== 504) throw new Error(`${fn}: expected 504, got ${res.statusCode}`)
        overshoot.push(performance.now() - t0 - TIMEOUT_MS)
      }
      results[fn] = overshoot.sort((a, b) => a - b)
    }
    const q = (xs: number[], p: number): string => (xs[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? NaN).toFixed(1)
    console.log(`deadline overshoot over real HTTP, timeoutMs=${TIMEOUT_MS}, ${CALLS} calls each (ms after the deadline until the 504 arrived)`)
    for (const [fn, xs] of Object.entries(results)) {
      console.log(`${fn.padEnd(10)} p50 ${q(xs, 0.5)}  p90 ${q(xs, 0.9)}  p99 ${q(xs, 0.99)}  max ${q(xs, 1)}`)
    }
  } finally {
    child.kill('SIGTERM')
    rmSync(dataDir, { recursive: true, force: true })
  }
}

main().catch((err: unknown) => { console.error(err); process.exitCode = 1 })
