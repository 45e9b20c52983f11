// The manifest a client may send with an upload: its JSON schema (validated once with ajv),
// and the step that turns it into resolved limits and grants against the operator's config.
import Ajv from 'ajv'
import type { Config } from '../config'
import { serviceError } from '../errors'
import { schemaChecker } from '../workers/schema-check'
import { schemaShapeProblem } from './schema'
import { patternCovers } from './host-patterns'

export const NAME_PATTERN = '^[a-z0-9][a-z0-9._-]{0,63}$'
export const nameRegExp = new RegExp(NAME_PATTERN)

export type Abi = 'json' | 'wasi' | 'extism'
/** "fresh": a new instance per call (the default); "reuse": one kept instance serves many calls. */
export type InstancePolicy = 'fresh' | 'reuse'
export type PreopenMode = 'ro' | 'rw'

export interface ManifestPreopen { guest: string, volume: string, mode?: PreopenMode }
export interface WasiGrant {
  args?: string[]
  env?: Record<string, string>
  preopens?: ManifestPreopen[]
}
/** extism ABI: outbound HTTP (http_request), within the operator's ALLOWED_HOSTS. */
export interface HttpGrant {
  allowedHosts: string[]
  /** Whether http_headers answers the response headers (Extism's allow_http_response_headers). */
  responseHeaders?: boolean
}
export interface Manifest {
  name?: string
  version?: string
  abi?: Abi
  instance?: InstancePolicy
  /** extism ABI: the export a call runs when `?function=` is absent. */
  entry?: string
  /** extism ABI: what config_get answers. */
  config?: Record<string, string>
  limits?: Partial<PluginLimits>
  capabilities?: { wasi?: WasiGrant, http?: HttpGrant }
  inputSchema?: Record<string, unknown> | boolean
  outputSchema?: Record<string, unknown> | boolean
}

/** The limits a plugin runs under, resolved from its manifest and the operator's defaults. */
export interface PluginLimits {
  memoryBytes: number
  timeoutMs: number
  tableElements: number
  outputBytes: number
  /** extism ABI only: vars kept for the plugin, keys and values, in bytes. */
  varBytes?: number
  /** extism ABI only: http_request calls per call. */
  httpRequests?: number
  /** extism ABI only: largest HTTP response body. */
  httpResponseBytes?: number
}

/** What a plugin was granted, resolved: only these reach the sandbox. */
export interface Capabilities {
  wasi?: { args: string[], env: Record<string, string>, preopens: Array<Required<ManifestPreopen>> }
  http?: Required<HttpGrant>
}

/** Defaults and maxima of the extism-only limits (DESIGN.md, Host functions). */
export const EXTISM_LIMITS = {
  varBytes: { default: 1024 * 1024, maximum: 64 * 1024 * 1024 },
  httpRequests: { default: 16, maximum: 1024 },
  httpResponseBytes: { default: 10 * 1024 * 1024, maximum: 256 * 1024 * 1024 }
} as const
/** Bytes of config (keys and values) a manifest may carry. */
export const CONFIG_BYTES = 64 * 1024

const limitsSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    memoryBytes: { type: 'integer', minimum: 65536, multipleOf: 65536 },
    timeoutMs: { type: 'integer', minimum: 1 },
    tableElements: { type: 'integer', minimum: 0 },
    outputBytes: { type: 'integer', minimum: 1 },
    varBytes: { type: 'integer', minimum: 0 },
    httpRequests: { type: 'integer', minimum: 0 },
    httpResponseBytes: { type: 'integer', minimum: 0 }
  }
} as const

