// Crash consistency: the real server is killed with SIGKILL at random points of a stream of
// uploads, replaces and deletes (some kills land while it is still loading its registry),
// then restarted on the same DATA_DIR. After every restart:
//   - every plugin whose 2xx was received (and not later deleted with a received 204) is
//     listed and intact: its descriptor's sha256 and version are those of the bytes and
//     manifest of its latest acknowledged upload, and it executes;
//   - a request cut off by the kill left either the old state or the new one, never a mix;
//   - a plugin whose delete was acknowledged is gone, its volume too;
//   - nothing half-written is visible: the list parses, every descriptor on disk parses and
//     has its module (whose bytes match their hash), no module is unreferenced, no volume
//     lacks its plugin, the tmp directory is empty, and nothing was skipped at load.
// The same test runs with the PostgreSQL registry (REGISTRY_URL): there the rows of the
// database take the place of the descriptor files, and the module rows those of the files.
//
// Replay a failure with CRASH_SEED=<seed printed below>.
import { once } from 'node:events'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { removeDir, tempDir, uploadBody } from '../helpers/build-app'
import { prng, testSeed, withCustomSection } from '../helpers/client'
import { watFixture } from '../helpers/fixtures'
import { MAIN, freePort, startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'
import { createDatabase, dropDatabase, hasPostgres, sql } from '../helpers/postgres'
import { loadConfig } from '../../src/config'
import { ModuleCache } from '../../src/registry/module-cache'
import { PluginRegistry } from '../../src/registry/registry'
import { PluginStore, sha } from '../../src/registry/store'

jest.setTimeout(300_000 * Math.ceil(Math.max(21, Number(process.env.CRASH_KILLS ?? 21)) / 21))

// CRASH_KILLS raises the count (`npm run soak:crash` kills 100 times).
const KILLS = Math.max(21, Number(process.env.CRASH_KILLS ?? 21))
const NAMES = 12
const LANES = 4
const ENV = { WORKERS: '1', LOG_LEVEL: 'warn' }

type State = { present: false } | { present: true, sha: string, version: string, volume: boolean }

interface Slot {
  name: string
  /** the state the server acknowledged last */
  state: State
  /** while a request was cut off by a kill: the states it may have left */
  possible?: State[]
}

const same = (a: State, b: State): boolean =>
  a.present === b.present && (!a.present || (b.present && a.sha === b.sha && a.version === b.version))

const show = (s: State): string => s.present ? `present(${s.version} ${s.sha.slice(0, 12)})` : 'absent'

const modes: Array<'fs' | 'postgres'> = ['fs']
if (hasPostgres) modes.push('postgres')
else if (process.env.REQUIRE_POSTGRES === '1') throw new Error('REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set')
else console.warn('crash.test: the PostgreSQL registry mode is skipped (no TEST_DATABASE_URL)')

test.each(modes)(`SIGKILL at random points of a stream of uploads, replaces and deletes (${KILLS} kills, %s registry): nothing acknowledged is lost, nothing half-written is seen`, async (mode) => {
  const seed = testSeed('CRASH_SEED', `crash.test (${mode})`)
  const registryUrl = mode === 'postgres' ? await createDatabase() : undefined
  const env = { ...ENV, ...(registryUrl !== undefined ? { REGISTRY_URL: registryUrl } : {}) }
  const rnd = prng(seed)
  const echo = await watFixture('echo')
  const dataDir = tempDir('wph-crash-')
  const slots: Slot[] = Array.from({ length: NAMES }, (_, i) => ({ name: `crash-${i}`, state: { present: false } }))
  // A few module variants shared between names: a delete of one must not take another's module.
  const shared = [0, 1, 2].map(i => withCustomSection(echo, Buffer.from(`shared-${i}`)))
  const figures = { kills: 0, startupKills: 0, acknowledged: 0, cutOff: 0, pluginsChecked: 0, executes: 0, resolvedNew: 0, resolvedOld: 0 }
  let version = 0
  let server: RunningServer | undefined
  const t0 = performance.now()

  try {
    for (let cycle = 0; cycle <= KILLS; cycle++) {
      if (cycle > 0 && rnd.next() < 0.2) {
        // A kill while the registry is loading: the start-up (sweep, collect) must be crash-safe too.
        await killDuringStartup(dataDir, rnd.int(400), env)
        figures.startupKills++
      }
      server = await startServer(env, dataDir)
      await verify(server, dataDir, slots, figures, rnd, registryUrl)
      if (cycle === KILLS) break

      const agent = new Agent({ connections: LANES })
      const run = { stopped: false }
      const lanes = Array.from({ length: LANES }, async (_, lane) => {
        const mine = slots.filter((_, i) => i % LANES === lane)
        // One generator per lane and cycle: the choices replay with the seed, whatever the timing.
        const rnd = prng(seed + 1 + cycle * LANES + lane)
        while (!run.stopped) {
          const slot = rnd.pick(mine)
          const op = pickOp(slot.state, rnd.next())
          const bytes = rnd.next() < 0.3 ? rnd.pick(shared) : withCustomSection(echo, rnd.bytes(rnd.int(4) === 0 ? 64 * 1024 + rnd.int(256 * 1024) : rnd.int(512)))
          const volume = rnd.next() < 0.3
          const manifest = { name: slot.name, version: `1.0.${++version}`, ...(volume ? { capabilities: { wasi: { preopens: [{ guest: '/data', volume: '@plugin', mode: 'rw' }] } } } : {}) }
          const target: State = op === 'DELETE' ? { present: false } : op === 'POST-EXISTING' ? slot.state : { present: true, sha: sha(bytes), version: manifest.version, volume }
          const method = op === 'POST-EXISTING' ? 'POST' : op
          try {
            const body = method === 'DELETE' ? undefined : uploadBody(bytes, manifest)
            const res = await request(`${server?.url ?? ''}${method === 'POST' ? '/plugins' : `/plugins/${slot.name}`}`, {
              method, dispatcher: agent, ...(body !== undefined ? { body: body.payload, headers: body.headers } : {})
            })
            const text = await res.body.text()
            const expected = { POST: 201, PUT: 200, DELETE: 204, 'POST-EXISTING': 409 }[op]
            if (res.statusCode !== expected) throw new Error(`${op} ${slot.name}: ${res.statusCode} ${text} (expected ${expected})`)
            slot.state = target
            figures.acknowledged++
          } catch (err) {
            if (!run.stopped) throw err
            // Cut off by the kill: it may or may not have taken effect.
            slot.possible = [slot.state, target]
            figures.cutOff++
            return
          }
        }
      })
      // A PostgreSQL write has more to do after start-up (a pool connection, a round trip to the
      // database): its window is longer, so each cycle still acknowledges some writes.
      await new Promise(resolve => setTimeout(resolve, mode === 'postgres' ? 100 + rnd.int(900) : 20 + rnd.int(400)))
      run.stopped = true
      server.child.kill('SIGKILL')
      await once(server.child, 'exit').catch(() => {})
      figures.kills++
      await Promise.all(lanes)
      await agent.destroy()
    }
  } finally {
    if (server !== undefined) await server.stop()
    removeDir(dataDir)
    if (registryUrl !== undefined) await dropDatabase(registryUrl)
  }
  const seconds = ((performance.now() - t0) / 1000).toFixed(1)
  console.log(`crash.test (${mode}): ${figures.kills} kills (+${figures.startupKills} during start-up) in ${seconds} s, seed ${seed}: ` +
    `${figures.acknowledged} acknowledged operations, ${figures.cutOff} cut off (${figures.resolvedNew} had taken effect, ${figures.resolvedOld} had not), ` +
    `${figures.pluginsChecked} plugin checks after restarts (${figures.executes} executes), 0 lost`)
  expect(figures.kills).toBeGreaterThanOrEqual(20)
  expect(figures.acknowledged).toBeGreaterThan(KILLS)
})

type Op = 'POST' | 'PUT' | 'DELETE' | 'POST-EXISTING'

function pickOp (state: State, r: number): Op {
  if (!state.present) return 'POST'
  return r < 0.55 ? 'PUT' : r < 0.9 ? 'DELETE' : 'POST-EXISTING'
}

async function killDuringStartup (dataDir: string, afterMs: number, env: Record<string, string>): Promise<void> {
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: String(await freePort()), DATA_DIR: dataDir, ...env },
    stdio: 'ignore'
  })
  const exited = once(child, 'exit')
  await new Promise(resolve => setTimeout(resolve, afterMs))
  child.kill('SIGKILL')
  await exited
}

