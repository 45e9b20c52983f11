// The `run` flags that grant and limit (--wasi, --dir, --env, --timeout, --memory, --config,
// --allow-host), turned into what the service understands: fields merged into the plugin's
// manifest, plus what an operator would have to allow for that manifest (a volume for each
// --dir, the --env names in ALLOWED_ENV, the --allow-host patterns in ALLOWED_HOSTS). On the
// command line the plugin author is also the operator, so a flag grants both sides at once;
// the operator's maxima (MAX_MEMORY_BYTES, MAX_TIMEOUT_MS) still apply, as on the service.
import { statSync } from 'node:fs'
import { isAbsolute, resolve } from 'node:path'
import type { Volume } from '../config'

/** A mistake on the command line: exit code 2, with this message. */
export class UsageError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

export interface GrantFlags {
  wasi?: boolean | undefined
  dir?: string[] | undefined
  env?: string[] | undefined
  timeout?: string | undefined
  memory?: string | undefined
  config?: string[] | undefined
  'allow-host'?: string[] | undefined
}

/** What the flags add: to the manifest, and to the operator's side of the configuration. */
export interface Grants {
  /** Merged over the manifest file's JSON (flags win for limits, add to grants). */
  apply: (manifest: Record<string, unknown>) => Record<string, unknown>
  volumes: Volume[]
  allowedEnv: string[]
  allowedHosts: string[]
}

const KIB = 1024
const UNITS: Record<string, number> = { '': 1, k: KIB, kib: KIB, m: KIB ** 2, mib: KIB ** 2, g: KIB ** 3, gib: KIB ** 3 }
const PAGE = 65_536

/** `--memory`: bytes, or with a binary unit (64MiB, 64M, 1g); a whole number of 64 KiB pages. */
export function parseMemory (text: string): number {
  const m = /^(\d+)\s*([a-z]*)$/i.exec(text.trim())
  const unit = m === null ? undefined : UNITS[(m[2] ?? '').toLowerCase()]
  if (m === null || unit === undefined) throw new UsageError(`--memory '${text}': expected bytes or a size such as 64MiB, 512KiB, 1GiB`)
  const bytes = Number(m[1]) * unit
  if (bytes < PAGE || bytes % PAGE !== 0) throw new UsageError(`--memory '${text}': must be a whole number of 64 KiB wasm pages (at least 64KiB)`)
  return bytes
}

/** `--timeout`: milliseconds, or with a unit (250ms, 2s). */
export function parseTimeout (text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s)?$/i.exec(text.trim())
  const ms = m === null ? NaN : Number(m[1]) * (m[2]?.toLowerCase() === 's' ? 1000 : 1)
  if (!Number.isInteger(ms) || ms < 1) throw new UsageError(`--timeout '${text}': expected whole milliseconds such as 500, 500ms or 2s`)
  return ms
}

function keyValue (flag: string, text: string, keyPattern: RegExp): [string, string] {
  const eq = text.indexOf('=')
  const key = eq > 0 ? text.slice(0, eq) : ''
  if (!keyPattern.test(key)) throw new UsageError(`--${flag} '${text}': expected KEY=VALUE with KEY matching ${keyPattern.source}`)
  return [key, text.slice(eq + 1)]
}

interface DirGrant { hostPath: string, guest: string, readOnly: boolean }

/**
 * `--dir HOST[::GUEST][:ro|:rw]` (wasmtime's syntax): HOST preopened at GUEST (default: HOST's
 * absolute path), read-write unless `:ro`. HOST must be an existing directory.
 */
export function parseDir (text: string): DirGrant {
  let spec = text
  let readOnly = false
  if (spec.endsWith(':ro')) { readOnly = true; spec = spec.slice(0, -3) } else if (spec.endsWith(':rw')) spec = spec.slice(0, -3)
  const sep = spec.indexOf('::')
  const host = sep < 0 ? spec : spec.slice(0, sep)
  if (host === '') throw new UsageError(`--dir '${text}': expected HOST[::GUEST][:ro]`)
  const hostPath = resolve(host)
  const guest = sep < 0 ? hostPath : spec.slice(sep + 2)
  if (!isAbsolute(guest) || !guest.startsWith('/') || guest.split('/').includes('..')) {
    throw new UsageError(`--dir '${text}': the guest path '${guest}' must be absolute, without '..'`)
  }
  requireDirectory('--dir', hostPath)
  return { hostPath, guest, readOnly }
}

/** A host directory named on the command line must exist: a usage error, not a failed call. */
export function requireDirectory (flag: string, path: string): void {
  let isDir = false
  try { isDir = statSync(path).isDirectory() } catch { /* missing: reported below */ }
  if (!isDir) throw new UsageError(`${flag} '${path}': no such directory`)
}

function record (value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? { ...value as Record<string, unknown> } : {}
}

/** Parses the grant flags; throws UsageError on a malformed one. */
export function parseGrants (flags: GrantFlags): Grants {
  const dirs = (flags.dir ?? []).map(parseDir)
  const env = (flags.env ?? []).map(text => keyValue('env', text, /^[A-Za-z_][A-Za-z0-9_]*$/))
  const config = (flags.config ?? []).map(text => keyValue('config', text, /^[^=]+$/))
  const hosts = flags['allow-host'] ?? []
  for (const host of hosts) if (!/^[A-Za-z0-9*.:[\]-]+$/.test(host)) throw new UsageError(`--allow-host '${host}': expected a host name or pattern such as api.example.com or *.example.org`)
  const timeoutMs = flags.timeout !== undefined ? parseTimeout(flags.timeout) : undefined
  const memoryBytes = flags.memory !== undefined ? parseMemory(flags.memory) : undefined
  const volumes: Volume[] = dirs.map((d, i) => ({ name: `cli-dir-${i}`, hostPath: d.hostPath, readOnly: d.readOnly }))
  const wantsWasi = flags.wasi === true || dirs.length > 0 || env.length > 0

  const apply = (manifest: Record<string, unknown>): Record<string, unknown> => {
    const out = { ...manifest }
    if (timeoutMs !== undefined || memoryBytes !== undefined) {
      out.limits = { ...record(out.limits), ...(timeoutMs !== undefined ? { timeoutMs } : {}), ...(memoryBytes !== undefined ? { memoryBytes } : {}) }
    }
    if (config.length > 0) out.config = { ...record(out.config), ...Object.fromEntries(config) }
    const capabilities = record(out.capabilities)
    if (wantsWasi) {
      const wasi = record(capabilities.wasi)
      if (env.length > 0) wasi.env = { ...record(wasi.env), ...Object.fromEntries(env) }
      if (dirs.length > 0) {
        const preopens = Array.isArray(wasi.preopens) ? [...wasi.preopens as unknown[]] : []
        dirs.forEach((d, i) => preopens.push({ guest: d.guest, volume: `cli-dir-${i}`, mode: d.readOnly ? 'ro' : 'rw' }))
        wasi.preopens = preopens
      }
      capabilities.wasi = wasi
    }
    if (hosts.length > 0) {
      const http = record(capabilities.http)
      const allowed = Array.isArray(http.allowedHosts) ? http.allowedHosts as unknown[] : []
      http.allowedHosts = [...allowed, ...hosts]
      capabilities.http = http
    }
    if (Object.keys(capabilities).length > 0) out.capabilities = capabilities
    return out
  }
  return { apply, volumes, allowedEnv: env.map(([k]) => k), allowedHosts: hosts }
}
