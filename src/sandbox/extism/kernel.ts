// The Extism kernel (`extism:host/env`) for one call, on the host: memory blocks, input,
// output, error, config, vars, logs and HTTP, with the semantics of the reference kernel
// (extism/extism kernel/src/lib.rs and runtime/src/pdk.rs): 0 is "no offset", `length` of an
// unknown offset is 0, `config_get`/`var_get` of an absent key is 0, `var_set(k, 0)` removes.
// Where the reference kernel would read or write past a block (or return garbage), this one
// traps the call: an offset never reaches anything but the call's own blocks.
import { GuestError } from '../guest-error'
import { KernelMemory, KernelFault } from './memory'
import {
  ERROR_MESSAGE_BYTES, LOG_BYTES_PER_CALL, LOG_LEVELS
} from './types'
import type { ExtismEffects, ExtismSpec, HttpFunction, HttpRequestSpec, LogLevel } from './types'

const utf8 = new TextDecoder()
const encoder = new TextEncoder()

/** An i64 argument as a JS number; offsets past 2^53 become -1, which no block holds. */
function num (value: bigint): number {
  const v = BigInt.asUintN(64, value)
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : -1
}

export interface KernelOptions {
  spec: ExtismSpec
  input: Uint8Array
  outputBytes: number
  /** Bytes the guest's own wasm memory holds now (counted against spec.memoryBytes). */
  guestMemoryBytes: () => number
  effects: ExtismEffects
  http: HttpFunction | undefined
}

export class ExtismKernel {
  readonly memory: KernelMemory
  readonly #spec: ExtismSpec
  readonly #effects: ExtismEffects
  readonly #http: HttpFunction | undefined
  readonly #outputBytes: number
  readonly #inputOffset: number
  readonly #inputLength: number
  readonly #vars: Map<string, Uint8Array>
  #varBytes = 0
  #output: Uint8Array = new Uint8Array(0)
  #error = 0
  #logBytes = 0
  #httpStatus = 0
  #httpHeaders: Record<string, string> | undefined

  constructor (options: KernelOptions) {
    const { spec } = options
    this.#spec = spec
    this.#effects = options.effects
    this.#http = options.http
    this.#outputBytes = options.outputBytes
    this.memory = new KernelMemory(() => spec.memoryBytes - options.guestMemoryBytes())
    this.#vars = new Map(spec.vars)
    for (const [k, v] of this.#vars) this.#varBytes += encoder.encode(k).length + v.length
    this.#inputLength = options.input.length
    this.#inputOffset = this.memory.store(options.input)
    if (this.#inputOffset === 0 && options.input.length > 0) {
      throw new GuestError('PAYLOAD_TOO_LARGE', `input of ${options.input.length} bytes does not fit in the plugin's memory limit`)
    }
  }

  /** The output set by output_set (a copy), empty when none was set. */
  get output (): Uint8Array {
    return this.#output
  }

  /** The error_set message (bounded), or undefined when none is set. */
  errorMessage (): string | undefined {
    if (this.#error === 0) return undefined
    const bytes = this.memory.block(this.#error)
    if (bytes === undefined) return undefined
    return utf8.decode(bytes.subarray(0, ERROR_MESSAGE_BYTES))
  }

  /** The text of the live block at `offset`; a trap for any other offset. */
  #text (offset: number, what: string): string {
    const bytes = this.memory.block(offset)
    if (bytes === undefined) throw new KernelFault(`${what}(${offset}): not the offset of an allocated block`)
    return utf8.decode(bytes)
  }

  #bytes (offset: number, what: string): Uint8Array {
    const bytes = this.memory.block(offset)
    if (bytes === undefined) throw new KernelFault(`${what}(${offset}): not the offset of an allocated block`)
    return bytes
  }

  #log (level: LogLevel, offset: bigint): void {
    const text = this.#text(num(offset), `log_${level}`)
    if (LOG_LEVELS.indexOf(level) < this.#spec.logLevel) return
    const size = Buffer.byteLength(text)
    if (this.#logBytes + size > LOG_BYTES_PER_CALL) {
      this.#effects.logsDropped++
      return
    }
    this.#logBytes += size
    this.#effects.logs.push({ level, msg: text })
  }

  #varSet (keyOffset: bigint, valueOffset: bigint): void {
    const key = this.#text(num(keyOffset), 'var_set')
    const old = this.#vars.get(key)
    const keySize = Buffer.byteLength(key)
    const oldSize = old === undefined ? 0 : keySize + old.length
    if (valueOffset === 0n) {
      if (this.#vars.delete(key)) this.#varBytes -= oldSize
      this.#effects.varWrites.push([key, null])
      return
    }
    const value = this.#bytes(num(valueOffset), 'var_set').slice()
    const total = this.#varBytes - oldSize + keySize + value.length
    if (total > this.#spec.varBytes) {
      throw pluginError(`var_set: the plugin's vars would hold ${total} bytes, over limits.varBytes (${this.#spec.varBytes})`)
    }
    this.#vars.set(key, value)
    this.#varBytes = total
    this.#effects.varWrites.push([key, value])
  }

  #httpRequest (requestOffset: bigint, bodyOffset: bigint): bigint {
    const text = this.#text(num(requestOffset), 'http_request')
    const body = bodyOffset === 0n ? undefined : this.#bytes(num(bodyOffset), 'http_request')
    const request = parseRequest(text)
    const grant = this.#spec.http
    if (grant === undefined || this.#http === undefined) {
      this.#effects.http.push('capability_denied')
      const host = hostOf(request.url)
      throw new GuestError('CAPABILITY_DENIED', `http_request to '${host}': HTTP is not granted (capabilities.http)`, { host })
    }
    if (this.#effects.http.length >= grant.requests) {
      this.#effects.http.push('plugin_error')
      throw pluginError(`http_request: more than limits.httpRequests (${grant.requests}) requests in one call`)
    }
    const reply = this.#http({ ...request, body }, grant.responseBytes)
    if (!reply.ok) {
      this.#effects.http.push(reply.code.toLowerCase())
      throw reply.code === 'CAPABILITY_DENIED' ? new GuestError(reply.code, reply.message, { host: reply.host }) : pluginError(reply.message)
    }
    this.#effects.http.push('ok')
    this.#httpStatus = reply.status
    this.#httpHeaders = reply.headers
    if (reply.body.length === 0) return 0n
    const offset = this.memory.store(reply.body)
    if (offset === 0) {
      throw pluginError(`http_request: a response of ${reply.body.length} bytes does not fit in the plugin's memory limit`)
    }
    return BigInt(offset)
  }

