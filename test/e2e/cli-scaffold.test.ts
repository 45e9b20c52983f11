// `wasm-plugin-host new <template> <name>` as an author uses it: every template is scaffolded
// into an empty directory, built with its own build.sh, run with `run`, then uploaded with its
// own manifest to the real service and executed over HTTP, with the same answer both ways.
//
// build.sh exits 3 when its toolchain is missing: that template is then skipped with a
// warning, unless REQUIRE_TOOLCHAINS=1 (CI), where it fails. The AssemblyScript templates
// `npm install` their compiler when it is missing; here their node_modules is a link to the
// repository's, which has the same packages (assemblyscript, @extism/as-pdk), so no test
// reaches the registry.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, symlinkSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { FormData, request } from 'undici'
import { TEMPLATES } from '../../src/cli/scaffold'
import { removeDir, tempDir } from '../helpers/build-app'
import { startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'

const root = resolve(__dirname, '..', '..')
const CLI = join(root, 'dist', 'cli.js')
const requireToolchains = process.env.REQUIRE_TOOLCHAINS === '1'
const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' }
const INPUT = '{"hello":"world"}'
/** Calls `greet` of the module named by argv[1] with @extism/extism, config greeting=Hi. */
const EXTISM_HOST = `import createPlugin from '@extism/extism'
import { readFileSync } from 'node:fs'
const plugin = await createPlugin({ wasm: [{ data: readFileSync(process.argv[1]) }] }, { useWasi: false, config: { greeting: 'Hi' } })
process.stdout.write((await plugin.call('greet', 'world')).text())
await plugin.close()`

function cli (args: string[], cwd: string) {
  return spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', timeout: 60_000, env })
}

interface Scaffold { template: string, name: string, dir: string, wasm?: Buffer, skipped?: string, failure?: string }

const work = tempDir('wph-scaffold-')
afterAll(() => removeDir(work))

function scaffoldAndBuild (template: string): Scaffold {
  const name = `hello-${template}`
  const dir = join(work, name)
  const created = cli(['new', template, name], work)
  if (created.status !== 0) return { template, name, dir, failure: `new failed (${created.status}): ${created.stderr}` }
  if (template.startsWith('as-')) symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'))
  const build = spawnSync('bash', [join(dir, 'build.sh')], { encoding: 'utf8', timeout: 300_000, env })
  const output = `${build.stdout ?? ''}${build.stderr ?? ''}`.trim()
  if (build.status === 0) return { template, name, dir, wasm: readFileSync(join(dir, 'build', `${name}.wasm`)) }
  if (build.status === 3 && !requireToolchains) {
    console.warn(`cli-scaffold.test: template ${template} skipped, its toolchain is missing:\n${output}`)
    return { template, name, dir, skipped: output }
  }
  return { template, name, dir, failure: `build.sh failed (${build.status ?? build.signal ?? build.error?.message}):\n${output}` }
}

const templates = readdirSync(join(root, 'templates')).sort()
const scaffolds = templates.map(scaffoldAndBuild)

let server: RunningServer | undefined
beforeAll(async () => {
  if (scaffolds.some(s => s.wasm !== undefined)) server = await startServer()
})
afterAll(async () => {
  if (server !== undefined) {
    await server.stop()
    removeDir(server.dataDir)
  }
})

async function uploadAndExecute (s: Scaffold, body: string): Promise<{ upload: number, status: number, text: string }> {
  if (server === undefined || s.wasm === undefined) throw new Error('no server or no module')
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(s.wasm)], { type: 'application/wasm' }), `${s.name}.wasm`)
  form.append('manifest', readFileSync(join(s.dir, 'manifest.json'), 'utf8'))
  const up = await request(`${server.url}/plugins`, { method: 'POST', body: form })
  const uploaded = await up.body.text()
  if (up.statusCode !== 201) return { upload: up.statusCode, status: 0, text: uploaded }
  const res = await request(`${server.url}/plugins/${s.name}/execute`, { method: 'POST', body, headers: { 'content-type': 'application/json' } })
  return { upload: up.statusCode, status: res.statusCode, text: await res.body.text() }
}

