// Shared by the reliability benchmarks: start `node --no-liftoff --max-semi-space-size=16 dist/main.js` on a free
// 127.0.0.1 port with a temp DATA_DIR, compile WAT fixtures, upload, call, read /proc.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { FormData, request } from 'undici'
import wabtInit from 'wabt'

export const root = resolve(import.meta.dirname, '..')

export interface Service { url: string, child: ChildProcess, stop: () => Promise<void> }

async function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address()
      s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0))
    }).on('error', reject)
  })
}

export async function startService (env: Record<string, string> = {}): Promise<Service> {
  const dataDir = mkdtempSync(join(tmpdir(), 'wph-bench-'))
  const port = await freePort()
  // BENCH_DIST=/other/build/dist runs another build (before/after comparisons)
  const child = spawn(process.execPath, ['--no-liftoff', '--max-semi-space-size=16', join(process.env.BENCH_DIST ?? join(root, 'dist'), 'main.js')], {
    env: { PATH: process.env.PATH ?? '', PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'inherit']
  })
  const url = `http://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    try { const r = await request(`${url}/readyz`); await r.body.dump(); if (r.statusCode === 200) break } catch {}
    if (i > 300) throw new Error('service did not start')
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return {
    url,
    child,
    async stop () {
      child.kill('SIGTERM')
      await new Promise(resolve => child.once('exit', resolve))
      rmSync(dataDir, { recursive: true, force: true })
    }
  }
}

export async function watFixture (name: string, replace: Record<string, string> = {}): Promise<Buffer> {
  const wabt = await wabtInit()
  let source = readFileSync(join(root, 'test/fixtures/plugins', `${name}.wat`), 'utf8')
  for (const [from, to] of Object.entries(replace)) source = source.replaceAll(from, to)
  const mod = wabt.parseWat(`${name}.wat`, source, { multi_value: true, bulk_memory: true, reference_types: true })
  try { return Buffer.from(mod.toBinary({}).buffer) } finally { mod.destroy() }
}

export async function upload (url: string, name: string, bytes: Buffer, manifest: Record<string, unknown> = {}): Promise<void> {
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(bytes)]), `${name}.wasm`)
  form.append('manifest', JSON.stringify({ name, ...manifest }))
  const res = await request(`${url}/plugins`, { method: 'POST', body: form })
  if (res.statusCode !== 201) throw new Error(`upload ${name}: ${res.statusCode} ${await res.body.text()}`)
  await res.body.dump()
}

export async function call (url: string, name: string, body = '{}', query = ''): Promise<{ status: number, text: string }> {
  const res = await request(`${url}/plugins/${name}/execute${query}`, { method: 'POST', body, headers: { 'content-type': 'application/json' } })
  return { status: res.statusCode, text: await res.body.text() }
}

export function fds (pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length
}

export function rssMiB (pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024
}

export function quantile (sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN
}
