// Every plugin under examples/ is built from source by its own build.sh, uploaded to the real
// service with its own manifest.json, and called over HTTP with the same inputs: the same
// plugin (count-vowels) in every language and ABI gives the same answers.
//
// build.sh exits 3 when its toolchain is missing: that example is then skipped with a
// warning, unless REQUIRE_TOOLCHAINS=1 (CI), where it fails. Builds are cached by the scripts
// themselves (an output newer than its sources is kept), so a warm run builds nothing.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { FormData, request } from 'undici'
import { startServer } from '../helpers/http'
import type { RunningServer } from '../helpers/http'
import { removeDir } from '../helpers/build-app'

const examplesDir = resolve(__dirname, '..', '..', 'examples')
const requireToolchains = process.env.REQUIRE_TOOLCHAINS === '1'

/** The examples this file knows the answers of; a new one must be added here too. */
const EXPECTED = ['as-extism', 'as-wasi', 'c-extism', 'c-json', 'c-wasi', 'rust-wasi', 'wat-json']

interface Manifest { name: string, version: string, abi: 'json' | 'wasi' | 'extism', entry?: string }

/** The extism examples take the text itself (any bytes) and answer {"vowels":N}. */
const EXTISM_CASES: Array<[string, string, string]> = [
  ['Hello World', 'Hello World', '{"vowels":3}'],
  ['an empty input', '', '{"vowels":0}'],
  ['unicode text: only ASCII vowels count', 'naïve café, Øresund, 日本語 👋 AEIOU', '{"vowels":10}'],
  ['a long text', 'Ab'.repeat(100_000), '{"vowels":100000}']
]

interface Example {
  dir: string
  manifest: Manifest
  /** the built module, when the build succeeded */
  wasm?: Buffer
  /** set when the toolchain is missing and that is allowed: the example is skipped */
  skipped?: string
  /** set when the build failed (or the toolchain is missing under REQUIRE_TOOLCHAINS=1) */
  failure?: string
}

function build (dir: string): Example {
  const manifest = JSON.parse(readFileSync(join(examplesDir, dir, 'manifest.json'), 'utf8')) as Manifest
  const run = spawnSync('bash', [join(examplesDir, dir, 'build.sh')], { encoding: 'utf8', timeout: 300_000, env: process.env })
  const output = `${run.stdout ?? ''}${run.stderr ?? ''}`.trim()
  if (run.status === 0) return { dir, manifest, wasm: readFileSync(join(examplesDir, dir, 'build', 'count_vowels.wasm')) }
  if (run.status === 3) {
    if (requireToolchains) return { dir, manifest, failure: `toolchain missing and REQUIRE_TOOLCHAINS=1:\n${output}` }
    // Visible in the test output, not just a silently shorter run.
    console.warn(`examples.test: examples/${dir} skipped, its toolchain is missing:\n${output}`)
    return { dir, manifest, skipped: output }
  }
  return { dir, manifest, failure: `examples/${dir}/build.sh failed (${run.status ?? run.signal ?? run.error?.message}):\n${output}` }
}

const dirs = readdirSync(examplesDir, { withFileTypes: true })
  .filter(d => d.isDirectory() && existsSync(join(examplesDir, d.name, 'build.sh')))
  .map(d => d.name)
  .sort()
const examples = dirs.map(build)

const ERROR = '{"error":"text must be a string"}'

/** name, request body, the json ABI's answer (a wasi example prints the same plus "\n") */
const CASES: Array<[string, string, string]> = [
  ['Hello World', '{"text":"Hello World"}', '{"vowels":3}'],
  ['an empty string', '{"text":""}', '{"vowels":0}'],
  ['unicode text: only ASCII vowels count', JSON.stringify({ text: 'naïve café, Øresund, 日本語 👋 AEIOU' }), '{"vowels":10}'],
  ['escapes are decoded', '{"text":"caf\\u00e9 \\u0041\\u0045 \\"quoted\\" \\\\ back \\ud83d\\ude00 \\n"}', '{"vowels":7}'],
  ['other members and a nested "text" are skipped', '{ "id": 1, "meta": {"text": 42, "tags": ["a", "}"]}, "text" : "aeiouAEIOU xyz" }', '{"vowels":10}'],
  ['a long text', JSON.stringify({ text: 'Ab'.repeat(100_000) }), '{"vowels":100000}'],
  ['text is a number', '{"text":42}', ERROR],
  ['text is null', '{"text":null}', ERROR],
  ['text is missing', '{"txt":"Hello"}', ERROR],
  ['an empty object', '{}', ERROR],
  ['not an object', '["text"]', ERROR]
]

let server: RunningServer | undefined

