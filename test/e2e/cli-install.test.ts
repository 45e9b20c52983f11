// The command as installed: `npm link` (into a temporary prefix, never the machine's) puts
// `wasm-plugin-host` on PATH, and it runs on Node 24 even when the `node` first on PATH is an
// older one (bin/wasm-plugin-host.js re-starts on the Node 24 pinned in node_modules).
//
// `npm test` puts node_modules/.bin (whose `node` is the pinned 24) first on PATH, so PATH is
// rebuilt here without node_modules/.bin entries: the `node` found then is the machine's own.
import { spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { delimiter, join, resolve } from 'node:path'
import { removeDir, tempDir } from '../helpers/build-app'
import { fixturesDir } from '../helpers/fixtures'

const root = resolve(__dirname, '..', '..')
const machinePath = (process.env.PATH ?? '').split(delimiter).filter(d => d !== '' && !d.includes(join('node_modules', '.bin'))).join(delimiter)
const work = tempDir('wph-install-')
const prefix = join(work, 'prefix')
afterAll(() => removeDir(work))

function sh (command: string, args: string[], path: string, cwd = work, env: Record<string, string> = {}) {
  return spawnSync(command, args, { cwd, encoding: 'utf8', timeout: 120_000, env: { PATH: path, HOME: process.env.HOME ?? work, ...env } })
}

const machineNode = sh('node', ['--version'], machinePath)
const machineNodeVersion = machineNode.status === 0 ? machineNode.stdout.trim() : undefined
const olderNode = machineNodeVersion !== undefined && !machineNodeVersion.startsWith('v24.')
if (!olderNode) console.warn(`cli-install.test: the machine's node is ${machineNodeVersion ?? 'absent'}, not older than 24: the re-start on the pinned Node 24 is not exercised`)

test('`npm link` puts wasm-plugin-host on PATH; it runs on Node 24 whatever `node` is first on PATH', () => {
  mkdirSync(prefix)
  // --offline, --ignore-scripts: nothing is fetched or run; the link is made in `prefix` only.
  const link = sh('npm', ['link', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], machinePath, root, { npm_config_prefix: prefix })
  expect(link.status).toBe(0)
  expect(existsSync(join(prefix, 'bin', 'wasm-plugin-host'))).toBe(true)

  const path = [join(prefix, 'bin'), machinePath].join(delimiter)
  const version = sh('wasm-plugin-host', ['--version'], path)
  expect(version.stderr).toBe('')
  expect(version.stdout).toMatch(/^wasm-plugin-host \d+\.\d+\.\d+ \(Node\.js v24\.\d+\.\d+\)\n$/)
  writeFileSync(join(work, 'echo.wat'), readFileSync(join(fixturesDir, 'echo.wat')))
  const run = sh('wasm-plugin-host', ['run', 'echo.wat', '--input', '{"installed":true}'], path)
  expect(run.stderr).toBe('')
  expect(run.status).toBe(0)
  expect(JSON.parse(run.stdout)).toEqual({ installed: true })
}, 180_000)

const withOlderNode = olderNode ? test : test.skip
withOlderNode('on an older node without the pinned Node 24, it says what to do (exit 2)', () => {
  // A copy of the package without node_modules: nothing to re-start on.
  const bare = join(work, 'bare')
  mkdirSync(join(bare, 'dist'), { recursive: true })
  cpSync(join(root, 'bin'), join(bare, 'bin'), { recursive: true })
  writeFileSync(join(bare, 'dist', 'cli.js'), 'throw new Error("must not be loaded by an older node")\n')
  const res = sh('node', [join(bare, 'bin', 'wasm-plugin-host.js'), '--version'], machinePath)
  expect(res.status).toBe(2)
  expect(res.stdout).toBe('')
  expect(res.stderr).toMatch(new RegExp(`^wasm-plugin-host: needs Node.js 24 but runs on ${machineNodeVersion ?? ''} .*run \`npm ci\` in ${bare}, or put Node.js 24 first on PATH\\n$`))
})
