// The registry's contract, run against both backends: DATA_DIR (FsBackend) and PostgreSQL
// (PgBackend). Same calls, same answers; only where they differ by nature (other replicas'
// writes arrive by the feed) is a test PostgreSQL-only.
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { loadConfig } from '../../src/config'
import type { RegistryBackend } from '../../src/registry/backend'
import { FsBackend } from '../../src/registry/fs-backend'
import { ModuleCache } from '../../src/registry/module-cache'
import { PgBackend, toServiceError } from '../../src/registry/pg-backend'
import { PluginRegistry } from '../../src/registry/registry'
import { PluginStore, sha } from '../../src/registry/store'
import { Quota } from '../../src/sandbox/wasi/volume'
import { removeDir, tempDir } from '../helpers/build-app'
import { withCustomSection } from '../helpers/client'
import { watFixture } from '../helpers/fixtures'
import { TEST_DATABASE_URL, createDatabase, dropDatabase, hasPostgres, sql } from '../helpers/postgres'

jest.setTimeout(60_000)

interface Harness {
  /** A registry (a replica) over the shared storage, loaded. */
  open: (env?: Record<string, string>) => Promise<PluginRegistry>
  close: () => Promise<void>
  /** The database of the pg harness. */
  url?: () => string
}

function fsHarness (): Harness {
  const dataDir = tempDir('wph-contract-')
  const opened: PluginRegistry[] = []
  return {
    async open (env = {}) {
      const config = loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: 'silent', ...env })
      const store = new PluginStore(dataDir)
      const registry = new PluginRegistry(config, store, new ModuleCache(8 * 1024 * 1024), {}, new FsBackend(store))
      await registry.load(() => {})
      opened.push(registry)
      return registry
    },
    async close () {
      for (const r of opened) await r.close()
      removeDir(dataDir)
    }
  }
}

function pgHarness (): Harness {
  let url: string | undefined
  const opened: Array<{ registry: PluginRegistry, dataDir: string }> = []
  return {
    async open (env = {}) {
      url ??= await createDatabase()
      // Each replica has its own DATA_DIR (volumes, local module copies).
      const dataDir = tempDir('wph-contract-pg-')
      const config = loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: 'silent', REGISTRY_URL: url, ...env })
      const store = new PluginStore(dataDir)
      const backend: RegistryBackend = new PgBackend({ url, store, log: () => {} })
      const registry = new PluginRegistry(config, store, new ModuleCache(8 * 1024 * 1024), {}, backend)
      await registry.load(() => {})
      opened.push({ registry, dataDir })
      return registry
    },
    async close () {
      for (const { registry, dataDir } of opened) { await registry.close(); removeDir(dataDir) }
      if (url !== undefined) await dropDatabase(url)
    },
    url: () => url as string
  }
}

const backends: Array<[string, () => Harness]> = [['fs', fsHarness]]
if (hasPostgres) backends.push(['postgres', pgHarness])
else if (process.env.REQUIRE_POSTGRES === '1') throw new Error('REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set')
else console.warn('registry-contract: PostgreSQL backend skipped (no TEST_DATABASE_URL)')

const withVolume = (name: string): string => JSON.stringify({ name, capabilities: { wasi: { preopens: [{ guest: '/data', volume: '@plugin', mode: 'rw' }] } } })