async function verify (server: RunningServer, dataDir: string, slots: Slot[], figures: Record<string, number>, rnd: ReturnType<typeof prng>, registryUrl: string | undefined): Promise<void> {
  const list = await request(`${server.url}/plugins`)
  expect(list.statusCode).toBe(200)
  const listed = new Map((await list.body.json() as { plugins: Array<{ name: string, sha256: string, version: string, capabilities: { wasi?: { preopens: Array<{ volume: string }> } } }> }).plugins.map(p => [p.name, p]))
  for (const name of listed.keys()) expect(slots.map(s => s.name)).toContain(name)

  for (const slot of slots) {
    const d = listed.get(slot.name)
    const observed: State = d === undefined
      ? { present: false }
      : { present: true, sha: d.sha256, version: d.version, volume: d.capabilities.wasi?.preopens.some(p => p.volume === '@plugin') === true }
    const possible = slot.possible ?? [slot.state]
    if (!possible.some(p => same(p, observed))) {
      throw new Error(`${slot.name}: found ${show(observed)}, expected ${possible.map(show).join(' or ')}\n${server.output().slice(-2000)}`)
    }
    if (slot.possible !== undefined) {
      if (same(observed, slot.possible[1] as State) && !same(observed, slot.possible[0] as State)) figures.resolvedNew = (figures.resolvedNew ?? 0) + 1
      else figures.resolvedOld = (figures.resolvedOld ?? 0) + 1
    }
    slot.state = observed
    delete slot.possible

    const one = await request(`${server.url}/plugins/${slot.name}`)
    const body = await one.body.json() as { sha256?: string, version?: string }
    if (!observed.present) {
      expect(one.statusCode).toBe(404)
      continue
    }
    expect(one.statusCode).toBe(200)
    expect(body.sha256).toBe(observed.sha)
    expect(body.version).toBe(observed.version)
    const input = JSON.stringify({ check: rnd.int(1e9), name: slot.name })
    const run = await request(`${server.url}/plugins/${slot.name}/execute`, { method: 'POST', body: input, headers: { 'content-type': 'application/json' } })
    expect(run.statusCode).toBe(200)
    expect(await run.body.text()).toBe(input)
    figures.pluginsChecked = (figures.pluginsChecked ?? 0) + 1
    figures.executes = (figures.executes ?? 0) + 1
  }

  // On disk: nothing half-written, nothing left over.
  expect(readdirSync(join(dataDir, 'tmp'))).toEqual([])
  if (registryUrl !== undefined) {
    await verifyDatabase(registryUrl, dataDir, [...listed.keys()], slots)
    expect(server.output()).not.toMatch(/skipping|does not load/)
    return
  }
  const descriptors = readdirSync(join(dataDir, 'plugins'))
  expect(descriptors.sort()).toEqual([...listed.keys()].map(n => `${n}.json`).sort())
  const referenced = new Set<string>()
  for (const file of descriptors) {
    const record = JSON.parse(readFileSync(join(dataDir, 'plugins', file), 'utf8')) as { descriptor: { sha256: string } }
    const module = join(dataDir, 'modules', `${record.descriptor.sha256}.wasm`)
    expect(existsSync(module)).toBe(true)
    expect(sha(readFileSync(module))).toBe(record.descriptor.sha256)
    referenced.add(`${record.descriptor.sha256}.wasm`)
  }
  expect(readdirSync(join(dataDir, 'modules')).sort()).toEqual([...referenced].sort())
  for (const volume of readdirSync(join(dataDir, 'volumes'))) expect([...listed.keys()]).toContain(volume)
  for (const slot of slots) {
    if (slot.state.present && slot.state.volume) expect(existsSync(join(dataDir, 'volumes', slot.name))).toBe(true)
  }
  expect(server.output()).not.toMatch(/skipping/)
}

