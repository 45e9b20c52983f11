#!/usr/bin/env node
// Runs the official WASI preview1 testsuite (WebAssembly/wasi-testsuite, branch
// prod/testsuite-base: the prebuilt AssemblyScript, C and Rust wasm32-wasip1 programs) against
// the service over HTTP, the way its wasmtime adapter runs them: each program is uploaded as a
// `wasi` plugin with its args and env, its `fs-tests.dir` (a fresh copy per test) preopened as
// `/` read-write, executed once with an empty body; the exit code and stdout are compared with
// the test's .json. Prints `PASS name` / `FAIL name: why` per test and a total; exits 1 when
// anything failed. Not part of CI: the suite is fetched by hand and never committed.
//
//   npm run build
//   node scripts/wasi-testsuite.mjs <suite-dir> [name-filter]
//     <suite-dir>: a checkout (or `git archive`) of prod/testsuite-base, or its tests/ folder.
//     Starts the service itself (dist/main.js on 127.0.0.1, a temp DATA_DIR, VOLUMES naming a
//     temp directory that is refilled before each test).
//
//   WASI_SUITE_URL=http://127.0.0.1:8080 WASI_SUITE_VOLUME=suite=/srv/suite \
//   node scripts/wasi-testsuite.mjs <suite-dir>
//     Targets a running service instead. It must declare that volume (VOLUMES=suite=/srv/suite),
//     read-write and on this machine (the script refills the directory), and allow the env
//     names the tests set (ALLOWED_ENV=a,b,c). AUTH_TOKEN is sent when set.
import { spawn } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const LANGUAGES = ['assemblyscript', 'c', 'rust']
const VOLUME_NAME = 'suite'

function usage (message) {
  process.stderr.write(`${message}\nusage: node scripts/wasi-testsuite.mjs <suite-dir> [name-filter]\n`)
  process.exit(2)
}

/** Every wasm32-wasip1 test program under the suite, with what its .json expects. */
function findTests (suiteDir) {
  const testsDir = existsSync(join(suiteDir, 'tests')) ? join(suiteDir, 'tests') : suiteDir
  const tests = []
  for (const lang of LANGUAGES) {
    const dir = join(testsDir, lang, 'testsuite', 'wasm32-wasip1')
    if (!existsSync(dir)) continue
    for (const file of readdirSync(dir).filter(f => f.endsWith('.wasm')).sort()) {
      const stem = file.slice(0, -'.wasm'.length)
      const configFile = join(dir, `${stem}.json`)
      const config = existsSync(configFile) ? JSON.parse(readFileSync(configFile, 'utf8')) : {}
      tests.push({
        name: `${lang}/${stem}`,
        wasm: join(dir, file),
        args: config.args ?? [],
        env: config.env ?? {},
        root: config.root !== undefined ? join(dir, config.root) : undefined,
        exitCode: config.exit_code ?? 0,
        stdout: config.stdout
      })
    }
  }
  return tests
}

async function freePort () {
  const server = createServer()
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise(resolve => server.close(resolve))
  return port
}

