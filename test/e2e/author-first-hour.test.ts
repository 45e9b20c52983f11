// Issue 17, "a plugin author's first hour": what an author runs into while iterating on a
// plugin against the real server.
import { spawnSync } from 'node:child_process'
import { FormData, request } from 'undici'
import { MAIN, serversPerTest, startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'
import { echoModule } from '../helpers/wasm-writer'

const track = serversPerTest()
let server: RunningServer | undefined

async function send (url: string, method: 'POST' | 'PUT', path: string, wasm: Buffer, manifest?: unknown): Promise<{ status: number, body: Record<string, unknown> }> {
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(wasm)]), 'plugin.wasm')
  if (manifest !== undefined) form.append('manifest', JSON.stringify(manifest))
  const res = await request(`${url}${path}`, { method, body: form })
  return { status: res.statusCode, body: await res.body.json() as Record<string, unknown> }
}

test('PUT without a manifest part keeps the current manifest; the version comes from the new module\'s section when it has one', async () => {
  server = track(await startServer())
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
  server = track(await startServer({}, server.dataDir))
  const described = await request(`${server.url}/plugins/keeper`)
  expect(await described.body.json()).toMatchObject({ version: '2.0.0', limits: { timeoutMs: 1234 }, inputSchema: { required: ['x'] } })

  // An explicit manifest still replaces the whole manifest.
  const explicit = await send(server.url, 'PUT', '/plugins/keeper', echoModule(), {})
  expect(explicit.status).toBe(200)
  expect(explicit.body.version).toBe('0.0.0')
  expect(explicit.body.limits).toMatchObject({ timeoutMs: 5000 })
  expect(explicit.body.inputSchema).toBeUndefined()
})

async function execute (url: string, name: string, body: string | Buffer, query = ''): Promise<{ status: number, body: Record<string, unknown> }> {
  const res = await request(`${url}/plugins/${name}/execute${query}`, { method: 'POST', body, headers: { 'content-type': 'application/json' } })
  return { status: res.statusCode, body: await res.body.json() as Record<string, unknown> }
}

test('messages carry the number or the list an author needs', async () => {
  server = track(await startServer({ MAX_INPUT_BYTES: '1000' }))
  const { url } = server
  expect((await send(url, 'POST', '/plugins', echoModule({ extraExports: ['run', 'other'] }), { name: 'echo' })).status).toBe(201)

  // Input over MAX_INPUT_BYTES names the setting and its value.
  const big = await execute(url, 'echo', `"${'x'.repeat(2000)}"`)
  expect(big.status).toBe(413)
  expect(big.body.message).toBe('input is over MAX_INPUT_BYTES (1000 bytes)')

  // Input that is not JSON says where (json ABI, checked in the worker).
  const bad = await execute(url, 'echo', '{"a": 1,}')
  expect(bad.status).toBe(400)
  expect(bad.body.code).toBe('INVALID_INPUT')
  expect(String(bad.body.message)).toMatch(/body is not valid JSON: .*position 8/)

  // An unknown function lists the callable entries.
  const missing = await execute(url, 'echo', '{}', '?function=nope')
  expect(missing.status).toBe(404)
  expect(String(missing.body.message)).toMatch(/no exported function 'nope'; callable with \?function=: execute, run, other/)

  // A manifest enum lists the allowed values.
  const abi = await send(url, 'POST', '/plugins', echoModule(), { name: 'bad-abi', abi: 'wasm' })
  expect(abi.status).toBe(400)
  expect(String(abi.body.message)).toMatch(/abi must be equal to one of the allowed values: json, wasi/)

  // GET on an execute route: 405 with allow: POST.
  const get = await request(`${url}/plugins/echo/execute`)
  expect(get.statusCode).toBe(405)
  expect(get.headers.allow).toBe('POST')
  const getBody = await get.body.json() as Record<string, unknown>
  expect(getBody).toMatchObject({ statusCode: 405, code: 'METHOD_NOT_ALLOWED', error: 'Method Not Allowed' })
  expect(String(getBody.message)).toMatch(/GET .*\/plugins\/echo\/execute.*POST/)
  const del = await request(`${url}/plugins`, { method: 'DELETE' })
  expect(del.statusCode).toBe(405)
  expect(del.headers.allow).toBe('GET, POST')
  await del.body.dump()
  // A path that exists for no method is still 404.
  const none = await request(`${url}/nowhere`)
  expect(none.statusCode).toBe(404)
  await none.body.dump()

  // GET / points to the docs.
  const home = await request(`${url}/`)
  expect(home.statusCode).toBe(200)
  expect(await home.body.json()).toMatchObject({ docs: '/openapi.yaml' })
})

test('a bad AUTH_TOKEN stops the start with a message that does not echo the secret', () => {
  const secret = 'hunter2-secret'
  for (const variable of ['AUTH_TOKEN', 'METRICS_TOKEN']) {
    const run = spawnSync(process.execPath, [MAIN], { env: { PATH: process.env.PATH ?? '', [variable]: secret, PORT: '0' }, encoding: 'utf8', timeout: 20_000 })
    expect(run.status).toBe(2)
    expect(run.stderr + run.stdout).toContain(variable)
    expect(run.stderr + run.stdout).not.toContain(secret)
    expect(run.stderr + run.stdout).toMatch(/14 characters/)
  }
})

test('GET /plugins/:name/module returns the stored bytes, to the admin only', async () => {
  const admin = 'admin-token-0123456789'
  const exec = 'exec-token-0123456789ab'
  server = track(await startServer({ AUTH_TOKEN: admin, EXECUTE_TOKENS: exec }))
  const wasm = echoModule({ custom: [['version', Buffer.from('1.2.3')]] })
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(wasm)]), 'fetched.wasm')
  const up = await request(`${server.url}/plugins`, { method: 'POST', body: form, headers: { authorization: `Bearer ${admin}` } })
  expect(up.statusCode).toBe(201)
  const { sha256 } = await up.body.json() as { sha256: string }

  const get = async (name: string, token?: string): Promise<{ status: number, headers: Record<string, unknown>, bytes: Buffer }> => {
    const res = await request(`${server?.url ?? ''}/plugins/${name}/module`, { headers: token !== undefined ? { authorization: `Bearer ${token}` } : {} })
    return { status: res.statusCode, headers: res.headers, bytes: Buffer.from(await res.body.arrayBuffer()) }
  }
  const ok = await get('fetched', admin)
  expect(ok.status).toBe(200)
  expect(ok.headers['content-type']).toBe('application/wasm')
  expect(ok.headers.etag).toBe(`"${sha256}"`)
  expect(ok.bytes.equals(wasm)).toBe(true)
  expect((await get('fetched', exec)).status).toBe(403)
  expect((await get('fetched')).status).toBe(401)
  const missing = await get('nope', admin)
  expect(missing.status).toBe(404)
  expect(JSON.parse(missing.bytes.toString()).code).toBe('PLUGIN_NOT_FOUND')
})