describe.each(backends)('registry contract (%s)', (_kind, harness) => {
  let h: Harness
  let echo: Buffer
  beforeAll(async () => { echo = await watFixture('echo') })
  beforeEach(() => { h = harness() })
  afterEach(async () => { await h.close() })

  test('create, get, list; a second create of the name is PLUGIN_EXISTS', async () => {
    const r = await h.open()
    const d = await r.create({ bytes: echo, manifest: '{"name":"one","version":"1.0.0"}' })
    expect(d.sha256).toBe(sha(echo))
    expect(r.get('one')?.descriptor.version).toBe('1.0.0')
    expect(r.list().map(p => p.name)).toEqual(['one'])
    await expect(r.create({ bytes: echo, manifest: '{"name":"one"}' })).rejects.toMatchObject({ code: 'PLUGIN_EXISTS', statusCode: 409 })
  })

  test('replace and remove of a missing plugin are PLUGIN_NOT_FOUND', async () => {
    const r = await h.open()
    await expect(r.replace('nope', { bytes: echo })).rejects.toMatchObject({ code: 'PLUGIN_NOT_FOUND' })
    await expect(r.remove('nope')).rejects.toMatchObject({ code: 'PLUGIN_NOT_FOUND' })
  })

  test('If-Match: a stale sha256 is PRECONDITION_FAILED and changes nothing; the current one or * passes', async () => {
    const r = await h.open()
    const v1 = await r.create({ bytes: echo, manifest: '{"name":"m","version":"1"}' })
    const other = withCustomSection(echo, Buffer.from('v2'))
    await expect(r.replace('m', { bytes: other }, { ifMatch: ['0'.repeat(64)] })).rejects.toMatchObject({ code: 'PRECONDITION_FAILED', statusCode: 412, details: { sha256: v1.sha256 } })
    expect(r.get('m')?.descriptor.sha256).toBe(v1.sha256)
    const v2 = await r.replace('m', { bytes: other, manifest: '{"version":"2"}' }, { ifMatch: [v1.sha256] })
    expect(v2.sha256).toBe(sha(other))
    expect(v2.createdAt).toBe(v1.createdAt)
    await expect(r.remove('m', { ifMatch: [v1.sha256] })).rejects.toMatchObject({ code: 'PRECONDITION_FAILED' })
    expect(r.get('m')).toBeDefined()
    await r.replace('m', { bytes: echo }, { ifMatch: '*' })
    await r.remove('m', { ifMatch: [sha(echo)] })
    expect(r.get('m')).toBeUndefined()
  })

  test('what was written is there after a restart; module bytes are stored once per sha256', async () => {
    const r = await h.open()
    await r.create({ bytes: echo, manifest: '{"name":"a"}' })
    await r.create({ bytes: echo, manifest: '{"name":"b"}' })
    // Over 256 KiB: the PostgreSQL backend sends such bytes only when they are not stored yet.
    const c = withCustomSection(echo, Buffer.alloc(300 * 1024, 'c'))
    await r.create({ bytes: c, manifest: '{"name":"c"}' })
    await r.create({ bytes: c, manifest: '{"name":"c2"}' })
    await r.remove('c2')
    await r.remove('b')
    const again = await h.open()
    expect(again.list().map(p => [p.name, p.sha256]).sort()).toEqual([['a', sha(echo)], ['c', sha(c)]])
    expect(await (await again.get('c')?.module())?.constructor.name).toBe('Module')
  })

  test('MAX_PLUGINS refuses with INSUFFICIENT_STORAGE', async () => {
    const r = await h.open({ MAX_PLUGINS: '2' })
    await r.create({ bytes: echo, manifest: '{"name":"x1"}' })
    await r.create({ bytes: echo, manifest: '{"name":"x2"}' })
    await expect(r.create({ bytes: echo, manifest: '{"name":"x3"}' })).rejects.toMatchObject({ code: 'INSUFFICIENT_STORAGE', statusCode: 507 })
    expect(r.list()).toHaveLength(2)
  })

  test('a delete removes the @plugin volume; a refused create leaves no volume', async () => {
    const r = await h.open()
    await r.create({ bytes: echo, manifest: withVolume('vol') })
    expect(existsSync(r.volumePath('vol'))).toBe(true)
    await expect(r.create({ bytes: echo, manifest: withVolume('vol') })).rejects.toMatchObject({ code: 'PLUGIN_EXISTS' })
    expect(existsSync(r.volumePath('vol'))).toBe(true)
    await r.remove('vol')
    expect(existsSync(r.volumePath('vol'))).toBe(false)
  })

  test('simultaneous creates of one name: exactly one succeeds, the others are PLUGIN_EXISTS', async () => {
    // DATA_DIR has one writer by design (one replica); PostgreSQL is raced from two.
    const first = await h.open()
    const replicas = h.url === undefined ? [first] : [first, await h.open()]
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) =>
      (replicas[i % replicas.length] as PluginRegistry).create({ bytes: withCustomSection(echo, Buffer.from(String(i))), manifest: '{"name":"race"}' })))
    expect(results.filter(r => r.status === 'fulfilled')).toHaveLength(1)
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'PLUGIN_EXISTS' })
  })
})