beforeAll(async () => {
  if (examples.some(e => e.wasm !== undefined)) server = await startServer()
})

afterAll(async () => {
  if (server !== undefined) {
    await server.stop()
    removeDir(server.dataDir)
  }
})

function url (): string {
  if (server === undefined) throw new Error('the server did not start')
  return server.url
}

async function upload (wasm: Buffer, manifest: Manifest) {
  const form = new FormData()
  form.append('module', new Blob([new Uint8Array(wasm)], { type: 'application/wasm' }), 'count_vowels.wasm')
  form.append('manifest', JSON.stringify(manifest))
  const res = await request(`${url()}/plugins`, { method: 'POST', body: form })
  return { status: res.statusCode, body: await res.body.json() as Record<string, unknown> }
}

async function execute (name: string, body: string, contentType: string | undefined = 'application/json') {
  const res = await request(`${url()}/plugins/${name}/execute`, { method: 'POST', body, headers: contentType !== undefined ? { 'content-type': contentType } : {} })
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

test('every example is here, with a manifest that names it after its folder', () => {
  expect(dirs).toEqual(EXPECTED)
  for (const e of examples) {
    const abi = e.dir.endsWith('-json') ? 'json' : e.dir.endsWith('-extism') ? 'extism' : 'wasi'
    expect(e.manifest).toEqual({
      name: `count-vowels-${e.dir}`,
      version: expect.stringMatching(/^\d+\.\d+\.\d+$/),
      abi,
      ...(abi === 'extism' ? { entry: 'count_vowels' } : {})
    })
  }
})

for (const example of examples) {
  const { dir, manifest } = example
  const suite = example.skipped !== undefined ? describe.skip : describe
  suite(`examples/${dir} (${manifest.abi} ABI)`, () => {
    if (example.failure !== undefined) {
      test('builds', () => { throw new Error(example.failure) })
      return
    }
    const wasm = example.wasm ?? Buffer.alloc(0)
    const newline = manifest.abi === 'wasi' ? '\n' : ''
    if (manifest.abi === 'extism') {
      test('uploads with its manifest.json', async () => {
        const up = await upload(wasm, manifest)
        expect(up.status).toBe(201)
        expect(up.body).toMatchObject({ name: manifest.name, abi: 'extism', entries: ['count_vowels'] })
        // only the Extism kernel: no WASI
        expect((up.body.imports as Array<{ module: string }>).every(i => i.module === 'extism:host/env')).toBe(true)
      })
      test.each(EXTISM_CASES)('%s', async (_, input, answer) => {
        const res = await execute(manifest.name, input, 'text/plain')
        expect({ status: res.status, text: res.text }).toEqual({ status: 200, text: answer })
        expect(res.headers['content-type']).toMatch(/^application\/json/)
      })
      test('the config key "vowels" changes what counts', async () => {
        const up = await upload(wasm, { ...manifest, name: `${manifest.name}-y`, config: { vowels: 'yY' } } as Manifest)
        expect(up.status).toBe(201)
        expect((await execute(`${manifest.name}-y`, 'Yes, yearly', 'text/plain')).text).toBe('{"vowels":3}')
      })
      return
    }

    test('uploads with its manifest.json', async () => {
      const up = await upload(wasm, manifest)
      expect(up.status).toBe(201)
      expect(up.body).toMatchObject({ name: manifest.name, version: manifest.version, abi: manifest.abi, size: wasm.length })
      // the json examples are freestanding: no imports, so no WASI grant
      if (manifest.abi === 'json') expect(up.body.imports).toEqual([])
    })

    test.each(CASES)('%s', async (_, input, answer) => {
      const res = await execute(manifest.name, input)
      expect({ status: res.status, text: res.text }).toEqual({ status: 200, text: `${answer}${newline}` })
      expect(res.headers['content-type']).toMatch(/^application\/json/)
      expect(res.headers['x-plugin-version']).toBe(manifest.version)
    })

    if (manifest.abi === 'wasi') {
      test('stdin may be empty or not JSON at all: the same error answer, exit code 0', async () => {
        expect(await execute(manifest.name, '', undefined)).toMatchObject({ status: 200, text: `${ERROR}\n` })
        expect(await execute(manifest.name, 'Hello World', 'text/plain')).toMatchObject({ status: 200, text: `${ERROR}\n` })
      })
    } else {
      test('a body that is not JSON is refused by the host before the plugin runs', async () => {
        const res = await execute(manifest.name, 'Hello World', 'text/plain')
        expect(res.status).toBe(400)
        expect(JSON.parse(res.text).code).toBe('INVALID_INPUT')
      })
    }
  })
}
