// One Config object, validated once at start-up and frozen: nothing reads process.env after this.
import { availableParallelism } from 'node:os'
import { isAbsolute, resolve } from 'node:path'
import Ajv from 'ajv'

const MiB = 1024 * 1024
const PAGE = 65536

/** An operator-declared host directory that manifests may preopen by name. */
export interface Volume {
  readonly name: string
  readonly hostPath: string
  readonly readOnly: boolean
}

export interface Config {
  readonly host: string
  readonly port: number
  readonly dataDir: string
  readonly workers: number
  readonly queueMax: number
  readonly queueTimeoutMs: number
  readonly maxUploadBytes: number
  readonly maxInputBytes: number
  readonly defaultTimeoutMs: number
  readonly maxTimeoutMs: number
  readonly defaultMemoryBytes: number
  readonly maxMemoryBytes: number
  readonly maxTableElements: number
  readonly defaultOutputBytes: number
  readonly maxOutputBytes: number
  readonly pluginDiskBytes: number
  readonly pluginConcurrency: number
  readonly breakerThreshold: number
  readonly breakerCooldownMs: number
  /** Idle time after which worker threads give back the memory they keep between calls; 0: never. */
  readonly idleReleaseMs: number
  readonly maxPlugins: number
  readonly moduleCacheBytes: number
  readonly volumes: ReadonlyMap<string, Volume>
  readonly allowedEnv: ReadonlySet<string>
  readonly authToken: string | undefined
  readonly executeTokens: readonly string[]
  /** When set, /metrics needs this token or the admin token. */
  readonly metricsToken: string | undefined
  readonly logLevel: string
  readonly requestTimeoutMs: number
  readonly headersTimeoutMs: number
  readonly keepAliveTimeoutMs: number
  /** Host patterns a manifest's capabilities.http.allowedHosts may name; empty: no HTTP. */
  readonly allowedHosts: readonly string[]
  /** Whether plugins' HTTP may reach loopback, private, link-local and unspecified addresses. */
  readonly httpAllowPrivate: boolean
  /** Lowest level of the log lines extism plugins write that are kept. */
  readonly pluginLogLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error'
  /** PostgreSQL URL of the registry shared by replicas; undefined: DATA_DIR (one replica). */
  readonly registryUrl: string | undefined
}