test('every template is listed by `new --help`, and `new` refuses what it cannot do (exit 2)', () => {
  expect(templates).toEqual(Object.keys(TEMPLATES).sort())
  const help = cli(['new', '--help'], work)
  expect(help.status).toBe(0)
  for (const t of templates) expect(help.stdout).toContain(t)
  expect(cli(['new', 'cobol-json', 'x'], work).status).toBe(2)
  expect(cli(['new', 'c-json', 'Bad Name'], work).status).toBe(2)
  expect(cli(['new', 'c-json'], work).status).toBe(2)
  const existing = cli(['new', 'c-json', scaffolds[0]?.name ?? 'x'], work) // a directory with files in it
  expect(existing.status).toBe(2)
  expect(existing.stderr).toMatch(/exists and is not an empty directory/)
})

for (const s of scaffolds) {
  const suite = s.skipped !== undefined ? describe.skip : describe
  suite(`new ${s.template}`, () => {
    test('scaffolds and builds with its own build.sh', () => {
      if (s.failure !== undefined) throw new Error(s.failure)
      expect(s.wasm?.subarray(0, 4)).toEqual(Buffer.from('\0asm', 'latin1'))
      expect(readdirSync(s.dir)).toEqual(expect.arrayContaining(['build.sh', 'manifest.json']))
      expect(JSON.parse(readFileSync(join(s.dir, 'manifest.json'), 'utf8'))).toMatchObject({ name: s.name })
    })

    if (s.template.endsWith('-json') || s.template.endsWith('-wasi')) {
      const expected = s.template.endsWith('-json')
        ? `{"plugin":"${s.name}","input":${INPUT}}`
        : `{"plugin":"${s.name}","bytes":${INPUT.length}}\n`
      test('runs with `run`, then answers the same on the service after upload', async () => {
        if (s.failure !== undefined) throw new Error(s.failure)
        const run = cli(['run', `build/${s.name}.wasm`, '--manifest', 'manifest.json', '--input', INPUT], s.dir)
        expect(run.status).toBe(0)
        expect(run.stdout).toBe(expected)
        expect(await uploadAndExecute(s, INPUT)).toEqual({ upload: 201, status: 200, text: expected })
      })
    }

    if (s.template === 'as-extism') {
      test('is an Extism plugin: imports extism:host/env, runs on Extism\'s JS host; with --config and --allow-host on `run`, and on the service', async () => {
        if (s.failure !== undefined) throw new Error(s.failure)
        const imports = WebAssembly.Module.imports(new WebAssembly.Module(new Uint8Array(s.wasm ?? [])))
        expect(imports.every(i => i.module === 'extism:host/env')).toBe(true)
        expect(imports.map(i => i.name)).toEqual(expect.arrayContaining(['input_length', 'output_set', 'config_get']))
        // Extism's own host runs it (the JS SDK, with the config the flag would give).
        const extism = spawnSync(process.execPath, ['--no-warnings', '--input-type=module', '-e', EXTISM_HOST, join(s.dir, 'build', `${s.name}.wasm`)], { cwd: root, encoding: 'utf8', timeout: 60_000, env })
        expect(extism.stderr).toBe('')
        expect(extism.stdout).toBe('Hi, world!')
        const inspect = cli(['inspect', `build/${s.name}.wasm`, '--manifest', 'manifest.json'], s.dir)
        expect(inspect.status).toBe(0)
        expect(JSON.parse(inspect.stdout)).toMatchObject({ abi: 'extism', reset: { mode: 'reset' } })
        const run = cli(['run', `build/${s.name}.wasm`, '--manifest', 'manifest.json', '--input', 'world', '--config', 'greeting=Hi', '--allow-host', 'api.example.com'], s.dir)
        expect(run.stderr).toBe('')
        expect(run.status).toBe(0)
        expect(run.stdout).toBe('Hi, world!')
        expect(await uploadAndExecute(s, 'world')).toEqual({ upload: 201, status: 200, text: 'Hello, world!' })
      })
    }
  })
}

test('no template was left out of the cases above', () => {
  for (const t of templates) expect(/-(json|wasi)$/.test(t) || t === 'as-extism').toBe(true)
  expect(existsSync(join(root, 'templates', 'as-extism', 'assembly', 'index.ts'))).toBe(true)
})