export const manifestSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    name: { type: 'string', pattern: NAME_PATTERN },
    version: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9.+_-]*$' },
    abi: { enum: ['json', 'wasi', 'extism'] },
    instance: { enum: ['fresh', 'reuse'] },
    entry: { type: 'string', minLength: 1, maxLength: 256 },
    config: { type: 'object', maxProperties: 1024, additionalProperties: { type: 'string' } },
    limits: limitsSchema,
    capabilities: {
      type: 'object',
      additionalProperties: false,
      properties: {
        http: {
          type: 'object',
          additionalProperties: false,
          required: ['allowedHosts'],
          properties: {
            allowedHosts: { type: 'array', maxItems: 256, items: { type: 'string', minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9*.:\\[\\]-]+$' } },
            responseHeaders: { type: 'boolean' }
          }
        },
        wasi: {
          type: 'object',
          additionalProperties: false,
          properties: {
            args: { type: 'array', maxItems: 256, items: { type: 'string', maxLength: 4096 } },
            env: {
              type: 'object',
              maxProperties: 256,
              propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]*$', maxLength: 256 },
              additionalProperties: { type: 'string', maxLength: 4096 }
            },
            preopens: {
              type: 'array',
              maxItems: 16,
              items: {
                type: 'object',
                additionalProperties: false,
                required: ['guest', 'volume'],
                properties: {
                  guest: { type: 'string', minLength: 1, maxLength: 256, pattern: '^/' },
                  volume: { type: 'string', minLength: 1, maxLength: 64 },
                  mode: { enum: ['ro', 'rw'] }
                }
              }
            }
          }
        }
      }
    },
    inputSchema: { type: ['object', 'boolean'] },
    outputSchema: { type: ['object', 'boolean'] }
  }
} as const

const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true })
const validateManifest = ajv.compile<Manifest>(manifestSchema)

/** Parses and validates manifest JSON text; throws INVALID_MANIFEST naming the problem. */
export function parseManifest (text: string | undefined): Manifest {
  if (text === undefined || text.trim() === '') return {}
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw serviceError('INVALID_MANIFEST', [`not valid JSON (${(err as Error).message})`])
  }
  if (!validateManifest(value)) {
    const e = validateManifest.errors?.[0]
    const where = e?.instancePath === '' ? 'manifest' : `manifest${e?.instancePath ?? ''}`
    const extra = e?.params !== undefined && 'additionalProperty' in e.params
      ? ` '${String(e.params.additionalProperty)}'`
      : e?.params !== undefined && 'allowedValues' in e.params && Array.isArray(e.params.allowedValues) ? `: ${e.params.allowedValues.join(', ')}` : ''
    throw serviceError('INVALID_MANIFEST', [`${where} ${e?.message ?? 'is invalid'}${extra}`])
  }
  if (value.config !== undefined) {
    let size = 0
    for (const [k, v] of Object.entries(value.config)) size += Buffer.byteLength(k) + Buffer.byteLength(v)
    if (size > CONFIG_BYTES) throw serviceError('INVALID_MANIFEST', [`config holds ${size} bytes, over ${CONFIG_BYTES}`])
  }
  // Only the nesting here (bounded, iterative); the rest of the schema check runs off the main
  // thread (checkSchemas below, registry/schema.ts).
  for (const key of ['inputSchema', 'outputSchema'] as const) {
    const problem = schemaShapeProblem(key, value[key])
    if (problem !== undefined) throw serviceError('INVALID_MANIFEST', [problem])
  }
  return value
}

/**
 * Checks the manifest's inputSchema and outputSchema in the schema-check thread; throws
 * INVALID_MANIFEST naming the first problem (registry/schema.ts says what is refused).
 */
export async function checkSchemas (manifest: Manifest): Promise<void> {
  const schemas: Array<{ field: string, text: string }> = []
  for (const field of ['inputSchema', 'outputSchema'] as const) {
    const schema = manifest[field]
    if (schema === undefined) continue
    const problem = schemaShapeProblem(field, schema)
    if (problem !== undefined) throw serviceError('INVALID_MANIFEST', [problem])
    schemas.push({ field, text: JSON.stringify(schema) })
  }
  await schemaChecker.check(schemas)
}

/** Resolves limits against operator defaults and maxima: above a maximum is refused, never clamped. */
export function resolveLimits (requested: Partial<PluginLimits> | undefined, config: Config): PluginLimits {
  const limits: PluginLimits = {
    memoryBytes: requested?.memoryBytes ?? config.defaultMemoryBytes,
    timeoutMs: requested?.timeoutMs ?? config.defaultTimeoutMs,
    tableElements: requested?.tableElements ?? config.maxTableElements,
    outputBytes: requested?.outputBytes ?? config.defaultOutputBytes
  }
  const maxima: Array<['memoryBytes' | 'timeoutMs' | 'tableElements' | 'outputBytes', number, string]> = [
    ['memoryBytes', config.maxMemoryBytes, 'MAX_MEMORY_BYTES'],
    ['timeoutMs', config.maxTimeoutMs, 'MAX_TIMEOUT_MS'],
    ['tableElements', config.maxTableElements, 'MAX_TABLE_ELEMENTS'],
    ['outputBytes', config.maxOutputBytes, 'MAX_OUTPUT_BYTES']
  ]
  for (const [key, max, variable] of maxima) {
    if (limits[key] > max) {
      throw serviceError('CAPABILITY_DENIED', [`limits.${key} ${limits[key]} is above the operator's maximum ${max} (${variable})`],
        { details: { limit: key, requested: limits[key], maximum: max } })
    }
  }
  return limits
}

