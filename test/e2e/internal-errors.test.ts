// Security issue 16, item 11: an INTERNAL error (a bug of ours, or the host failing under a
// call) answered execute-token callers with the host's error text, DATA_DIR paths included
// (`scandir '<DATA_DIR>/volumes/...'`). A 5xx body now says only "internal error" and the
// request id; the detail goes to the log, with that id.
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FormData, request } from 'undici'
import { wat } from '../helpers/fixtures'
import { serversPerTest, startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'

const ADMIN = 'admin-token-0123456789'
const EXEC = 'exec-token-0123456789ab'

const track = serversPerTest()
let server: RunningServer | undefined

/** A WASI command that prints {} and preopens its private volume. */
const WASI_HELLO = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "{}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 2))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`

async function uploadWithVolume (url: string, name: string): Promise<void> {
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(await wat(WASI_HELLO))]), `${name}.wasm`)
  form.append('manifest', JSON.stringify({ name, capabilities: { wasi: { preopens: [{ guest: '/data', volume: '@plugin', mode: 'rw' }] } } }))
  const res = await request(`${url}/plugins`, { method: 'POST', body: form, headers: { authorization: `Bearer ${ADMIN}` } })
  expect(res.statusCode).toBe(201)
  await res.body.dump()
}

async function execute (url: string, name: string): Promise<{ status: number, body: Record<string, unknown>, text: string, requestId: string }> {
  const res = await request(`${url}/plugins/${name}/execute`, { method: 'POST', body: '', headers: { authorization: `Bearer ${EXEC}` } })
  const text = await res.body.text()
  return { status: res.statusCode, body: JSON.parse(text) as Record<string, unknown>, text, requestId: String(res.headers['x-request-id']) }
}

test('an INTERNAL error under a call answers "internal error" with no host path; the detail is logged with the request id', async () => {
  server = track(await startServer({ AUTH_TOKEN: ADMIN, EXECUTE_TOKENS: EXEC, LOG_LEVEL: 'info' }))
  const { dataDir } = server
  await uploadWithVolume(server.url, 'gone')
  await uploadWithVolume(server.url, 'file')
  expect((await execute(server.url, 'gone')).status).toBe(200)

  // The host fails under the call: the volume directory vanished, or is not a directory.
  rmSync(join(dataDir, 'volumes', 'gone'), { recursive: true, force: true })
  rmSync(join(dataDir, 'volumes', 'file'), { recursive: true, force: true })
  writeFileSync(join(dataDir, 'volumes', 'file'), 'not a directory')

  for (const name of ['gone', 'file']) {
    const res = await execute(server.url, name)
    expect(res.status).toBeGreaterThanOrEqual(500)
    expect(res.text).not.toContain(dataDir)
    expect(res.text).not.toMatch(/ENOENT|ENOTDIR|realpath|scandir|open '|unexpected host error|Error:/)
    if (res.status === 500) {
      expect(res.body).toEqual({ statusCode: 500, code: 'INTERNAL', error: 'Internal Server Error', message: 'internal error' })
      // The operator finds the detail in the log, under the same request id (the log comes
      // through a pipe: it may arrive after the answer).
      const running = server
      const logged = (): string => running.output().split('\n').filter(line => line.includes(`"${res.requestId}"`) && line.includes('request failed')).join('\n')
      for (let i = 0; i < 100 && logged() === ''; i++) await new Promise(resolve => setTimeout(resolve, 20))
      expect(logged()).toContain(join(dataDir, 'volumes', name))
    }
  }
})
