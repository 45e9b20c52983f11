#!/usr/bin/env node
// `npm run build` and `npm start`: compile src/ into dist/ safely when several run at once
// (replicas started together from one checkout). Under a lock (an atomic mkdir, taken over
// when its holder is dead), tsc writes into a fresh temp dir beside dist/, which then replaces
// dist/ by rename: no process ever loads a half-written dist/. With --if-stale (npm start),
// nothing is rebuilt when dist/ was built from exactly these sources (a hash of src/, the
// tsconfigs and the TypeScript version, kept in dist/.build-hash): the second replica waits
// for the first one's build and reuses it.
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const dist = join(root, 'dist')
const lock = join(root, '.build.lock')
const stamp = join(dist, '.build-hash')
const ifStale = process.argv.includes('--if-stale')
const say = (msg) => process.stderr.write(`build: ${msg}\n`)

function inputsHash () {
  const hash = createHash('sha256')
  const files = []
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) walk(path); else files.push(path)
    }
  }
  walk(join(root, 'src'))
  files.push(join(root, 'tsconfig.json'), join(root, 'tsconfig.build.json'), join(root, 'node_modules', 'typescript', 'package.json'))
  for (const file of files.sort()) hash.update(relative(root, file)).update('\0').update(readFileSync(file)).update('\0')
  return hash.digest('hex')
}

function alive (pid) {
  try { process.kill(pid, 0); return true } catch (err) { return err.code === 'EPERM' }
}

async function withLock (fn) {
  for (let waited = 0; ; waited += 100) {
    try {
      mkdirSync(lock)
      writeFileSync(join(lock, 'pid'), String(process.pid))
      break
    } catch (err) {
      if (err.code !== 'EEXIST') throw err
      let holder = NaN
      try { holder = Number(readFileSync(join(lock, 'pid'), 'utf8')) } catch {}
      // A holder that died (killed mid-build) leaves the lock: take it over. A lock without
      // a pid yet is being taken right now, unless it has been so for a while.
      const age = (() => { try { return Date.now() - statSync(lock).mtimeMs } catch { return 0 } })()
      if ((Number.isInteger(holder) && holder > 0 && !alive(holder)) || (Number.isNaN(holder) && age > 10_000)) {
        rmSync(lock, { recursive: true, force: true })
        continue
      }
      if (waited % 5000 === 0) say(`waiting for the build of process ${holder}`)
      if (waited > 600_000) throw new Error(`the build lock ${lock} is held by ${holder} for 10 minutes`)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }
  try {
    return fn()
  } finally {
    rmSync(lock, { recursive: true, force: true })
  }
}

await withLock(() => {
  const hash = inputsHash()
  if (ifStale && existsSync(stamp) && readFileSync(stamp, 'utf8') === hash) {
    say('dist/ is up to date')
    return
  }
  const tmp = join(root, `dist.tmp-${process.pid}`)
  const old = join(root, `dist.old-${process.pid}`)
  rmSync(tmp, { recursive: true, force: true })
  try {
    execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', tmp], { stdio: 'inherit', cwd: root })
    writeFileSync(join(tmp, '.build-hash'), hash)
    if (existsSync(dist)) renameSync(dist, old)
    renameSync(tmp, dist)
  } finally {
    rmSync(tmp, { recursive: true, force: true })
    rmSync(old, { recursive: true, force: true })
  }
  say('dist/ built')
})