if (hasPostgres) {
  describe('registry contract (postgres only: several replicas)', () => {
    let h: Harness
    let echo: Buffer
    beforeAll(async () => { echo = await watFixture('echo') })
    beforeEach(() => { h = pgHarness() })
    afterEach(async () => { await h.close() })

    async function eventually (check: () => boolean): Promise<void> {
      const deadline = Date.now() + 5000
      while (!check()) {
        if (Date.now() > deadline) throw new Error('not converged within 5 s')
        await new Promise(resolve => setTimeout(resolve, 5))
      }
    }

    test('a create, replace and delete on one replica are applied by the other (volume too)', async () => {
      const a = await h.open()
      const b = await h.open()
      await a.create({ bytes: echo, manifest: withVolume('shared') })
      await eventually(() => b.get('shared') !== undefined)
      expect(existsSync(b.volumePath('shared'))).toBe(true)
      const v2 = withCustomSection(echo, Buffer.from('v2'))
      await b.replace('shared', { bytes: v2 })
      await eventually(() => a.get('shared')?.descriptor.sha256 === sha(v2))
      await a.remove('shared')
      await eventually(() => b.get('shared') === undefined)
      expect(existsSync(b.volumePath('shared'))).toBe(false)
    })

    test('a replica replaces a plugin it has not seen yet; module rows are collected with their last user', async () => {
      const a = await h.open()
      const b = await h.open()
      const first = withCustomSection(echo, Buffer.from('first'))
      await a.create({ bytes: first, manifest: '{"name":"p"}' })
      // b may not have applied the create yet: it asks the database, not its index.
      await b.replace('p', { bytes: echo })
      const url = (h.url as () => string)()
      expect((await sql(url, 'SELECT sha256 FROM wph_modules')).map(r => r.sha256)).toEqual([sha(echo)])
      await b.remove('p')
      expect(await sql(url, 'SELECT sha256 FROM wph_modules')).toEqual([])
    })

    test('a database that refuses writes (read-only) is REGISTRY_UNAVAILABLE with retry-after, never a 500; nothing changes', async () => {
      const a = await h.open()
      await a.create({ bytes: echo, manifest: '{"name":"ro"}' })
      const url = (h.url as () => string)()
      const db = new URL(url).pathname.slice(1)
      await sql(url, `ALTER DATABASE ${db} SET default_transaction_read_only = on`)
      try {
        const b = await h.open() // new connections see the setting
        await expect(b.create({ bytes: echo, manifest: '{"name":"ro2"}' })).rejects.toMatchObject({ code: 'REGISTRY_UNAVAILABLE', statusCode: 503, retryAfterSeconds: 1 })
        await expect(b.remove('ro')).rejects.toMatchObject({ code: 'REGISTRY_UNAVAILABLE' })
        expect(b.list().map(p => p.name)).toEqual(['ro'])
      } finally {
        await sql(TEST_DATABASE_URL as string, `ALTER DATABASE ${db} SET default_transaction_read_only = off`)
      }
    })

    test('a delete from another replica retires the quota block this replica handed to calls, and removes its volume', async () => {
      const a = await h.open()
      const b = await h.open()
      await a.create({ bytes: echo, manifest: withVolume('quota') })
      await eventually(() => b.get('quota') !== undefined)
      const quota = new Quota(1000, await b.volumeQuota('quota'))
      expect(quota.retired).toBe(false)
      await a.remove('quota')
      await eventually(() => b.get('quota') === undefined && quota.retired)
      await eventually(() => !existsSync(b.volumePath('quota')))
    })

    test('a stored plugin one replica refuses at load is skipped there, never deleted from the shared registry', async () => {
      const a = await h.open()
      await a.create({ bytes: echo, manifest: '{"name":"good"}' })
      await a.create({ bytes: echo, manifest: '{"name":"refused"}' })
      // As an older version may have stored it: a schema today's rules refuse (remote $ref).
      const url = (h.url as () => string)()
      await sql(url, 'UPDATE wph_plugins SET record = jsonb_set(record::jsonb, \'{manifest,inputSchema}\', \'{"$ref":"http://example.invalid/s.json"}\')::json WHERE name = \'refused\'')
      const b = await h.open()
      expect(b.list().map(p => p.name)).toEqual(['good'])
      expect((await sql(url, 'SELECT name FROM wph_plugins ORDER BY name')).map(r => r.name)).toEqual(['good', 'refused'])
      // Still served where it loaded, and a new version written anywhere applies as usual.
      expect(a.get('refused')).toBeDefined()
      await a.replace('refused', { bytes: withCustomSection(echo, Buffer.from('v2')), manifest: '{"name":"refused"}' })
      await eventually(() => b.get('refused') !== undefined)
    })

    test('a replica keeps local copies of the modules it serves, and drops them with the plugin', async () => {
      const a = await h.open()
      const b = await h.open()
      await a.create({ bytes: echo, manifest: '{"name":"copy"}' })
      await eventually(() => b.get('copy') !== undefined)
      const dir = join(b.volumePath('x'), '..', '..', 'modules')
      expect(readdirSync(dir)).toEqual([`${sha(echo)}.wasm`])
      await a.remove('copy')
      await eventually(() => b.get('copy') === undefined)
      await eventually(() => readdirSync(dir).length === 0)
    })
  })
}

test('database refusals map to documented codes, never a 500', () => {
  const log = (): void => {}
  const pgError = (code: string): Error => Object.assign(new Error('refused'), { code })
  expect(toServiceError(pgError('53100'), log)).toMatchObject({ code: 'INSUFFICIENT_STORAGE', statusCode: 507 })
  expect(toServiceError(pgError('54000'), log)).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', statusCode: 413 })
  expect(toServiceError(pgError('25006'), log)).toMatchObject({ code: 'REGISTRY_UNAVAILABLE', statusCode: 503, retryAfterSeconds: 1 })
  expect(toServiceError(pgError('57P01'), log)).toMatchObject({ code: 'REGISTRY_UNAVAILABLE' })
  expect(toServiceError(pgError('ECONNREFUSED'), log)).toMatchObject({ code: 'REGISTRY_UNAVAILABLE' })
  expect(toServiceError(new Error('Connection terminated unexpectedly'), log)).toMatchObject({ code: 'REGISTRY_UNAVAILABLE' })
})