  /** The import object of `extism:host/env`. */
  imports (): WebAssembly.ModuleImports {
    const m = this.memory
    return {
      alloc: (n: bigint): bigint => BigInt(m.alloc(num(n))),
      free: (p: bigint): void => { m.free(num(p)) },
      length: (p: bigint): bigint => BigInt(m.length(num(p))),
      length_unsafe: (p: bigint): bigint => BigInt(m.length(num(p))),
      load_u8: (p: bigint): number => m.loadU8(num(p)),
      load_u64: (p: bigint): bigint => m.loadU64(num(p)),
      store_u8: (p: bigint, v: number): void => { m.storeU8(num(p), v & 0xff) },
      store_u64: (p: bigint, v: bigint): void => { m.storeU64(num(p), BigInt.asUintN(64, v)) },
      input_offset: (): bigint => BigInt(this.#inputOffset),
      input_length: (): bigint => BigInt(this.#inputLength),
      input_load_u8: (i: bigint): number => {
        const at = num(i)
        if (at < 0 || at >= this.#inputLength) throw new KernelFault(`input_load_u8(${at}): past the ${this.#inputLength}-byte input`)
        return m.loadU8(this.#inputOffset + at)
      },
      input_load_u64: (i: bigint): bigint => {
        const at = num(i)
        if (at < 0 || at + 8 > this.#inputLength) throw new KernelFault(`input_load_u64(${at}): past the ${this.#inputLength}-byte input`)
        return m.loadU64(this.#inputOffset + at)
      },
      output_set: (p: bigint, n: bigint): void => {
        const length = num(n)
        if (length > this.#outputBytes || length < 0) {
          throw new GuestError('PLUGIN_INVALID_OUTPUT', `output of ${n} bytes is over the ${this.#outputBytes}-byte limit`, { outputBytes: Number(n), limit: this.#outputBytes })
        }
        this.#output = m.read(num(p), length, 'output_set')
      },
      error_set: (p: bigint): void => {
        const at = num(p)
        if (at !== 0 && m.length(at) === 0) throw new KernelFault(`error_set(${at}): not the offset of an allocated block`)
        this.#error = at
      },
      error_get: (): bigint => BigInt(this.#error),
      config_get: (p: bigint): bigint => {
        const key = this.#text(num(p), 'config_get')
        const value = Object.hasOwn(this.#spec.config, key) ? this.#spec.config[key] : undefined
        if (value === undefined) return 0n
        return BigInt(m.store(encoder.encode(value)))
      },
      var_get: (p: bigint): bigint => {
        const value = this.#vars.get(this.#text(num(p), 'var_get'))
        return value === undefined ? 0n : BigInt(m.store(value))
      },
      var_set: (k: bigint, v: bigint): void => { this.#varSet(k, v) },
      http_request: (r: bigint, b: bigint): bigint => this.#httpRequest(r, b),
      http_status_code: (): number => this.#httpStatus,
      http_headers: (): bigint => {
        if (this.#httpHeaders === undefined || this.#spec.http?.responseHeaders !== true) return 0n
        return BigInt(m.store(encoder.encode(JSON.stringify(this.#httpHeaders))))
      },
      log_trace: (p: bigint): void => { this.#log('trace', p) },
      log_debug: (p: bigint): void => { this.#log('debug', p) },
      log_info: (p: bigint): void => { this.#log('info', p) },
      log_warn: (p: bigint): void => { this.#log('warn', p) },
      log_error: (p: bigint): void => { this.#log('error', p) },
      get_log_level: (): number => this.#spec.logLevel
    }
  }
}

/** A failed host call: PLUGIN_ERROR, with no return code (the guest never returned). */
export function pluginError (message: string): GuestError {
  return new GuestError('PLUGIN_ERROR', message, { message, returnCode: null })
}

function hostOf (url: string): string {
  try {
    return new URL(url).hostname
  } catch {
    return ''
  }
}

/** The JSON request of http_request: `{url, method?, headers?}`; anything else fails the call. */
function parseRequest (text: string): Omit<HttpRequestSpec, 'body'> {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw pluginError('http_request: the request is not JSON')
  }
  const v = value as { url?: unknown, method?: unknown, headers?: unknown }
  if (typeof value !== 'object' || value === null || typeof v.url !== 'string') {
    throw pluginError('http_request: the request has no "url"')
  }
  const headers: Record<string, string> = {}
  if (typeof v.headers === 'object' && v.headers !== null) {
    for (const [k, h] of Object.entries(v.headers)) if (typeof h === 'string') headers[k] = h
  }
  return { url: v.url, method: typeof v.method === 'string' ? v.method.toUpperCase() : 'GET', headers }
}
