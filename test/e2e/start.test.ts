// Several replicas started at once from one checkout: `npm start` twice at the same moment,
// on different ports and data dirs, in a copy of the project. One of them compiles (into a
// temp dir renamed over dist/), the other waits for that build and reuses it; both serve.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { cpSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { request } from 'undici'
import { removeDir, tempDir } from '../helpers/build-app'
import { freePort } from '../helpers/http'

jest.setTimeout(300_000)

const ROOT = resolve(__dirname, '..', '..')

async function waitReady (url: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 240_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`npm start exited with ${child.exitCode}: ${log()}`)
    try {
      const res = await request(`${url}/readyz`)
      await res.body.dump()
      if (res.statusCode === 200) return
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`not ready: ${log()}`)
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

test('two `npm start` at once from one checkout: one build, both replicas serve', async () => {
  const project = tempDir('wph-start-')
  const children: ChildProcess[] = []
  try {
    for (const item of ['src', 'scripts', 'package.json', 'openapi.yaml', 'tsconfig.json', 'tsconfig.build.json']) cpSync(join(ROOT, item), join(project, item), { recursive: true })
    symlinkSync(join(ROOT, 'node_modules'), join(project, 'node_modules'))
    const started = await Promise.all([0, 1].map(async (i) => {
      const port = await freePort()
      const dataDir = join(project, `data-${i}`)
      mkdirSync(dataDir)
      let log = ''
      const child = spawn('npm', ['start'], {
        cwd: project,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? project, HOST: '127.0.0.1', PORT: String(port), DATA_DIR: dataDir, WORKERS: '1', LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true
      })
      children.push(child)
      child.stdout?.on('data', (d: Buffer) => { log += d.toString() })
      child.stderr?.on('data', (d: Buffer) => { log += d.toString() })
      return { url: `http://127.0.0.1:${port}`, child, log: () => log }
    }))
    await Promise.all(started.map(async s => waitReady(s.url, s.child, s.log)))
    const logs = started.map(s => s.log())
    expect(logs.filter(l => l.includes('build: dist/ built'))).toHaveLength(1)
    expect(logs.filter(l => l.includes('build: dist/ is up to date'))).toHaveLength(1)
    // Nothing left beside dist/: no temp build, no lock.
    expect(readdirSync(project).filter(f => f.startsWith('dist.') || f === '.build.lock')).toEqual([])
  } finally {
    for (const child of children) {
      if (child.exitCode === null && child.pid !== undefined) {
        process.kill(-child.pid, 'SIGTERM')
        await once(child, 'exit')
      }
    }
    removeDir(project)
  }
})
