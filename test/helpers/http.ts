// The real service as a user runs it: `node dist/main.js` in a child process on 127.0.0.1,
// configured through its environment, driven with undici.
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { resolve } from 'node:path'
import { request } from 'undici'
import { removeDir, tempDir } from './build-app'

export const MAIN = resolve(__dirname, '..', '..', 'dist', 'main.js')

export interface RunningServer {
  url: string
  dataDir: string
  child: ChildProcess
  output: () => string
  /** SIGTERM, then the exit code (or the signal name). */
  stop: (signal?: NodeJS.Signals) => Promise<number | string>
}

export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  server.close()
  await once(server, 'close')
  return port
}

/** Starts the service and waits until /readyz answers 200 (for at most `readyTimeoutMs`). */
export async function startServer (env: Record<string, string> = {}, dataDir = tempDir(), readyTimeoutMs = 15_000): Promise<RunningServer> {
  const port = await freePort()
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(port), DATA_DIR: dataDir, WORKERS: '2', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let log = ''
  child.stdout?.on('data', (d: Buffer) => { log += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { log += d.toString() })
  const url = `http://127.0.0.1:${port}`
  const exited = once(child, 'exit')
  const deadline = Date.now() + readyTimeoutMs
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}: ${log}`)
    try {
      const res = await request(`${url}/readyz`)
      await res.body.dump()
      if (res.statusCode === 200) break
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`server did not become ready: ${log}`)
    }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return {
    url,
    dataDir,
    child,
    output: () => log,
    async stop (signal = 'SIGTERM') {
      if (child.exitCode !== null) return child.exitCode
      child.kill(signal)
      const [code, sig] = await exited as [number | null, string | null]
      return code ?? sig ?? -1
    }
  }
}

/**
 * For a test file whose tests each start servers: returns `track`, which registers a server
 * to be stopped (and its data dir removed) after the test that started it.
 */
export function serversPerTest (): (server: RunningServer) => RunningServer {
  const running: RunningServer[] = []
  afterEach(async () => {
    for (const server of running.splice(0)) {
      await server.stop()
      removeDir(server.dataDir)
    }
  })
  return (server) => { running.push(server); return server }
}
