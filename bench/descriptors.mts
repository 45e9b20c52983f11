// Heap exhaustion through descriptors (security issue 16, item 4): uploads modules whose
// export names make huge descriptors, sampling the server's RSS after each upload and after
// GET /plugins, then restarts it on the same data. A measurement, not a test.
// `npm run build && node bench/descriptors.mts` (DESCRIPTORS_N=8 uploads; DESCRIPTORS_NAME=4900
// characters per name; DESCRIPTORS_EXPORTS=9990 exports).
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FormData, request } from 'undici'
import { echoModule } from '../test/helpers/wasm-writer.ts'
import { root, rssMiB } from './service.mts'

const N = Number(process.env.DESCRIPTORS_N ?? 8)
const NAME = Number(process.env.DESCRIPTORS_NAME ?? 4900)
const EXPORTS = Number(process.env.DESCRIPTORS_EXPORTS ?? 9990)

async function start (dataDir: string, port: number): Promise<{ url: string, pid: number, stop: () => Promise<void>, exited: () => number | null }> {
  const child = spawn(process.execPath, ['--no-liftoff', '--max-semi-space-size=16', join(process.env.BENCH_DIST ?? join(root, 'dist'), 'main.js')], {
    env: { PATH: process.env.PATH ?? '', PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: 'warn', WORKERS: '1' },
    stdio: ['ignore', 'ignore', 'inherit']
  })
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    if (child.exitCode !== null || child.signalCode !== null) break
    try { const r = await request(`${url}/readyz`); await r.body.dump(); if (r.statusCode === 200) break } catch {}
    if (i > 6000) throw new Error('service did not start')
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return {
    url,
    pid: child.pid ?? 0,
    exited: () => child.exitCode ?? (child.signalCode !== null ? -1 : null),
    async stop () {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      await new Promise(resolve => child.once('exit', resolve))
    }
  }
}

const dataDir = mkdtempSync(join(tmpdir(), 'wph-descriptors-'))
const port = 20_000 + Math.floor(Math.random() * 20_000)
const rows: Array<Record<string, unknown>> = []
try {
  let service = await start(dataDir, port)
  rows.push({ step: 'started', rssMiB: Math.round(rssMiB(service.pid)) })
  for (let i = 0; i < N; i++) {
    const prefix = `p${i}-e`
    const names = Array.from({ length: EXPORTS - 2 }, (_, j) => `${prefix}${j}-`.padEnd(NAME, 'x'))
    const bytes = echoModule({ extraExports: names })
    const form = new FormData()
    form.append('module', new Blob([new Uint8Array(bytes)]), `big${i}.wasm`)
    const t0 = performance.now()
    const res = await request(`${service.url}/plugins`, { method: 'POST', body: form })
    const text = await res.body.text()
    rows.push({ step: `upload ${i + 1} (${(bytes.length / 1e6).toFixed(1)} MB)`, status: res.statusCode, ms: Math.round(performance.now() - t0), rssMiB: Math.round(rssMiB(service.pid)), answer: text.slice(0, 120) })
    const list = await request(`${service.url}/plugins`)
    let size = 0
    for await (const chunk of list.body) size += (chunk as Buffer).length
    rows.push({ step: `GET /plugins after ${i + 1}`, status: list.statusCode, bytes: size, rssMiB: Math.round(rssMiB(service.pid)) })
  }
  await service.stop()
  service = await start(dataDir, port)
  const alive = service.exited() === null
  rows.push({ step: 'restart on the same data', alive, rssMiB: alive ? Math.round(rssMiB(service.pid)) : 0 })
  if (alive) {
    const list = await request(`${service.url}/plugins`)
    const text = await list.body.text()
    rows.push({ step: 'GET /plugins after restart', status: list.statusCode, bytes: text.length, rssMiB: Math.round(rssMiB(service.pid)) })
  }
  await service.stop()
} finally {
  rmSync(dataDir, { recursive: true, force: true })
}
console.table(rows)
