// A full disk: the real server on a 2 MiB tmpfs as its DATA_DIR. An upload or a replace that
// cannot be written answers 507 INSUFFICIENT_STORAGE and leaves nothing behind (no module, no
// descriptor, no volume, no temp file), whether the disk was full from the start or filled up
// between the module and its descriptor; the plugins already there stay intact, the service
// starts on a full disk, deletes work on it, and uploads work again once there is room.
//
// Mounting needs root (CAP_SYS_ADMIN): elsewhere the file is skipped with a message, except
// under REQUIRE_TOOLCHAINS=1 (CI, as root), where it must run.
import { execFileSync } from 'node:child_process'
import { closeSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readdirSync, rmSync, statfsSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { errorShapeProblem, sendUpload, withCustomSection } from '../helpers/client'
import type { Answer } from '../helpers/client'
import { watFixture } from '../helpers/fixtures'
import { startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'
import { sha } from '../../src/registry/store'

jest.setTimeout(60_000)

const PAGE = 4096

function tryMount (dir: string): string | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir], { stdio: ['ignore', 'ignore', 'pipe'] })
    return undefined
  } catch (err) {
    return String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()
  }
}

function unmount (dir: string): void {
  try { execFileSync('umount', [dir], { stdio: 'ignore' }) } catch { /* not mounted */ }
  rmSync(dir, { recursive: true, force: true })
}

/** Mounting is tried once, on a probe directory, to decide whether the suite runs. */
function probe (): string | undefined {
  if (process.platform !== 'linux') return 'not Linux'
  const dir = mkdtempSync(join(tmpdir(), 'wph-probe-'))
  const problem = tryMount(dir)
  unmount(dir)
  return problem
}

const root = process.getuid?.() === 0
const problem = probe()
if (problem !== undefined && root && process.env.REQUIRE_TOOLCHAINS === '1') {
  throw new Error(`disk-full.test: running as root with REQUIRE_TOOLCHAINS=1, but a tmpfs cannot be mounted: ${problem}`)
}
if (problem !== undefined) console.warn(`disk-full.test: skipped, a tmpfs cannot be mounted (${root ? 'no CAP_SYS_ADMIN?' : 'not root'}): ${problem}`)
const suite = problem === undefined ? describe : describe.skip