/** The PostgreSQL registry: rows are what was listed, each with its module, nothing unreferenced. */
async function verifyDatabase (url: string, dataDir: string, listed: string[], slots: Slot[]): Promise<void> {
  const rows = await sql<{ name: string, sha256: string }>(url, 'SELECT name, sha256 FROM wph_plugins ORDER BY name')
  expect(rows.map(r => r.name)).toEqual([...listed].sort())
  const modules = await sql<{ sha256: string, bytes: Buffer }>(url, 'SELECT sha256, bytes FROM wph_modules')
  for (const m of modules) expect(sha(m.bytes)).toBe(m.sha256)
  expect(modules.map(m => m.sha256).sort()).toEqual([...new Set(rows.map(r => r.sha256))].sort())
  // Local copies: only of modules in use, each intact.
  for (const file of readdirSync(join(dataDir, 'modules'))) {
    expect(rows.map(r => `${r.sha256}.wasm`)).toContain(file)
    expect(`${sha(readFileSync(join(dataDir, 'modules', file)))}.wasm`).toBe(file)
  }
  for (const volume of readdirSync(join(dataDir, 'volumes'))) expect(listed).toContain(volume)
  for (const slot of slots) {
    if (slot.state.present && slot.state.volume) expect(existsSync(join(dataDir, 'volumes', slot.name))).toBe(true)
  }
}