/** Checks the requested grants against what the operator allows (volumes, env names). */
export function resolveCapabilities (manifest: Manifest, config: Config): Capabilities {
  const http = resolveHttp(manifest.capabilities?.http, config)
  const resolved = resolveWasi(manifest, config)
  return { ...(resolved !== undefined ? { wasi: resolved } : {}), ...(http !== undefined ? { http } : {}) }
}

/** Every host pattern the plugin asks for must be covered by one of ALLOWED_HOSTS. */
function resolveHttp (http: HttpGrant | undefined, config: Config): Required<HttpGrant> | undefined {
  if (http === undefined) return undefined
  const denied = http.allowedHosts.filter(p => !config.allowedHosts.some(op => patternCovers(op, p)))
  if (denied.length > 0) {
    throw serviceError('CAPABILITY_DENIED', [`hosts ${denied.join(', ')} not in ALLOWED_HOSTS`], { details: { hosts: denied } })
  }
  return { allowedHosts: http.allowedHosts.map(h => h.toLowerCase()), responseHeaders: http.responseHeaders ?? false }
}

/** Resolves the extism-only limits (defaults, fixed maxima): only for extism plugins. */
export function resolveExtismLimits (limits: PluginLimits, requested: Partial<PluginLimits> | undefined): PluginLimits {
  const out = { ...limits }
  for (const key of ['varBytes', 'httpRequests', 'httpResponseBytes'] as const) {
    const value = requested?.[key] ?? EXTISM_LIMITS[key].default
    if (value > EXTISM_LIMITS[key].maximum) {
      throw serviceError('CAPABILITY_DENIED', [`limits.${key} ${value} is above the maximum ${EXTISM_LIMITS[key].maximum}`],
        { details: { limit: key, requested: value, maximum: EXTISM_LIMITS[key].maximum } })
    }
    out[key] = value
  }
  return out
}

function resolveWasi (manifest: Manifest, config: Config): Capabilities['wasi'] {
  const wasi = manifest.capabilities?.wasi
  if (wasi === undefined) return undefined
  const env = wasi.env ?? {}
  const deniedEnv = Object.keys(env).filter(name => !config.allowedEnv.has(name))
  if (deniedEnv.length > 0) {
    throw serviceError('CAPABILITY_DENIED', [`env ${deniedEnv.join(', ')} not in ALLOWED_ENV`], { details: { env: deniedEnv } })
  }
  const preopens: Array<Required<ManifestPreopen>> = []
  const guests = new Set<string>()
  for (const p of wasi.preopens ?? []) {
    const mode: PreopenMode = p.mode ?? 'ro'
    if (p.volume !== '@plugin') {
      const volume = config.volumes.get(p.volume)
      if (volume === undefined) {
        throw serviceError('CAPABILITY_DENIED', [`volume '${p.volume}' is not declared by the operator (VOLUMES)`], { details: { volume: p.volume } })
      }
      if (volume.readOnly && mode === 'rw') {
        throw serviceError('CAPABILITY_DENIED', [`volume '${p.volume}' is read-only; mode 'rw' is not allowed`], { details: { volume: p.volume } })
      }
    }
    if (p.guest.split('/').includes('..')) throw serviceError('INVALID_MANIFEST', [`preopen guest path '${p.guest}' may not contain '..'`])
    if (guests.has(p.guest)) throw serviceError('INVALID_MANIFEST', [`preopen guest path '${p.guest}' is used twice`])
    guests.add(p.guest)
    preopens.push({ guest: p.guest, volume: p.volume, mode })
  }
  return { args: wasi.args ?? [], env, preopens }
}
