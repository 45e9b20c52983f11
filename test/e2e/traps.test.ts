// Traps that explain themselves (issue 17): a trap's details carry the guest's backtrace with
// the function names of the module's name section, and the log line of a failed call names
// the plugin. Real server, a WAT plugin built with its names.
import { request } from 'undici'
import wabtInit from 'wabt'
import { sendUpload } from '../helpers/client'
import { startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'

let server: RunningServer

async function namedModule (): Promise<Buffer> {
  const wabt = await wabtInit()
  const mod = wabt.parseWat('deep.wat', `(module (memory (export "memory") 1)
    (func $parse_header (unreachable))
    (func $handle_request (call $parse_header))
    (func (export "execute") (param i32 i32) (result i32 i32) (call $handle_request) (i32.const 0) (i32.const 0)))`, { multi_value: true })
  try {
    mod.resolveNames()
    return Buffer.from(mod.toBinary({ write_debug_names: true }).buffer)
  } finally {
    mod.destroy()
  }
}

beforeAll(async () => {
  server = await startServer({ LOG_LEVEL: 'info' })
  const res = await sendUpload(server.url, 'POST', '/plugins', await namedModule(), { name: 'deep' })
  expect(res.status).toBe(201)
})
afterAll(async () => { await server.stop() })

test('PLUGIN_TRAP carries the wasm backtrace with function names; the log line names the plugin', async () => {
  const res = await request(`${server.url}/plugins/deep/execute`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })
  expect(res.statusCode).toBe(422)
  const body = await res.body.json() as { code: string, details: { trap: string, backtrace: string[] } }
  expect(body.code).toBe('PLUGIN_TRAP')
  expect(body.details.trap).toBe('unreachable')
  expect(body.details.backtrace).toEqual([
    expect.stringMatching(/^parse_header \(function 0 at 0x[0-9a-f]+\)$/),
    expect.stringMatching(/^handle_request \(function 1 at 0x[0-9a-f]+\)$/),
    // no name in the name section (wabt names only $-named functions): its index
    expect.stringMatching(/^function 2 \(function 2 at 0x[0-9a-f]+\)$/)
  ])
  const line = server.output().split('\n').find(l => l.includes('"PLUGIN_TRAP"'))
  expect(line).toBeDefined()
  expect(JSON.parse(line as string)).toMatchObject({ plugin: 'deep', code: 'PLUGIN_TRAP', statusCode: 422 })
})
