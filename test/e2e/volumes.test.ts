// A plugin's @plugin volume under attack, against the real server (security issue 16): trees too
// deep for any path, concurrent calls sharing one quota, unlinked files kept open, directory
// bombs, a DELETE while a call writes, and a plugin dropped at start whose volume a namesake
// must not inherit. The plugin is test/fixtures/plugins/svc-wasi-disk.c.
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FormData, request } from 'undici'
import { removeDir, tempDir } from '../helpers/build-app'
import { plantDeepTree } from '../helpers/deep-tree'
import { cFixture, hasClang } from '../helpers/fixtures'
import { startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'

jest.setTimeout(120_000)

const toolchain = hasClang()
if (!toolchain && process.env.REQUIRE_TOOLCHAINS === '1') throw new Error('clang-14 for wasm32-wasi is required (REQUIRE_TOOLCHAINS=1)')
if (!toolchain) console.warn('volumes.test: skipped, clang-14 / wasi-libc not installed')
const suite = toolchain ? describe : describe.skip

const MiB = 1024 * 1024
/** What the volume documentation promises (README "Sandbox and limits"). */
const ENTRY_BYTES = 4096
const ENTRIES = 10_000
const WASI = { ROFS: 69, DQUOT: 19, NOENT: 44 }
// The longest deadline: these tests are about what calls store, not how fast a loaded machine runs them.
const DATA = { limits: { timeoutMs: 30_000 }, capabilities: { wasi: { preopens: [{ guest: '/data', volume: '@plugin', mode: 'rw' }] } } }

let server: RunningServer | undefined
const roots: string[] = []

afterEach(async () => {
  await server?.stop()
  server = undefined
})

afterAll(() => {
  for (const root of roots) removeDir(root)
})

function dataDir (): string {
  const root = tempDir('wph-volumes-')
  roots.push(root)
  return join(root, 'data')
}

async function start (dir: string, env: Record<string, string> = {}): Promise<RunningServer> {
  server = await startServer({ WORKERS: '4', ...env }, dir)
  return server
}

async function upload (name: string, manifest: Record<string, unknown> = DATA): Promise<void> {
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(cFixture('svc-wasi-disk'))]), 'disk.wasm')
  form.append('manifest', JSON.stringify({ name, ...manifest }))
  const res = await request(`${server?.url ?? ''}/plugins`, { method: 'POST', body: form })
  const text = await res.body.text()
  if (res.statusCode !== 201) throw new Error(`upload ${name}: ${res.statusCode} ${text}`)
}

async function call (name: string, command: string): Promise<{ status: number, body: Record<string, number | string> }> {
  const res = await request(`${server?.url ?? ''}/plugins/${name}/execute`, { method: 'POST', body: command, headers: { 'content-type': 'text/plain' } })
  const text = await res.body.text()
  return { status: res.statusCode, body: JSON.parse(text) }
}

async function remove (name: string): Promise<{ status: number, text: string }> {
  const res = await request(`${server?.url ?? ''}/plugins/${name}`, { method: 'DELETE' })
  return { status: res.statusCode, text: await res.body.text() }
}

