// Issue 17, "a plugin author's first hour": what an author runs into while iterating on a
// plugin against the real server.
import { FormData, request } from 'undici'
import { removeDir } from '../helpers/build-app'
import { startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'
import { echoModule } from '../helpers/wasm-writer'

let server: RunningServer | undefined

afterEach(async () => {
  if (server !== undefined) {
    await server.stop()
    removeDir(server.dataDir)
    server = undefined
  }
})

async function send (url: string, method: 'POST' | 'PUT', path: string, wasm: Buffer, manifest?: unknown): Promise<{ status: number, body: Record<string, unknown> }> {
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(wasm)]), 'plugin.wasm')
  if (manifest !== undefined) form.append('manifest', JSON.stringify(manifest))
  const res = await request(`${url}${path}`, { method, body: form })
  return { status: res.statusCode, body: await res.body.json() as Record<string, unknown> }
}

test('PUT without a manifest part keeps the current manifest; the version comes from the new module\'s section when it has one', async () => {
  server = await startServer()
  const manifest = { name: 'keeper', version: '1.0.0', limits: { timeoutMs: 1234, outputBytes: 4096 }, inputSchema: { type: 'object', required: ['x'] } }
  expect((await send(server.url, 'POST', '/plugins', echoModule(), manifest)).status).toBe(201)

  // A rebuilt module without a version section: everything of the manifest stays, version too.
  const rebuilt = await send(server.url, 'PUT', '/plugins/keeper', echoModule({ extraExports: ['run'] }))
  expect(rebuilt.status).toBe(200)
  expect(rebuilt.body).toMatchObject({ version: '1.0.0', limits: { timeoutMs: 1234, outputBytes: 4096 }, inputSchema: { type: 'object', required: ['x'] }, entries: ['execute', 'run'] })
  const refused = await request(`${server.url}/plugins/keeper/execute`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })
  expect(refused.statusCode).toBe(400) // the kept inputSchema still applies
  await refused.body.dump()

  // A module that names its version: that version, the rest of the manifest kept.
  const versioned = await send(server.url, 'PUT', '/plugins/keeper', echoModule({ custom: [['version', Buffer.from('2.0.0')]] }))
  expect(versioned.status).toBe(200)
  expect(versioned.body).toMatchObject({ version: '2.0.0', limits: { timeoutMs: 1234 } })

  // Kept across a restart as it was answered.
  await server.stop()
  server = await startServer({}, server.dataDir)
  const described = await request(`${server.url}/plugins/keeper`)
  expect(await described.body.json()).toMatchObject({ version: '2.0.0', limits: { timeoutMs: 1234 }, inputSchema: { required: ['x'] } })

  // An explicit manifest still replaces the whole manifest.
  const explicit = await send(server.url, 'PUT', '/plugins/keeper', echoModule(), {})
  expect(explicit.status).toBe(200)
  expect(explicit.body.version).toBe('0.0.0')
  expect(explicit.body.limits).toMatchObject({ timeoutMs: 5000 })
  expect(explicit.body.inputSchema).toBeUndefined()
})