/** Environment variable -> config key, with its JSON-schema type. Also the README's table. */
const envSchema = {
  type: 'object',
  additionalProperties: true,
  properties: {
    HOST: { type: 'string', minLength: 1, default: '127.0.0.1' },
    PORT: { type: 'integer', minimum: 0, maximum: 65535, default: 8080 },
    DATA_DIR: { type: 'string', minLength: 1, default: './data' },
    WORKERS: { type: 'integer', minimum: 1, maximum: 256 },
    QUEUE_MAX: { type: 'integer', minimum: 1, maximum: 1_000_000, default: 256 },
    QUEUE_TIMEOUT_MS: { type: 'integer', minimum: 1, maximum: 600_000, default: 2000 },
    MAX_UPLOAD_BYTES: { type: 'integer', minimum: 8, maximum: 1024 * MiB, default: 50 * MiB },
    MAX_INPUT_BYTES: { type: 'integer', minimum: 2, maximum: 1024 * MiB, default: 10 * MiB },
    DEFAULT_TIMEOUT_MS: { type: 'integer', minimum: 1, maximum: 3_600_000, default: 5000 },
    MAX_TIMEOUT_MS: { type: 'integer', minimum: 1, maximum: 3_600_000, default: 30_000 },
    DEFAULT_MEMORY_BYTES: { type: 'integer', minimum: PAGE, maximum: 4096 * MiB, multipleOf: PAGE, default: 16 * MiB },
    MAX_MEMORY_BYTES: { type: 'integer', minimum: PAGE, maximum: 4096 * MiB, multipleOf: PAGE, default: 256 * MiB },
    MAX_TABLE_ELEMENTS: { type: 'integer', minimum: 0, maximum: 10_000_000, default: 10_000 },
    DEFAULT_OUTPUT_BYTES: { type: 'integer', minimum: 1, maximum: 1024 * MiB, default: 1 * MiB },
    MAX_OUTPUT_BYTES: { type: 'integer', minimum: 1, maximum: 1024 * MiB, default: 16 * MiB },
    PLUGIN_DISK_BYTES: { type: 'integer', minimum: 0, maximum: 1024 * 1024 * MiB, default: 64 * MiB },
    PLUGIN_CONCURRENCY: { type: 'integer', minimum: 1, maximum: 100_000, default: 64 },
    BREAKER_THRESHOLD: { type: 'integer', minimum: 0, maximum: 1000, default: 3 },
    BREAKER_COOLDOWN_MS: { type: 'integer', minimum: 100, maximum: 3_600_000, default: 10_000 },
    IDLE_RELEASE_MS: { type: 'integer', minimum: 0, maximum: 86_400_000, default: 30_000 },
    MAX_PLUGINS: { type: 'integer', minimum: 1, maximum: 1_000_000, default: 1000 },
    MODULE_CACHE_BYTES: { type: 'integer', minimum: 0, maximum: 1024 * 1024 * MiB, default: 256 * MiB },
    VOLUMES: { type: 'string', default: '' },
    ALLOWED_ENV: { type: 'string', default: '' },
    AUTH_TOKEN: { type: 'string', minLength: 16 },
    EXECUTE_TOKENS: { type: 'string', default: '' },
    METRICS_TOKEN: { type: 'string', minLength: 16 },
    LOG_LEVEL: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
    REQUEST_TIMEOUT_MS: { type: 'integer', minimum: 1000, maximum: 3_600_000, default: 120_000 },
    // Default: min(30 s, REQUEST_TIMEOUT_MS), computed below; node wants it <= the request timeout.
    HEADERS_TIMEOUT_MS: { type: 'integer', minimum: 1000, maximum: 3_600_000 },
    KEEP_ALIVE_TIMEOUT_MS: { type: 'integer', minimum: 1000, maximum: 3_600_000, default: 72_000 },
    ALLOWED_HOSTS: { type: 'string', default: '' },
    HTTP_ALLOW_PRIVATE: { type: 'boolean', default: false },
    PLUGIN_LOG_LEVEL: { type: 'string', enum: ['trace', 'debug', 'info', 'warn', 'error'], default: 'info' },
    REGISTRY_URL: { type: 'string', pattern: '^postgres(ql)?://' }
  }
} as const

/** Variables whose values are never printed (REGISTRY_URL may hold a password). */
const SECRETS = new Set(['AUTH_TOKEN', 'EXECUTE_TOKENS', 'METRICS_TOKEN', 'REGISTRY_URL'])

/** The variables config reads; everything else in the environment is ignored. */
export const configVariables = Object.keys(envSchema.properties)

export class ConfigError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

const ajv = new Ajv({ coerceTypes: true, useDefaults: true, allErrors: true, strict: true })
const validateEnv = ajv.compile(envSchema)

const volumeName = /^[a-z0-9][a-z0-9._-]{0,63}$/
const envName = /^[A-Za-z_][A-Za-z0-9_]*$/
const hostPattern = /^[a-z0-9*.:[\]-]+$/

