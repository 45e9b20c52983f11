// The README's shell recipes, run as written from a directory outside the repository: the curl
// session against the real service, and the json-ABI recipes for C and Rust with the installed
// command. Two substitutions only: the service's address, and (curl session) wabt's wat2wasm
// from this repository's node_modules for `npx -p wabt wat2wasm`, which would fetch the same
// package from the registry, out of bounds for tests.
import { spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { delimiter, join, resolve } from 'node:path'
import { request } from 'undici'
import { removeDir, tempDir } from '../helpers/build-app'
import { hasClang } from '../helpers/fixtures'
import { startServer } from '../helpers/http'

const root = resolve(__dirname, '..', '..')
const readme = readFileSync(join(root, 'README.md'), 'utf8')
const work = tempDir('wph-readme-')
afterAll(() => removeDir(work))

/** The first ```sh block after `marker` in the README. */
function shBlock (marker: string): string {
  const at = readme.indexOf(marker)
  if (at < 0) throw new Error(`README has no '${marker}'`)
  const m = /```sh\n([\s\S]*?)```/.exec(readme.slice(at))
  if (m?.[1] === undefined) throw new Error(`no sh block after '${marker}'`)
  return m[1]
}

function bash (script: string, cwd: string, path: string) {
  return spawnSync('bash', ['-euo', 'pipefail', '-c', script], { cwd, encoding: 'utf8', timeout: 240_000, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: path, HOME: process.env.HOME ?? cwd } })
}

test('the curl session works from any directory: wat2wasm named by its package, then upload, execute, replace, delete', async () => {
  const session = shBlock('## A session with curl')
  expect(session).toContain('npx -p wabt wat2wasm echo.wat -o echo.wasm')
  expect(session).not.toMatch(/npx wat2wasm/) // outside the repository: an unrelated npm package
  const server = await startServer()
  try {
    const dir = join(work, 'session')
    mkdirSync(dir)
    const script = session
      .replaceAll('npx -p wabt wat2wasm', join(root, 'node_modules', '.bin', 'wat2wasm'))
      .replaceAll('localhost:8080', server.url.replace('http://', ''))
    const res = bash(script, dir, process.env.PATH ?? '')
    expect(res.stderr).toBe('')
    expect(res.status).toBe(0)
    expect(res.stdout).toContain('{"hello":"world"}')
    const gone = await request(`${server.url}/plugins/echo`)
    expect(gone.statusCode).toBe(404)
    await gone.body.dump()
  } finally {
    await server.stop()
    removeDir(server.dataDir)
  }
}, 120_000)

const withToolchains = (hasClang() && spawnSync('/usr/bin/rustc', ['--version']).status === 0) || process.env.REQUIRE_TOOLCHAINS === '1' ? test : test.skip
withToolchains('the json-ABI recipes for C (reactor) and Rust (cdylib, both targets) build plugins that run', () => {
  const recipes = shBlock('A json plugin in C or Rust')
  expect(recipes).toMatch(/-mexec-model=reactor \\\n\s+-Wl,--export=execute -Wl,--export=alloc/)
  expect(recipes).toContain('--crate-type cdylib --target wasm32-unknown-unknown')
  expect(recipes).toContain('--crate-type cdylib --target wasm32-wasi')
  const dir = join(work, 'recipes')
  const bin = join(work, 'bin')
  mkdirSync(dir)
  mkdirSync(bin)
  symlinkSync(join(root, 'bin', 'wasm-plugin-host.js'), join(bin, 'wasm-plugin-host')) // the README's ln -s step
  const source = (file: string): string => readFileSync(join(root, 'templates', file), 'utf8').replaceAll('{{name}}', 'recipe')
  writeFileSync(join(dir, 'plugin.c'), source('c-json/plugin.c'))
  writeFileSync(join(dir, 'lib.rs'), source('rust-json/src/lib.rs'))
  // Debian's rustc (/usr/bin) has both wasm targets; a rustup rustc earlier on PATH may not.
  const res = bash(recipes, dir, [bin, '/usr/bin', process.env.PATH ?? ''].join(delimiter))
  expect(res.status).toBe(0)
  expect(res.stdout).toBe('{"plugin":"recipe","input":{"hello":"world"}}'.repeat(3))
})
