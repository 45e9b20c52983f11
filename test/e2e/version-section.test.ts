// Security issue 16, item 12: a module's `version` custom section becomes the descriptor's
// version, which every execute answer sends as `x-plugin-version`. A section holding CRLF or a
// control character made every call of the plugin fail with 500 (node's ERR_INVALID_CHAR).
// Such a section is now ignored (the version falls back to 0.0.0, as for one that is not
// UTF-8), and a descriptor stored before the fix is repaired when the registry loads it.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FormData, request } from 'undici'
import { serversPerTest, startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'
import { echoModule } from '../helpers/wasm-writer'

const track = serversPerTest()
let server: RunningServer | undefined

async function upload (url: string, name: string, version: string, manifest?: Record<string, unknown>): Promise<{ status: number, body: Record<string, unknown> }> {
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(echoModule({ custom: [['version', Buffer.from(version)]] }))]), `${name}.wasm`)
  if (manifest !== undefined) form.append('manifest', JSON.stringify(manifest))
  const res = await request(`${url}/plugins`, { method: 'POST', body: form })
  return { status: res.statusCode, body: await res.body.json() as Record<string, unknown> }
}

async function execute (url: string, name: string): Promise<{ status: number, version: unknown, text: string }> {
  const res = await request(`${url}/plugins/${name}/execute`, { method: 'POST', body: '{"ok":true}', headers: { 'content-type': 'application/json' } })
  return { status: res.statusCode, version: res.headers['x-plugin-version'], text: await res.body.text() }
}

const HOSTILE: Array<[string, string]> = [
  ['crlf', '1.0.0\r\nx-injected: yes'],
  ['lf', '1.0.0\nx-injected: yes'],
  ['control', '1.0.0\u0001'],
  ['space', '1.0 beta'],
  ['unicode', '1.0.0-\u00e9t\u00e9']
]

test('a version section with CRLF, a control character or anything the manifest would refuse is ignored: 0.0.0, and calls answer 200', async () => {
  server = track(await startServer())
  for (const [name, version] of HOSTILE) {
    const up = await upload(server.url, name, version)
    expect(up.status).toBe(201)
    expect(up.body.version).toBe('0.0.0')
    const res = await execute(server.url, name)
    expect({ name, status: res.status, text: res.text }).toEqual({ name, status: 200, text: '{"ok":true}' })
    expect(res.version).toBe('0.0.0')
  }
  // A valid section is still used (trimmed), and the manifest's version still wins over it.
  expect((await upload(server.url, 'valid', ' 2.1.0+build.7\n')).body.version).toBe('2.1.0+build.7')
  expect((await execute(server.url, 'valid')).version).toBe('2.1.0+build.7')
  expect((await upload(server.url, 'manifest-wins', '1.0\r\n', { version: '3.0.0' })).body.version).toBe('3.0.0')
})

test('a descriptor stored before the fix with such a version is repaired at load: calls answer 200', async () => {
  server = track(await startServer())
  expect((await upload(server.url, 'old', '4.0.0')).status).toBe(201)
  await server.stop()
  const dataDir = server.dataDir
  const file = join(dataDir, 'plugins', 'old.json')
  const record = JSON.parse(readFileSync(file, 'utf8')) as { descriptor: { version: string } }
  record.descriptor.version = '4.0.0\r\nx-injected: yes'
  writeFileSync(file, JSON.stringify(record))

  server = track(await startServer({}, dataDir))
  const res = await execute(server.url, 'old')
  expect(res.status).toBe(200)
  // Re-derived as at upload: the module's own (valid) section.
  expect(res.version).toBe('4.0.0')
  const described = await request(`${server.url}/plugins/old`)
  expect((await described.body.json() as { version: string }).version).toBe('4.0.0')
})