/** Starts dist/main.js and waits for /readyz. */
async function startService (volumeDir, envNames) {
  const main = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js')
  if (!existsSync(main)) usage(`${main} is missing: run \`npm run build\` first`)
  const port = await freePort()
  const dataDir = mkdtempSync(join(tmpdir(), 'wasi-suite-data-'))
  const child = spawn(process.execPath, [main], {
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATA_DIR: dataDir,
      WORKERS: '2',
      LOG_LEVEL: 'warn',
      VOLUMES: `${VOLUME_NAME}=${volumeDir}`,
      ALLOWED_ENV: [...envNames].join(',')
    },
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let log = ''
  child.stderr.on('data', d => { log += d.toString() })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 15_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the service exited with ${child.exitCode}: ${log}`)
    try {
      if ((await fetch(`${url}/readyz`)).status === 200) break
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`the service did not become ready: ${log}`)
    }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return {
    url,
    async stop () {
      if (child.exitCode === null) {
        child.kill('SIGTERM')
        await new Promise(resolve => child.once('exit', resolve))
      }
      rmSync(dataDir, { recursive: true, force: true })
    }
  }
}

/** Empties `dir` and copies the test's directory into it (or leaves it empty). */
function refill (dir, from) {
  for (const entry of readdirSync(dir)) rmSync(join(dir, entry), { recursive: true, force: true })
  if (from !== undefined && existsSync(from) && statSync(from).isDirectory()) cpSync(from, dir, { recursive: true, verbatimSymlinks: true })
}

function authHeaders () {
  return process.env.AUTH_TOKEN ? { authorization: `Bearer ${process.env.AUTH_TOKEN}` } : {}
}

/** Uploads, runs and deletes one test; returns undefined when it passed, else why not. */
async function runTest (url, test, index) {
  const name = `wasi-suite-${index}`
  const manifest = {
    name,
    abi: 'wasi',
    capabilities: {
      wasi: {
        // argv[0] is the program's file name, as wasmtime passes it.
        args: [basename(test.wasm), ...test.args],
        env: test.env,
        preopens: test.root !== undefined ? [{ guest: '/', volume: VOLUME_NAME, mode: 'rw' }] : []
      }
    }
  }
  const form = new FormData()
  form.append('module', new Blob([readFileSync(test.wasm)], { type: 'application/wasm' }), basename(test.wasm))
  form.append('manifest', JSON.stringify(manifest))
  const upload = await fetch(`${url}/plugins`, { method: 'POST', body: form, headers: authHeaders() })
  if (upload.status !== 201) return `upload: ${upload.status} ${await upload.text()}`
  try {
    const res = await fetch(`${url}/plugins/${name}/execute`, {
      method: 'POST',
      body: new Uint8Array(0),
      headers: { 'content-type': 'application/octet-stream', ...authHeaders() }
    })
    const text = await res.text()
    let exitCode
    let stdout
    if (res.status === 200) {
      exitCode = 0
      stdout = text
    } else {
      let body
      try { body = JSON.parse(text) } catch { return `${res.status}: ${text.slice(0, 300)}` }
      if (body.code !== 'PLUGIN_EXIT') return `${res.status} ${body.code}: ${body.message}${stderrOf(body)}`
      exitCode = body.details.exitCode
      stdout = body.details.stdout
      if (exitCode !== test.exitCode) return `exit code ${exitCode}, expected ${test.exitCode}${stderrOf(body)}`
    }
    if (exitCode !== test.exitCode) return `exit code ${exitCode}, expected ${test.exitCode}`
    if (test.stdout !== undefined && stdout !== test.stdout) return `stdout ${JSON.stringify(stdout)}, expected ${JSON.stringify(test.stdout)}`
    return undefined
  } finally {
    await fetch(`${url}/plugins/${name}`, { method: 'DELETE', headers: authHeaders() })
  }
}

function stderrOf (body) {
  const stderr = body?.details?.stderr
  return typeof stderr === 'string' && stderr !== '' ? `\n    stderr: ${stderr.trim().split('\n').join('\n    ')}` : ''
}

async function main () {
  const [suiteArg, filter] = process.argv.slice(2)
  if (suiteArg === undefined) usage('missing <suite-dir>')
  const tests = findTests(resolve(suiteArg)).filter(t => filter === undefined || t.name.includes(filter))
  if (tests.length === 0) usage(`no wasm32-wasip1 tests under ${suiteArg}`)

  let url = process.env.WASI_SUITE_URL
  let volumeDir
  let service
  if (url !== undefined && url !== '') {
    const given = process.env.WASI_SUITE_VOLUME ?? ''
    const eq = given.indexOf('=')
    if (eq <= 0 || given.slice(0, eq) !== VOLUME_NAME) usage(`WASI_SUITE_VOLUME must be ${VOLUME_NAME}=/host/dir (the volume the service declares)`)
    volumeDir = given.slice(eq + 1)
  } else {
    volumeDir = mkdtempSync(join(tmpdir(), 'wasi-suite-volume-'))
    service = await startService(volumeDir, new Set(tests.flatMap(t => Object.keys(t.env))))
    url = service.url
  }

  let passed = 0
  let failed = 0
  try {
    for (const [i, test] of tests.entries()) {
      refill(volumeDir, test.root)
      let problem
      try {
        problem = await runTest(url, test, i)
      } catch (err) {
        problem = `error: ${err instanceof Error ? err.message : String(err)}`
      }
      if (problem === undefined) {
        passed++
        console.log(`PASS ${test.name}`)
      } else {
        failed++
        console.log(`FAIL ${test.name}: ${problem}`)
      }
    }
  } finally {
    await service?.stop()
    if (service !== undefined) rmSync(volumeDir, { recursive: true, force: true })
  }
  console.log(`${passed} passed, ${failed} failed`)
  process.exitCode = failed === 0 ? 0 : 1
}

await main()
