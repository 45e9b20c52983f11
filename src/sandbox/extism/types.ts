// Plain data of the extism ABI that crosses the thread boundary (see workers/protocol.ts),
// and the kernel's function signatures, checked at upload (JS host functions accept any type).
import type { WasmType } from '../wasi'

export const EXTISM_MODULE = 'extism:host/env'

/** Log levels as the reference runtime numbers them (get_log_level answers one). */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error'] as const
export type LogLevel = typeof LOG_LEVELS[number]

/** Log text one call may write; past it lines are dropped and counted. */
export const LOG_BYTES_PER_CALL = 64 * 1024
/** Bytes of the error_set message kept for PLUGIN_ERROR details. */
export const ERROR_MESSAGE_BYTES = 4096

/** What a call of an extism plugin may use, resolved by the main thread. */
export interface ExtismSpec {
  /** The manifest's config. */
  config: Record<string, string>
  /** The plugin's vars as they were when the call started. */
  vars: Array<[string, Uint8Array]>
  varBytes: number
  /** limits.memoryBytes: guest memory and kernel blocks together stay under it. */
  memoryBytes: number
  /** Index in LOG_LEVELS of PLUGIN_LOG_LEVEL. */
  logLevel: number
  /** undefined: http_request is not granted (any request is CAPABILITY_DENIED). */
  http: { allowedHosts: string[], requests: number, responseBytes: number, responseHeaders: boolean } | undefined
}

/** What a call did besides its output; reported whether it succeeded or failed. */
export interface ExtismEffects {
  /** var_set calls in order: a value, or null for a removal. */
  varWrites: Array<[string, Uint8Array | null]>
  logs: Array<{ level: LogLevel, msg: string }>
  logsDropped: number
  /** One outcome per http_request: 'ok' or a lower-cased error code. */
  http: string[]
}

export function emptyEffects (): ExtismEffects {
  return { varWrites: [], logs: [], logsDropped: 0, http: [] }
}

/** An outbound request as the plugin asked for it. */
export interface HttpRequestSpec {
  url: string
  method: string
  headers: Record<string, string>
  body: Uint8Array | undefined
}

export type HttpReply =
  | { ok: true, status: number, headers: Record<string, string>, body: Uint8Array }
  | { ok: false, code: 'CAPABILITY_DENIED' | 'PLUGIN_ERROR', message: string, host?: string, deadline?: boolean }

/** Makes a request for the guest and waits for its answer (the worker blocks meanwhile). */
export type HttpFunction = (request: HttpRequestSpec, responseBytes: number) => HttpReply

const I = 'i32'
const L = 'i64'
/** The kernel functions a plugin may import from extism:host/env, with their types. */
export const EXTISM_SIGNATURES: Readonly<Record<string, { params: WasmType[], results: WasmType[] }>> = {
  alloc: { params: [L], results: [L] },
  free: { params: [L], results: [] },
  length: { params: [L], results: [L] },
  length_unsafe: { params: [L], results: [L] },
  load_u8: { params: [L], results: [I] },
  load_u64: { params: [L], results: [L] },
  store_u8: { params: [L, I], results: [] },
  store_u64: { params: [L, L], results: [] },
  input_offset: { params: [], results: [L] },
  input_length: { params: [], results: [L] },
  input_load_u8: { params: [L], results: [I] },
  input_load_u64: { params: [L], results: [L] },
  output_set: { params: [L, L], results: [] },
  error_set: { params: [L], results: [] },
  error_get: { params: [], results: [L] },
  config_get: { params: [L], results: [L] },
  var_get: { params: [L], results: [L] },
  var_set: { params: [L, L], results: [] },
  http_request: { params: [L, L], results: [L] },
  http_status_code: { params: [], results: [I] },
  http_headers: { params: [], results: [L] },
  log_trace: { params: [L], results: [] },
  log_debug: { params: [L], results: [] },
  log_info: { params: [L], results: [] },
  log_warn: { params: [L], results: [] },
  log_error: { params: [L], results: [] },
  get_log_level: { params: [], results: [I] }
}

export function matchesExtismSignature (name: string, params: readonly string[], results: readonly string[]): boolean {
  const sig = EXTISM_SIGNATURES[name]
  if (sig === undefined) return false
  return sig.params.length === params.length && sig.params.every((p, i) => p === params[i]) &&
    sig.results.length === results.length && sig.results.every((r, i) => r === results[i])
}
