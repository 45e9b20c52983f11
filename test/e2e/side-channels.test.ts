// Security issue 16, item 14: what a plugin or an anonymous client could learn of the others.
// - clock_time_get(PROCESS_CPUTIME_ID) read the whole process's CPU time, and
//   THREAD_CPUTIME_ID the worker thread's since it started: both moved with other plugins'
//   calls. Both now count the calling call's own CPU time only.
// - /metrics lists every plugin name with its call counts; with METRICS_TOKEN set it needs
//   that token (or the admin token).
import { FormData, request } from 'undici'
import { wat, watFixture } from '../helpers/fixtures'
import { serversPerTest, startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'

const track = serversPerTest()
let server: RunningServer | undefined

/** A WASI command that writes two u64s to stdout: the process and the thread CPU clocks, in ns. */
const CPU_CLOCKS = `(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $clock (i32.const 2) (i64.const 1) (i32.const 16)))
    (drop (call $clock (i32.const 3) (i64.const 1) (i32.const 24)))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))`

async function upload (url: string, name: string, wasm: Buffer, token?: string, manifest?: unknown): Promise<void> {
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(wasm)]), `${name}.wasm`)
  if (manifest !== undefined) form.append('manifest', JSON.stringify(manifest))
  const res = await request(`${url}/plugins`, { method: 'POST', body: form, headers: token !== undefined ? { authorization: `Bearer ${token}` } : {} })
  expect(res.statusCode).toBe(201)
  await res.body.dump()
}

async function cpuClocks (url: string): Promise<{ processMs: number, threadMs: number }> {
  const res = await request(`${url}/plugins/clocks/execute`, { method: 'POST', body: '' })
  expect(res.statusCode).toBe(200)
  const bytes = Buffer.from(await res.body.arrayBuffer())
  return { processMs: Number(bytes.readBigUInt64LE(0)) / 1e6, threadMs: Number(bytes.readBigUInt64LE(8)) / 1e6 }
}

test('the CPU-time clocks count the call\'s own CPU time: other plugins\' work does not show', async () => {
  // One worker thread: the burner and the probe run on the same thread, one after the other.
  server = track(await startServer({ WORKERS: '1' }))
  await upload(server.url, 'clocks', await wat(CPU_CLOCKS))
  // The longest deadline allowed: on a loaded machine the burn takes seconds of wall time.
  await upload(server.url, 'spin', await watFixture('spin'), undefined, { limits: { timeoutMs: 30_000 } })
  await cpuClocks(server.url)
  // Another plugin burns CPU on the probe's thread: 450M iterations a call, as many calls as
  // it takes to burn 200 ms (one is 80-150 ms on a quiet machine, seconds on a loaded one).
  let burnedMs = 0
  while (burnedMs < 200) {
    const burn = await request(`${server.url}/plugins/spin/execute`, { method: 'POST', body: '9', headers: { 'content-type': 'application/json' } })
    expect(burn.statusCode).toBe(200)
    await burn.body.dump()
    const ms = Number(/dur=([\d.]+)/.exec(String(burn.headers['server-timing']))?.[1])
    expect(ms).toBeGreaterThan(0)
    burnedMs += ms
  }
  const after = await cpuClocks(server.url)
  // The probe's own call takes a few ms of CPU at most; the burn (and the process's start-up,
  // seconds of CPU) must not be in either clock.
  expect(after.processMs).toBeLessThan(50)
  expect(after.threadMs).toBeLessThan(50)
  expect(after.processMs).toBeLessThan(burnedMs / 2)
})

test('with METRICS_TOKEN set, /metrics needs it or the admin token; without it, /metrics stays open', async () => {
  const admin = 'admin-token-0123456789'
  const exec = 'exec-token-0123456789ab'
  const metricsToken = 'metrics-token-0123456789'
  server = track(await startServer({ AUTH_TOKEN: admin, EXECUTE_TOKENS: exec, METRICS_TOKEN: metricsToken }))
  await upload(server.url, 'secret-plugin-name', await watFixture('echo'), admin)
  const metrics = async (token?: string): Promise<{ status: number, text: string }> => {
    const res = await request(`${server?.url ?? ''}/metrics`, { headers: token !== undefined ? { authorization: `Bearer ${token}` } : {} })
    return { status: res.statusCode, text: await res.body.text() }
  }
  const anonymous = await metrics()
  expect(anonymous.status).toBe(401)
  expect(anonymous.text).not.toContain('secret-plugin-name')
  expect((await metrics('wrong-token-0123456789')).status).toBe(401)
  expect((await metrics(exec)).status).toBe(403)
  expect((await metrics(metricsToken)).status).toBe(200)
  expect((await metrics(admin)).status).toBe(200)
  // The metrics token is for /metrics only.
  const list = await request(`${server.url}/plugins`, { headers: { authorization: `Bearer ${metricsToken}` } })
  expect(list.statusCode).toBe(401)
  await list.body.dump()
  // Health stays open.
  const health = await request(`${server.url}/healthz`)
  expect(health.statusCode).toBe(200)
  await health.body.dump()
  await server.stop()

  // Unset (the default), /metrics is open as before, even with AUTH_TOKEN.
  server = track(await startServer({ AUTH_TOKEN: admin }))
  expect((await metrics()).status).toBe(200)
})