suite('a full disk', () => {
  let mnt: string
  let dataDir: string
  let filler: number | undefined
  let server: RunningServer | undefined
  let echo: Buffer
  const wasm = (tag: string, size = 20_000): Buffer => withCustomSection(echo, Buffer.alloc(size, tag))

  beforeAll(async () => {
    echo = await watFixture('echo')
    mnt = mkdtempSync(join(tmpdir(), 'wph-full-'))
    const failed = tryMount(mnt)
    if (failed !== undefined) throw new Error(`mount failed: ${failed}`)
    dataDir = join(mnt, 'data')
    mkdirSync(dataDir)
  })

  afterAll(async () => {
    if (filler !== undefined) closeSync(filler)
    if (server !== undefined) await server.stop()
    unmount(mnt)
  })

  const freeBytes = (): number => { const s = statfsSync(mnt); return s.bavail * s.bsize }

  /** Fills the disk (a file of whole pages until ENOSPC), then frees `leavePages` pages. */
  function fill (leavePages = 0): void {
    if (filler === undefined) filler = openSync(join(mnt, 'filler'), 'w')
    const page = Buffer.alloc(PAGE, 1)
    let size = 0
    ftruncateSync(filler, 0)
    for (;;) {
      try {
        writeSync(filler, page, 0, PAGE, size)
        size += PAGE
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
        break
      }
    }
    ftruncateSync(filler, size - leavePages * PAGE)
    expect(freeBytes()).toBe(leavePages * PAGE)
  }

  function unfill (): void {
    if (filler !== undefined) ftruncateSync(filler, 0)
  }

  const pagesOf = (bytes: number): number => Math.ceil(bytes / PAGE)

  async function describePlugin (name: string): Promise<{ status: number, sha256?: string }> {
    const res = await request(`${server?.url ?? ''}/plugins/${name}`)
    const body = await res.body.json() as { sha256?: string }
    return { status: res.statusCode, ...(body.sha256 !== undefined ? { sha256: body.sha256 } : {}) }
  }

  async function executes (name: string): Promise<void> {
    const input = `{"name":"${name}","n":${Math.floor(Math.random() * 1e6)}}`
    const res = await request(`${server?.url ?? ''}/plugins/${name}/execute`, { method: 'POST', body: input, headers: { 'content-type': 'application/json' } })
    expect(res.statusCode).toBe(200)
    expect(await res.body.text()).toBe(input)
  }

  function expect507 (res: Answer): void {
    expect(res.status).toBe(507)
    expect(errorShapeProblem(507, res.text)).toBeUndefined()
    expect(JSON.parse(res.text)).toMatchObject({ statusCode: 507, code: 'INSUFFICIENT_STORAGE', error: 'Insufficient Storage' })
  }

  /** The data dir holds exactly these plugins, each with its module, and nothing else. */
  function expectOnDisk (plugins: Record<string, Buffer>): void {
    expect(readdirSync(join(dataDir, 'tmp'))).toEqual([])
    expect(readdirSync(join(dataDir, 'plugins')).sort()).toEqual(Object.keys(plugins).map(n => `${n}.json`).sort())
    const modules = [...new Set(Object.values(plugins).map(b => `${sha(b)}.wasm`))].sort()
    expect(readdirSync(join(dataDir, 'modules')).sort()).toEqual(modules)
    for (const v of readdirSync(join(dataDir, 'volumes'))) expect(Object.keys(plugins)).toContain(v)
  }

  async function expectIntact (plugins: Record<string, Buffer>): Promise<void> {
    const list = await request(`${server?.url ?? ''}/plugins`)
    const names = (await list.body.json() as { plugins: Array<{ name: string }> }).plugins.map(p => p.name).sort()
    expect(names).toEqual(Object.keys(plugins).sort())
    for (const [name, bytes] of Object.entries(plugins)) {
      expect(await describePlugin(name)).toEqual({ status: 200, sha256: sha(bytes) })
      await executes(name)
    }
    expectOnDisk(plugins)
  }

  test('uploads and replaces refused with 507 leave nothing behind; what was there stays intact', async () => {
    server = await startServer({ WORKERS: '1' }, dataDir)
    const a = wasm('a')
    const b = wasm('b')
    expect((await sendUpload(server.url, 'POST', '/plugins', a, { name: 'a' })).status).toBe(201)
    expect((await sendUpload(server.url, 'POST', '/plugins', b, { name: 'b', capabilities: { wasi: { preopens: [{ guest: '/data', volume: '@plugin', mode: 'rw' }] } } })).status).toBe(201)
    const kept = { a, b }
    await expectIntact(kept)

    // 1. The disk is full before anything is written.
    fill()
    const c = wasm('c', 30_000)
    expect507(await sendUpload(server.url, 'POST', '/plugins', c, { name: 'c' }))
    expect(await describePlugin('c')).toEqual({ status: 404 })
    expect507(await sendUpload(server.url, 'PUT', '/plugins/a', c, { name: 'a', version: '2.0.0' }))
    await expectIntact(kept)

    // 2. Room for the module, not for its descriptor: the module written first is removed again.
    fill(pagesOf(c.length))
    expect507(await sendUpload(server.url, 'POST', '/plugins', c, { name: 'c', capabilities: { wasi: { preopens: [{ guest: '/data', volume: '@plugin', mode: 'rw' }] } } }))
    expect(existsSync(join(dataDir, 'volumes', 'c'))).toBe(false)
    expect(freeBytes()).toBe(pagesOf(c.length) * PAGE)
    expect507(await sendUpload(server.url, 'PUT', '/plugins/a', c, { name: 'a', version: '2.0.0' }))
    await expectIntact(kept)

    // 3. The same bytes as a plugin that exists (its module is already there): only the
    // descriptor fails, and the shared module must survive the clean-up.
    fill()
    expect507(await sendUpload(server.url, 'POST', '/plugins', a, { name: 'a-twin' }))
    await expectIntact(kept)
  })

  test('the service starts on a full disk, deletes on it, and uploads again once there is room', async () => {
    expect(server).toBeDefined()
    await server?.stop('SIGKILL')
    fill()
    server = await startServer({ WORKERS: '1' }, dataDir)
    const a = wasm('a')
    const b = wasm('b')
    await expectIntact({ a, b })

    const del = await request(`${server.url}/plugins/b`, { method: 'DELETE' })
    expect(del.statusCode).toBe(204)
    await del.body.dump()
    await expectIntact({ a })

    unfill()
    const c = wasm('c', 30_000)
    expect((await sendUpload(server.url, 'POST', '/plugins', c, { name: 'c' })).status).toBe(201)
    expect((await sendUpload(server.url, 'PUT', '/plugins/a', c, { name: 'a', version: '2.0.0' })).status).toBe(200)
    await expectIntact({ a: c, c })
    expect(server.output()).not.toMatch(/"level":50/) // no error logged: 507 is not a bug of ours
  })
})
