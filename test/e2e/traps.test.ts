// Traps that explain themselves (issue 17): a trap's details carry the guest's backtrace with
// the function names of the module's name section, and the log line of a failed call names
// the plugin. Real server, a WAT plugin built with its names.
import { request } from 'undici'
import wabtInit from 'wabt'
import { sendUpload } from '../helpers/client'
import { hasRust, rustSource } from '../helpers/fixtures'
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
  // The log travels through a pipe from the server process: it may arrive after the answer.
  let line: string | undefined
  for (let i = 0; i < 100 && line === undefined; i++) {
    line = server.output().split('\n').find(l => l.includes('"code":"PLUGIN_TRAP"') && l.includes('"statusCode"'))
    if (line === undefined) await new Promise(resolve => setTimeout(resolve, 50))
  }
  expect(line).toBeDefined()
  expect(JSON.parse(line as string)).toMatchObject({ plugin: 'deep', code: 'PLUGIN_TRAP', statusCode: 422 })
})

const rustTest = hasRust() ? test : test.skip
if (!hasRust() && process.env.REQUIRE_TOOLCHAINS === '1') throw new Error('rustc with wasm32-wasi is required (REQUIRE_TOOLCHAINS=1)')

rustTest('a Rust plugin whose stdout runs over outputBytes (println! panics) is PLUGIN_INVALID_OUTPUT, not a bare trap', async () => {
  const wasm = rustSource('fn main() { for i in 0..100000 { println!("line {}", i); } }\n')
  const up = await sendUpload(server.url, 'POST', '/plugins', wasm, { name: 'chatty', abi: 'wasi', limits: { outputBytes: 1024 } })
  expect(up.status).toBe(201)
  const res = await request(`${server.url}/plugins/chatty/execute`, { method: 'POST', body: '' })
  const body = await res.body.json() as { code: string, details: { limit: number, stderr: string } }
  expect(res.statusCode).toBe(502)
  expect(body.code).toBe('PLUGIN_INVALID_OUTPUT')
  expect(body.details.limit).toBe(1024)
  expect(body.details.stderr).toContain('failed printing to stdout')
})