suite('a @plugin volume under attack', () => {
  test('a tree deeper than PATH_MAX: calls keep working, DELETE answers 204 and removes it all', async () => {
    const dir = dataDir()
    await start(dir)
    await upload('deep')
    const built = await call('deep', 'deep 20 250')
    expect(built).toEqual({ status: 200, body: { levels: 20, errno: 0 } })
    // The next call measures the volume: it must not fail on the tree's length.
    expect(await call('deep', 'write note hello')).toEqual({ status: 200, body: { written: 5 } })
    expect(await call('deep', 'read note')).toEqual({ status: 200, body: { content: 'hello' } })
    expect(await remove('deep')).toEqual({ status: 204, text: '' })
    expect(existsSync(join(dir, 'volumes', 'deep'))).toBe(false)
    expect(readdirSync(join(dir, 'tmp'))).toEqual([])
  })

  test('deep trees planted in a volume and in DATA_DIR/tmp: the service restarts, DELETE removes them', async () => {
    const dir = dataDir()
    await start(dir)
    await upload('planted')
    expect((await call('planted', 'write a 1')).status).toBe(200)
    await server?.stop()
    plantDeepTree(join(dir, 'volumes', 'planted'))
    plantDeepTree(join(dir, 'tmp', 'volume-left-over'))
    await start(dir)
    expect(readdirSync(join(dir, 'tmp'))).toEqual([])
    expect(await call('planted', 'read a')).toEqual({ status: 200, body: { content: '1' } })
    expect(await remove('planted')).toEqual({ status: 204, text: '' })
    expect(existsSync(join(dir, 'volumes', 'planted'))).toBe(false)
    expect(readdirSync(join(dir, 'tmp'))).toEqual([])
  })

  test('concurrent calls share one quota: together they store no more than it', async () => {
    // Calls wait for a thread for as long as it takes: this test is about what they store.
    await start(dataDir(), { PLUGIN_DISK_BYTES: String(4 * MiB), QUEUE_TIMEOUT_MS: '60000' })
    await upload('fill')
    const calls = await Promise.all(Array.from({ length: 8 }, async (_, i) => call('fill', `fill f${i}`)))
    const written = calls.reduce((sum, c) => sum + Number(c.body.written), 0)
    console.log(`8 concurrent calls stored ${written} bytes under a ${4 * MiB}-byte quota`)
    for (const c of calls) expect(c.status).toBe(200)
    expect(written).toBeLessThanOrEqual(4 * MiB)
    expect(written).toBeGreaterThan(3 * MiB)
  })

  test('an unlinked file kept open stays charged until it is closed', async () => {
    await start(dataDir(), { PLUGIN_DISK_BYTES: String(4 * MiB) })
    await upload('orphans')
    const res = await call('orphans', 'orphans 8')
    console.log(`one call with unlinked open files held ${String(res.body.written)} bytes under a ${4 * MiB}-byte quota`)
    expect(res.status).toBe(200)
    expect(res.body.written).toBeLessThanOrEqual(4 * MiB)
    expect(res.body.errno).toBe(WASI.DQUOT)
    // Closed at the call's end: the next call has the whole quota again.
    const again = await call('orphans', 'fill big')
    expect(again.body.written).toBe(4 * MiB - ENTRY_BYTES) // all of it but its own name's block
  })

  test('a file one call holds open stays charged when another call unlinks it', async () => {
    const dir = dataDir()
    await start(dir, { PLUGIN_DISK_BYTES: String(4 * MiB) })
    await upload('holder')
    const big = join(dir, 'volumes', 'holder', 'big')
    expect((await call('holder', 'write hold 1')).status).toBe(200)
    const holding = call('holder', 'hold big')
    for (let i = 0; i < 400 && !(existsSync(big) && statSync(big).size >= 3 * MiB); i++) await new Promise(resolve => setTimeout(resolve, 20))
    expect(await call('holder', 'unlink big')).toEqual({ status: 200, body: { errno: 0 } })
    const meanwhile = await call('holder', 'fill other')
    expect((await call('holder', 'unlink hold')).status).toBe(200) // the holder closes its file
    const held = await holding
    console.log(`while another call held an unlinked ${String(held.body.written)}-byte file open, a call stored ${String(meanwhile.body.written)} bytes more under a ${4 * MiB}-byte quota`)
    expect(meanwhile.body.written).toBeLessThan(MiB)
    expect(Number(held.body.written) + Number(meanwhile.body.written)).toBeLessThanOrEqual(4 * MiB)
    // Closed when the holding call ended: the bytes are free again.
    expect((await call('holder', 'fill third')).body.written).toBeGreaterThan(3 * MiB - Number(meanwhile.body.written))
  })

  test('entries cost a block each and are capped; a full volume refuses new names', async () => {
    await start(dataDir(), { PLUGIN_DISK_BYTES: String(4 * MiB) })
    await upload('bomb')
    const bomb = await call('bomb', 'mkdirs 20000')
    console.log(`mkdir bomb under a ${4 * MiB}-byte quota: ${String(bomb.body.made)} directories`)
    expect(bomb.body).toEqual({ made: 4 * MiB / ENTRY_BYTES, errno: WASI.DQUOT })
    await upload('full')
    expect((await call('full', 'fill big')).body.errno).toBe(WASI.DQUOT)
    expect(await call('full', 'mkdirs 1')).toEqual({ status: 200, body: { made: 0, errno: WASI.DQUOT } })
    expect(await call('full', 'write small x')).toEqual({ status: 200, body: { errno: WASI.DQUOT } })
  })

  test(`at most ${ENTRIES} entries in a volume, whatever its byte quota`, async () => {
    await start(dataDir(), { PLUGIN_DISK_BYTES: String(1024 * MiB) })
    await upload('many')
    const res = await call('many', `mkdirs ${ENTRIES + 100}`)
    expect(res.body).toEqual({ made: ENTRIES, errno: WASI.DQUOT })
  })

  test('DELETE during a call that keeps writing: 204, the call stops writing, nothing is left', async () => {
    const dir = dataDir()
    await start(dir)
    await upload('churn')
    const running = call('churn', 'churn 100000000')
    // Wait until the call is writing.
    for (let i = 0; i < 200 && readdirSync(join(dir, 'volumes', 'churn')).length < 50; i++) await new Promise(resolve => setTimeout(resolve, 20))
    expect(readdirSync(join(dir, 'volumes', 'churn')).length).toBeGreaterThanOrEqual(50)
    const removed = await remove('churn')
    expect(removed).toEqual({ status: 204, text: '' })
    const ended = await running
    expect(ended.status).toBe(200)
    expect(ended.body.errno).toBe(WASI.ROFS)
    expect(existsSync(join(dir, 'volumes', 'churn'))).toBe(false)
    expect(readdirSync(join(dir, 'tmp'))).toEqual([])
  })

  test('a plugin dropped at start leaves nothing to a namesake: its volume is quarantined', async () => {
    const dir = dataDir()
    await start(dir)
    await upload('victim')
    expect((await call('victim', 'write secret s3cr3t')).status).toBe(200)
    await server?.stop()
    // The stored module no longer matches its hash: the plugin cannot be loaded.
    for (const file of readdirSync(join(dir, 'modules'))) writeFileSync(join(dir, 'modules', file), 'corrupt')
    await start(dir)
    expect((await request(`${server?.url ?? ''}/plugins/victim`)).statusCode).toBe(404)
    await upload('victim')
    expect(await call('victim', 'read secret')).toEqual({ status: 200, body: { errno: WASI.NOENT } })
    // Kept for the operator: DATA_DIR/quarantine/victim-<time>/{descriptor.json,volume/}
    const [held] = readdirSync(join(dir, 'quarantine'))
    expect(held).toMatch(/^victim-\d+$/)
    expect(readdirSync(join(dir, 'quarantine', held ?? ''))).toEqual(['descriptor.json', 'volume'])
    expect(server?.output()).toContain('quarantine')
  })
})
