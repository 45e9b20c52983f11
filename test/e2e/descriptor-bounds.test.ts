// Security issue 16, item 4: descriptors list every import and export name (exports twice
// when they are json entries), so unbounded names made 98 MB descriptors; GET /plugins then
// failed with `Invalid string length` and the heap ran out, at every restart too. Names and
// descriptors are bounded at upload (400), GET /plugins is written descriptor by descriptor,
// and a stored descriptor over the bound is skipped at start-up, never fatal.
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FormData, request } from 'undici'
import { serversPerTest, startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'
import { echoModule } from '../helpers/wasm-writer'
import { MAX_DESCRIPTOR_BYTES } from '../../src/registry/descriptor-bounds'
import { MAX_NAME_BYTES } from '../../src/sandbox/limits'

const track = serversPerTest()
let server: RunningServer | undefined

async function upload (url: string, name: string, wasm: Buffer): Promise<{ status: number, body: Record<string, unknown> }> {
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(wasm)], { type: 'application/wasm' }), `${name}.wasm`)
  const res = await request(`${url}/plugins`, { method: 'POST', body: form })
  return { status: res.statusCode, body: await res.body.json() as Record<string, unknown> }
}

async function listPlugins (url: string): Promise<{ status: number, type: string, names: string[] }> {
  const res = await request(`${url}/plugins`)
  const text = await res.body.text()
  const names = res.statusCode === 200 ? (JSON.parse(text) as { plugins: Array<{ name: string }> }).plugins.map(p => p.name) : []
  return { status: res.statusCode, type: String(res.headers['content-type']), names }
}

/** `n` distinct export names of `length` characters. */
function names (n: number, length: number): string[] {
  return Array.from({ length: n }, (_, i) => `e${i}-`.padEnd(length, 'x'))
}

test('an export or import name over the bound is refused at upload with a 400 that names it', async () => {
  server = track(await startServer())
  const longExport = await upload(server.url, 'long-export', echoModule({ extraExports: names(1, 4900) }))
  expect(longExport.status).toBe(400)
  expect(longExport.body.code).toBe('INVALID_MODULE')
  expect(String(longExport.body.message)).toMatch(new RegExp(`export name of 4900 bytes; at most ${MAX_NAME_BYTES} allowed`))

  const longImport = await upload(server.url, 'long-import', echoModule({ imports: names(1, MAX_NAME_BYTES + 1) }))
  expect(longImport.status).toBe(400)
  expect(String(longImport.body.message)).toMatch(new RegExp(`import name of ${MAX_NAME_BYTES + 1} bytes; at most ${MAX_NAME_BYTES} allowed`))

  // At the bound is fine.
  expect((await upload(server.url, 'at-bound', echoModule({ extraExports: names(1, MAX_NAME_BYTES) }))).status).toBe(201)
})

test('a module whose descriptor would pass the bound is refused with a 400 saying what takes the room', async () => {
  server = track(await startServer())
  // 600 exports of 1,000 characters: each name is under the bound, the descriptor (names in
  // `exports` and again in `entries`) would be ~1.2 MB.
  const res = await upload(server.url, 'many-names', echoModule({ extraExports: names(600, 1000) }))
  expect(res.status).toBe(400)
  expect(res.body.code).toBe('INVALID_MODULE')
  expect(String(res.body.message)).toMatch(new RegExp(`descriptor would take \\d+ bytes \\(export names \\d+, json entries \\d+, imports \\d+\\); at most ${MAX_DESCRIPTOR_BYTES} allowed`))
  expect((await listPlugins(server.url)).names).toEqual([])

  // Just under the bound is accepted, and a list of several such plugins is valid JSON.
  for (const name of ['near-a', 'near-b', 'near-c']) expect((await upload(server.url, name, echoModule({ extraExports: names(100, 1000) }))).status).toBe(201)
  const list = await listPlugins(server.url)
  expect(list.status).toBe(200)
  expect(list.type).toMatch(/^application\/json/)
  expect(list.names.sort()).toEqual(['near-a', 'near-b', 'near-c'])
})

test('a stored descriptor over the bound (written before it existed) is skipped and logged at start-up, never fatal', async () => {
  server = track(await startServer())
  expect((await upload(server.url, 'ok', echoModule())).status).toBe(201)
  await server.stop()
  const dataDir = server.dataDir
  // Two records as an older version stored them, pointing at the same (valid) module: one
  // whose descriptor is over MAX_DESCRIPTOR_BYTES, one whose file is too big to be read at all.
  const ok = JSON.parse(readFileSync(join(dataDir, 'plugins', 'ok.json'), 'utf8')) as { descriptor: { exports: unknown[], entries: string[] } }
  const bloated = (n: number, name: string): string => {
    const extra = names(n, 1000)
    return JSON.stringify({
      ...ok,
      descriptor: { ...ok.descriptor, name, exports: [...ok.descriptor.exports, ...extra.map(e => ({ name: e, kind: 'func' }))], entries: [...ok.descriptor.entries, ...extra] }
    })
  }
  writeFileSync(join(dataDir, 'plugins', 'bloated.json'), bloated(300, 'bloated'))
  writeFileSync(join(dataDir, 'plugins', 'huge.json'), bloated(3000, 'huge'))

  server = track(await startServer({}, dataDir))
  const list = await listPlugins(server.url)
  expect(list.status).toBe(200)
  expect(list.names).toEqual(['ok'])
  // Skipped and logged, each with its reason, and quarantined (store.quarantine) rather than
  // left in plugins/: the wording is the quarantine's since sec-fs.
  expect(server.output()).toMatch(/descriptor would take \d+ bytes[^"]*at most 262144 allowed.*"msg":"plugin 'bloated' no longer loads: moved with its volume to quarantine/)
  expect(server.output()).toMatch(/descriptor file of \d+ bytes; at most \d+ are read.*"msg":"plugin 'huge' no longer loads: moved with its volume to quarantine/)
  const res = await request(`${server.url}/plugins/ok/execute`, { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json' } })
  expect(res.statusCode).toBe(200)
  expect(await res.body.text()).toBe('{"a":1}')
})
