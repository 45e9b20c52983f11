// Input and output validation against a plugin's schemas, inside the worker and inside the
// call's deadline: untrusted bytes are never parsed or validated on the main thread, and a
// validation that runs away (a quadratic `uniqueItems`, a huge input) is stopped with the call
// when its thread is terminated, like runaway guest code.
import type { ValidateFunction } from 'ajv'
import type Ajv from 'ajv'
import { jsonShape } from '../sandbox/abi-json'
import { GuestError } from '../sandbox/guest-error'
import { createSchemaAjv } from './schema-engine'
import type { SchemaRef } from './protocol'

/**
 * Deepest nesting of arrays and objects a body (or an output) may have to be validated. Checked
 * on the bytes before parsing: ajv validates recursively, so a recursive schema over a deeper
 * document could exhaust the stack.
 */
export const MAX_JSON_DEPTH = 256
/** Most values (members and elements, containers included) a validated document may hold. */
export const MAX_JSON_VALUES = 1_048_576
/**
 * Compiled schemas a worker keeps (least recently used dropped first, with its own Ajv). A
 * 64 KiB schema with 1,000 patterns holds ~3 MB compiled: at most ~50 MB per worker.
 */
export const MAX_CACHED_VALIDATORS = 16

type Side = 'input' | 'output'

interface Compiled { ajv: Ajv, validate: ValidateFunction }

const utf8 = new TextDecoder()

/** A worker's compiled validators, keyed by the schema's sha256 (the main thread computes it). */
export class SchemaValidators {
  readonly #cache = new Map<string, Compiled>()
  readonly #max: number

  constructor (max = MAX_CACHED_VALIDATORS) {
    this.#max = max
  }

  /** Throws INVALID_INPUT unless `bytes` are JSON within the caps that the schema accepts. */
  input (schema: SchemaRef, bytes: Uint8Array): void {
    this.#check(schema, bytes, 'input')
  }

  /** Throws PLUGIN_INVALID_OUTPUT unless `bytes` are JSON within the caps that the schema accepts. */
  output (schema: SchemaRef, bytes: Uint8Array): void {
    this.#check(schema, bytes, 'output')
  }

  /** Validators kept right now (for tests). */
  get size (): number {
    return this.#cache.size
  }

  #check (schema: SchemaRef, bytes: Uint8Array, side: Side): void {
    const code = side === 'input' ? 'INVALID_INPUT' : 'PLUGIN_INVALID_OUTPUT'
    const what = side === 'input' ? 'body' : 'output'
    const shape = jsonShape(bytes, MAX_JSON_DEPTH, MAX_JSON_VALUES)
    if (shape === 'invalid') throw new GuestError(code, `${what} is not valid JSON`)
    if (shape === 'deep') {
      throw new GuestError(code, `${what} is nested deeper than ${MAX_JSON_DEPTH} levels, the limit for validation against the ${side}Schema`, { maxDepth: MAX_JSON_DEPTH })
    }
    if (shape === 'many') {
      throw new GuestError(code, `${what} holds more than ${MAX_JSON_VALUES} values, the limit for validation against the ${side}Schema`, { maxValues: MAX_JSON_VALUES })
    }
    const { ajv, validate } = this.#compiled(schema)
    let valid: unknown
    try {
      valid = validate(JSON.parse(utf8.decode(bytes)))
    } catch (err) {
      // Not expected within the caps above; a client's or a plugin's fault if it ever happens.
      if (err instanceof RangeError) throw new GuestError(code, `${what} is too deep to validate against the ${side}Schema`)
      throw err
    }
    if (typeof valid !== 'boolean') {
      // An asynchronous validator (refused at upload): never let its promise go unhandled.
      if (valid instanceof Promise) valid.catch(() => {})
      throw new GuestError('INTERNAL', `the ${side}Schema validated asynchronously`)
    }
    if (!valid) {
      const problem = ajv.errorsText(validate.errors, { dataVar: side })
      throw new GuestError(code, side === 'input' ? problem : `output fails the outputSchema: ${problem}`)
    }
  }

  #compiled (schema: SchemaRef): Compiled {
    let compiled = this.#cache.get(schema.key)
    if (compiled !== undefined) {
      this.#cache.delete(schema.key) // re-inserted: most recently used last
    } else {
      const ajv = createSchemaAjv()
      // Compiles: the upload check compiled this very text with the same options.
      compiled = { ajv, validate: ajv.compile(JSON.parse(schema.text) as Record<string, unknown> | boolean) }
      if (this.#cache.size >= this.#max) {
        const oldest = this.#cache.keys().next().value
        if (oldest !== undefined) this.#cache.delete(oldest)
      }
    }
    this.#cache.set(schema.key, compiled)
    return compiled
  }
}