function parseVolumes (spec: string): Map<string, Volume> {
  const volumes = new Map<string, Volume>()
  for (const item of spec.split(',').map(s => s.trim()).filter(Boolean)) {
    const eq = item.indexOf('=')
    if (eq <= 0) throw new ConfigError(`VOLUMES: '${item}' is not name=/host/path[:ro]`)
    const name = item.slice(0, eq)
    let path = item.slice(eq + 1)
    let readOnly = false
    if (path.endsWith(':ro')) { readOnly = true; path = path.slice(0, -3) } else if (path.endsWith(':rw')) { path = path.slice(0, -3) }
    if (!volumeName.test(name)) throw new ConfigError(`VOLUMES: volume name '${name}' must match ${volumeName.source}`)
    if (!isAbsolute(path)) throw new ConfigError(`VOLUMES: the path of volume '${name}' must be absolute, got '${path}'`)
    if (volumes.has(name)) throw new ConfigError(`VOLUMES: volume '${name}' is declared twice`)
    volumes.set(name, Object.freeze({ name, hostPath: resolve(path), readOnly }))
  }
  return volumes
}

function list (spec: string): string[] {
  return spec.split(',').map(s => s.trim()).filter(Boolean)
}

/**
 * Reads the configuration from `env` (normally process.env) plus typed overrides, validates
 * it and returns a frozen Config. Throws ConfigError naming the offending variable.
 */