test('a delete collecting a module while another plugin is published with the same bytes never leaves a descriptor without its module', async () => {
  // The race the crash test can only hit by chance, made certain: the delete of the last
  // plugin using some bytes collects their module file, slowly; meanwhile a plugin with the
  // same bytes is published (it finds the file already there). Its descriptor must not be
  // left pointing at a deleted module.
  const dataDir = tempDir('wph-race-')
  let collecting: (() => void) | undefined
  class SlowCollectingStore extends PluginStore {
    override async collectModules (referenced: ReadonlySet<string>): Promise<number> {
      if (collecting !== undefined) {
        collecting()
        await new Promise(resolve => setTimeout(resolve, 200))
      }
      return super.collectModules(referenced)
    }
  }
  try {
    const config = loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: 'silent' })
    const registry = new PluginRegistry(config, new SlowCollectingStore(dataDir), new ModuleCache(8 * 1024 * 1024))
    await registry.load(() => {})
    const bytes = withCustomSection(await watFixture('echo'), Buffer.from('race'))
    await registry.create({ bytes, manifest: '{"name":"first"}' })
    const collectStarted = new Promise<void>(resolve => { collecting = resolve })
    const removal = registry.remove('first')
    await collectStarted
    const second = await registry.create({ bytes, manifest: '{"name":"second"}' })
    await removal
    expect(registry.get('second')?.descriptor.sha256).toBe(second.sha256)
    expect(existsSync(join(dataDir, 'modules', `${second.sha256}.wasm`))).toBe(true)
    // and after a restart, the plugin is there
    const reloaded = new PluginRegistry(config, new PluginStore(dataDir), new ModuleCache(8 * 1024 * 1024))
    await reloaded.load((msg) => { throw new Error(msg) })
    expect(reloaded.list().map(d => d.name)).toEqual(['second'])
  } finally {
    removeDir(dataDir)
  }
})

test("a crash between a delete's commit and the removal of the plugin's volume does not hand its files to the next plugin of that name", async () => {
  const dataDir = tempDir('wph-volume-')
  class CrashingStore extends PluginStore {
    override async removeVolume (): Promise<void> {
      throw new Error('killed before the volume was removed')
    }
  }
  try {
    const config = loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: 'silent' })
    const manifest = JSON.stringify({ name: 'private', capabilities: { wasi: { preopens: [{ guest: '/data', volume: '@plugin', mode: 'rw' }] } } })
    const echo = await watFixture('echo')
    const before = new PluginRegistry(config, new CrashingStore(dataDir), new ModuleCache(8 * 1024 * 1024))
    await before.load(() => {})
    await before.create({ bytes: echo, manifest })
    writeFileSync(join(before.volumePath('private'), 'secret.txt'), 'of the first owner')
    await expect(before.remove('private')).rejects.toThrow(/killed/)

    const after = new PluginRegistry(config, new PluginStore(dataDir), new ModuleCache(8 * 1024 * 1024))
    await after.load((msg) => { throw new Error(msg) })
    expect(after.list()).toEqual([])
    expect(existsSync(join(dataDir, 'volumes', 'private'))).toBe(false)
    await after.create({ bytes: echo, manifest })
    expect(readdirSync(after.volumePath('private'))).toEqual([])
  } finally {
    removeDir(dataDir)
  }
})
