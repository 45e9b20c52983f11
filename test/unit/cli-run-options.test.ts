// The `run` flags as manifest fields and operator allowances (no process, no threads): what
// --config and --allow-host (extism ABI) and the WASI grants turn into, merged over a manifest.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { UsageError, parseGrants, parseMemory, parseTimeout } from '../../src/cli/run-options'

let dir: string
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'wph-grants-')) })
afterAll(() => rmSync(dir, { recursive: true, force: true }))

test('--config and --allow-host become config and capabilities.http.allowedHosts, added to the manifest\'s', () => {
  const grants = parseGrants({ config: ['greeting=Hi', 'empty=', 'url=a=b'], 'allow-host': ['api.example.com', '*.example.org'] })
  const manifest = grants.apply({ abi: 'extism', config: { keep: '1' }, capabilities: { http: { allowedHosts: ['old.example.net'] } } })
  expect(manifest).toEqual({
    abi: 'extism',
    config: { keep: '1', greeting: 'Hi', empty: '', url: 'a=b' },
    capabilities: { http: { allowedHosts: ['old.example.net', 'api.example.com', '*.example.org'] } }
  })
  expect(grants.allowedHosts).toEqual(['api.example.com', '*.example.org'])
  expect(() => parseGrants({ config: ['novalue'] })).toThrow(UsageError)
  expect(() => parseGrants({ 'allow-host': ['http://x/'] })).toThrow(UsageError)
})

test('--dir, --env and --wasi grant WASI; limits from the flags win over the manifest\'s', () => {
  const grants = parseGrants({ dir: [`${dir}::/data`, `${dir}::/in:ro`, dir], env: ['MODE=fast'], timeout: '2s', memory: '1MiB' })
  const manifest = grants.apply({ limits: { timeoutMs: 5, outputBytes: 10 }, capabilities: { wasi: { args: ['x'], env: { A: '1' } } } })
  expect(manifest).toEqual({
    limits: { timeoutMs: 2000, memoryBytes: 1048576, outputBytes: 10 },
    capabilities: {
      wasi: {
        args: ['x'],
        env: { A: '1', MODE: 'fast' },
        preopens: [{ guest: '/data', volume: 'cli-dir-0', mode: 'rw' }, { guest: '/in', volume: 'cli-dir-1', mode: 'ro' }, { guest: dir, volume: 'cli-dir-2', mode: 'rw' }]
      }
    }
  })
  expect(grants.volumes).toEqual([
    { name: 'cli-dir-0', hostPath: dir, readOnly: false }, { name: 'cli-dir-1', hostPath: dir, readOnly: true }, { name: 'cli-dir-2', hostPath: dir, readOnly: false }
  ])
  expect(grants.allowedEnv).toEqual(['MODE'])
  expect(parseGrants({ wasi: true }).apply({})).toEqual({ capabilities: { wasi: {} } })
  expect(parseGrants({}).apply({ name: 'x' })).toEqual({ name: 'x' })
})

test('sizes and durations', () => {
  expect(parseMemory('65536')).toBe(65536)
  expect(parseMemory('64MiB')).toBe(64 * 1024 * 1024)
  expect(parseMemory('512k')).toBe(512 * 1024)
  expect(parseMemory('1G')).toBe(1024 ** 3)
  for (const bad of ['1000', '0', '1.5MiB', 'MiB', '64MB']) expect(() => parseMemory(bad)).toThrow(UsageError)
  expect(parseTimeout('250')).toBe(250)
  expect(parseTimeout('250ms')).toBe(250)
  expect(parseTimeout('1.5s')).toBe(1500)
  for (const bad of ['0', '-1', '1.5', 'soon', '2m']) expect(() => parseTimeout(bad)).toThrow(UsageError)
})