export function loadConfig (env: NodeJS.ProcessEnv = process.env, overrides: Partial<Config> = {}): Config {
  const data: Record<string, unknown> = {}
  for (const key of configVariables) {
    const value = env[key]
    if (value !== undefined && value !== '') data[key] = value
  }
  if (!validateEnv(data)) {
    const first = validateEnv.errors?.[0]
    const variable = first?.instancePath.replace(/^\//, '') ?? '?'
    // A token's value is a secret: never in a message that ends up in logs.
    const got = SECRETS.has(variable) ? `${String(env[variable]).length} characters` : JSON.stringify(env[variable])
    throw new ConfigError(`invalid configuration: ${variable} ${first?.message ?? 'is invalid'} (got ${got})`)
  }
  const v = data as Record<string, string | number | undefined>
  const num = (k: string): number => v[k] as number
  const str = (k: string): string => v[k] as string

  const executeTokens = list(str('EXECUTE_TOKENS'))
  const allowedEnv = list(str('ALLOWED_ENV'))
  for (const name of allowedEnv) {
    if (!envName.test(name)) throw new ConfigError(`ALLOWED_ENV: '${name}' is not a valid variable name`)
  }
  const allowedHosts = list(str('ALLOWED_HOSTS')).map(h => h.toLowerCase())
  for (const host of allowedHosts) {
    if (!hostPattern.test(host)) throw new ConfigError(`ALLOWED_HOSTS: '${host}' is not a host name or a pattern with *`)
  }
  const config: Config = {
    host: str('HOST'),
    port: num('PORT'),
    dataDir: resolve(str('DATA_DIR')),
    workers: (v.WORKERS as number | undefined) ?? Math.max(1, availableParallelism()),
    queueMax: num('QUEUE_MAX'),
    queueTimeoutMs: num('QUEUE_TIMEOUT_MS'),
    maxUploadBytes: num('MAX_UPLOAD_BYTES'),
    maxInputBytes: num('MAX_INPUT_BYTES'),
    defaultTimeoutMs: num('DEFAULT_TIMEOUT_MS'),
    maxTimeoutMs: num('MAX_TIMEOUT_MS'),
    defaultMemoryBytes: num('DEFAULT_MEMORY_BYTES'),
    maxMemoryBytes: num('MAX_MEMORY_BYTES'),
    maxTableElements: num('MAX_TABLE_ELEMENTS'),
    defaultOutputBytes: num('DEFAULT_OUTPUT_BYTES'),
    maxOutputBytes: num('MAX_OUTPUT_BYTES'),
    pluginDiskBytes: num('PLUGIN_DISK_BYTES'),
    pluginConcurrency: num('PLUGIN_CONCURRENCY'),
    breakerThreshold: num('BREAKER_THRESHOLD'),
    breakerCooldownMs: num('BREAKER_COOLDOWN_MS'),
    idleReleaseMs: num('IDLE_RELEASE_MS'),
    maxPlugins: num('MAX_PLUGINS'),
    moduleCacheBytes: num('MODULE_CACHE_BYTES'),
    volumes: parseVolumes(str('VOLUMES')),
    allowedEnv: new Set(allowedEnv),
    authToken: v.AUTH_TOKEN as string | undefined,
    executeTokens,
    metricsToken: v.METRICS_TOKEN as string | undefined,
    logLevel: str('LOG_LEVEL'),
    requestTimeoutMs: num('REQUEST_TIMEOUT_MS'),
    headersTimeoutMs: (v.HEADERS_TIMEOUT_MS as number | undefined) ?? Math.min(30_000, num('REQUEST_TIMEOUT_MS')),
    keepAliveTimeoutMs: num('KEEP_ALIVE_TIMEOUT_MS'),
    allowedHosts,
    httpAllowPrivate: v.HTTP_ALLOW_PRIVATE as unknown as boolean,
    pluginLogLevel: str('PLUGIN_LOG_LEVEL') as Config['pluginLogLevel'],
    registryUrl: checkRegistryUrl(v.REGISTRY_URL as string | undefined),
    ...overrides
  }
  checkConsistency(config)
  return Object.freeze(config)
}

function checkRegistryUrl (url: string | undefined): string | undefined {
  if (url === undefined) return undefined
  // WHATWG URL refuses user info without a host (`postgres://u@/db?host=/socket`), which
  // libpq and pg accept: parse such a URL with a stand-in host, then require ?host=.
  const hostless = /^postgres(ql)?:\/\/([^/@]*@)?\//.test(url)
  let parsed: URL
  try {
    parsed = new URL(hostless ? url.replace(/^(postgres(ql)?:\/\/([^/@]*@)?)\//, '$1stand-in/') : url)
  } catch {
    throw new ConfigError('invalid configuration: REGISTRY_URL is not a URL (postgres://user:password@host:port/database)')
  }
  if (hostless && !parsed.searchParams.has('host')) throw new ConfigError('invalid configuration: REGISTRY_URL names no host (nor ?host=/socket/dir)')
  return url
}

/** REGISTRY_URL without its password, for logs and messages. */
export function redactUrl (url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.toString()
  } catch {
    return 'postgres://(unparseable)'
  }
}

function checkConsistency (c: Config): void {
  const pairs: Array<[string, number, string, number]> = [
    ['DEFAULT_TIMEOUT_MS', c.defaultTimeoutMs, 'MAX_TIMEOUT_MS', c.maxTimeoutMs],
    ['DEFAULT_MEMORY_BYTES', c.defaultMemoryBytes, 'MAX_MEMORY_BYTES', c.maxMemoryBytes],
    ['DEFAULT_OUTPUT_BYTES', c.defaultOutputBytes, 'MAX_OUTPUT_BYTES', c.maxOutputBytes]
  ]
  for (const [dn, d, mn, m] of pairs) {
    if (d > m) throw new ConfigError(`invalid configuration: ${dn} (${d}) is above ${mn} (${m})`)
  }
  if (c.headersTimeoutMs > c.requestTimeoutMs) {
    throw new ConfigError(`invalid configuration: HEADERS_TIMEOUT_MS (${c.headersTimeoutMs}) is above REQUEST_TIMEOUT_MS (${c.requestTimeoutMs})`)
  }
  if (c.maxMemoryBytes % PAGE !== 0 || c.defaultMemoryBytes % PAGE !== 0) {
    throw new ConfigError('invalid configuration: memory sizes must be multiples of 65536 (one wasm page)')
  }
  if (c.executeTokens.some(t => t.length < 16)) throw new ConfigError('invalid configuration: EXECUTE_TOKENS must each be at least 16 characters')
  if (c.executeTokens.length > 0 && c.authToken === undefined) throw new ConfigError('invalid configuration: EXECUTE_TOKENS needs AUTH_TOKEN')
}
