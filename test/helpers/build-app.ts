// A fresh app per test: temp data dir, silent logs, a small real pool. Always close() it.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app'
import { loadConfig } from '../../src/config'
import type { Config } from '../../src/config'

export interface TestApp {
  app: FastifyInstance
  config: Config
  dataDir: string
  close: () => Promise<void>
}

export function tempDir (prefix = 'wph-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

export async function buildTestApp (env: Record<string, string> = {}, dataDir = tempDir()): Promise<TestApp> {
  const config = loadConfig({ WORKERS: '2', LOG_LEVEL: 'silent', DATA_DIR: dataDir, ...env })
  const app = await buildApp(config, { logger: false })
  await app.ready()
  return {
    app,
    config,
    dataDir,
    async close () {
      await app.close()
    }
  }
}

export function removeDir (dir: string): void {
  rmSync(dir, { recursive: true, force: true })
}

/** A multipart body for POST/PUT /plugins, built by hand so tests control every byte. */
export function multipart (parts: Array<{ name: string, filename?: string, content: Buffer | string, type?: string }>): { payload: Buffer, headers: Record<string, string> } {
  const boundary = `----wph${Math.random().toString(16).slice(2)}`
  const chunks: Buffer[] = []
  for (const p of parts) {
    const disposition = `form-data; name="${p.name}"${p.filename !== undefined ? `; filename="${p.filename}"` : ''}`
    const type = p.type ?? (p.filename !== undefined ? 'application/wasm' : 'text/plain')
    chunks.push(Buffer.from(`--${boundary}\r\ncontent-disposition: ${disposition}\r\ncontent-type: ${type}\r\n\r\n`))
    chunks.push(Buffer.isBuffer(p.content) ? p.content : Buffer.from(p.content))
    chunks.push(Buffer.from('\r\n'))
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`))
  return { payload: Buffer.concat(chunks), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } }
}

/** Upload parts for a module and an optional manifest object. */
export function uploadBody (wasm: Buffer, manifest?: unknown, filename = 'plugin.wasm'): { payload: Buffer, headers: Record<string, string> } {
  const parts: Array<{ name: string, filename?: string, content: Buffer | string, type?: string }> = [{ name: 'module', filename, content: wasm }]
  if (manifest !== undefined) parts.push({ name: 'manifest', content: JSON.stringify(manifest), type: 'application/json' })
  return multipart(parts)
}
