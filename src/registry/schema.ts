// What a plugin's inputSchema/outputSchema may be, checked at upload and again at load. Two
// parts: `schemaShapeProblem` runs on the main thread and is bounded by the manifest's size
// (an iterative walk, nothing recursive touches a schema before it); `schemaProblem` runs in the
// schema-check thread (workers/schema-check.ts) because RE2 and ajv compilation cost up to
// seconds for a 64 KiB schema. Refused (INVALID_MANIFEST, naming where):
//   - nesting over MAX_SCHEMA_DEPTH;
//   - `$schema` other than draft-07; `$id` or `$schema` below the root;
//   - `$async` (ajv then validates asynchronously: a promise, taken as valid, whose rejection
//     would go unhandled); `$dynamicRef`/`$recursiveRef` (not draft-07);
//   - a `$ref` that is not `#` or `#/json/pointer` to a subschema of the same schema (no other
//     document, no other plugin's `$id`, no meta-schema), or a chain of `$ref`/`allOf`/... that
//     comes back to itself without descending into the data (it would never end);
//   - a pattern RE2 cannot compile (backreferences, lookaround);
//   - anything the draft-07 meta-schema refuses, or ajv cannot compile.
import { createHash } from 'node:crypto'
import Ajv from 'ajv'
import { compilePattern, createSchemaAjv } from '../workers/schema-engine'
import type { SchemaRef } from '../workers/protocol'

/** Deepest nesting of arrays and objects in a schema (its data, `const` and `enum`, included). */
export const MAX_SCHEMA_DEPTH = 64

const DRAFT_07 = new Set(['http://json-schema.org/draft-07/schema#', 'http://json-schema.org/draft-07/schema'])

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type SchemaObject = Record<string, Json>

/** Keywords whose value is one subschema that applies to the same instance, or to a part of it. */
const SAME_INSTANCE_ONE = ['not', 'if', 'then', 'else']
const SAME_INSTANCE_MANY = ['allOf', 'anyOf', 'oneOf']
const CHILD_ONE = ['additionalItems', 'additionalProperties', 'contains', 'propertyNames', 'items']
const CHILD_MAP = ['properties', 'patternProperties', 'definitions', '$defs']

/** Main thread: a problem with the schema's nesting, found without recursion, or undefined. */
export function schemaShapeProblem (field: string, schema: unknown): string | undefined {
  const stack: Array<[unknown, number]> = [[schema, 1]]
  while (stack.length > 0) {
    const [value, depth] = stack.pop() as [unknown, number]
    if (typeof value !== 'object' || value === null) continue
    if (depth > MAX_SCHEMA_DEPTH) return `${field} is nested deeper than ${MAX_SCHEMA_DEPTH} levels`
    for (const child of Object.values(value)) stack.push([child, depth + 1])
  }
  return undefined
}

/** Main thread: the schema as the workers get it (text and its sha256), computed once per plugin. */
export function schemaRef (schema: unknown): SchemaRef {
  const text = JSON.stringify(schema)
  return { key: createHash('sha256').update(text).digest('hex'), text }
}

// Draft-07 meta-schema validation only: this instance never compiles a plugin's schema.
const metaAjv = new Ajv({ strict: false, logger: false })

/**
 * Schema-check thread: why `schema` cannot be a plugin's schema, or undefined. Expects
 * schemaShapeProblem to have passed (its recursion is bounded by MAX_SCHEMA_DEPTH).
 */
export function schemaProblem (field: string, schema: unknown): string | undefined {
  if (typeof schema === 'boolean') return undefined
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) return `${field} must be an object or a boolean`
  const root = schema as SchemaObject
  const $schema = root.$schema
  if ($schema !== undefined && (typeof $schema !== 'string' || !DRAFT_07.has($schema))) {
    return `${field}.$schema ${JSON.stringify($schema)} is not supported: only draft-07 (http://json-schema.org/draft-07/schema#)`
  }
  if (!metaAjv.validateSchema(root)) return `${field} is not a valid JSON schema: ${metaAjv.errorsText(metaAjv.errors)}`
  const walk = new SchemaWalk(field, root)
  const problem = walk.run()
  if (problem !== undefined) return problem
  try {
    createSchemaAjv().compile(root)
  } catch (err) {
    return `${field} does not compile: ${(err as Error).message}`
  }
  return undefined
}

/** One pass over the subschemas: keyword checks, then `$ref` targets and cycles. */
class SchemaWalk {
  readonly #field: string
  readonly #root: SchemaObject
  /** Every subschema object met, with its JSON pointer. */
  readonly #pointers = new Map<object, string>()
  /** Subschemas that apply to the same instance as a given one ($ref targets, allOf, not, ...). */
  readonly #same = new Map<object, object[]>()
  readonly #refs: Array<{ from: SchemaObject, ref: string, at: string }> = []

  constructor (field: string, root: SchemaObject) {
    this.#field = field
    this.#root = root
  }

  run (): string | undefined {
    const problem = this.#visit(this.#root, '', true)
    if (problem !== undefined) return problem
    for (const { from, ref, at } of this.#refs) {
      const target = this.#resolve(ref)
      if (target === undefined) return `${this.#field}${at}/$ref '${ref}' does not point at a subschema of this schema`
      if (typeof target === 'object') this.#sameOf(from).push(target)
    }
    return this.#cycle()
  }

  #sameOf (node: object): object[] {
    let list = this.#same.get(node)
    if (list === undefined) { list = []; this.#same.set(node, list) }
    return list
  }

  #visit (node: Json, at: string, isRoot: boolean): string | undefined {
    if (typeof node === 'boolean') return undefined
    if (typeof node !== 'object' || node === null || Array.isArray(node)) return undefined // the meta-schema refused these
    if (this.#pointers.has(node)) return undefined
    this.#pointers.set(node, at)
    const where = `${this.#field}${at}`
    if ('$async' in node) return `${where}: "$async" is not supported (validation must be synchronous)`
    for (const keyword of ['$dynamicRef', '$recursiveRef']) {
      if (keyword in node) return `${where}: "${keyword}" is not supported (draft-07 only)`
    }
    if (!isRoot && '$id' in node) return `${where}: "$id" is allowed only at the root of the schema`
    if (!isRoot && '$schema' in node) return `${where}: "$schema" is allowed only at the root of the schema`
    const ref = node.$ref
    if (ref !== undefined) {
      if (typeof ref !== 'string' || !(ref === '#' || ref.startsWith('#/'))) {
        return `${where}/$ref ${JSON.stringify(ref)} leaves the schema: only '#' and '#/json/pointer' references are allowed`
      }
      this.#refs.push({ from: node, ref, at })
    }
    const pattern = node.pattern
    if (typeof pattern === 'string') {
      const problem = patternProblem(pattern)
      if (problem !== undefined) return `${where}/pattern ${JSON.stringify(pattern)} is not supported: ${problem}`
    }
    const patterns = node.patternProperties
    if (isObject(patterns)) {
      for (const key of Object.keys(patterns)) {
        const problem = patternProblem(key)
        if (problem !== undefined) return `${where}/patternProperties ${JSON.stringify(key)} is not supported: ${problem}`
      }
    }
    const children: Array<[Json, string, boolean]> = [] // subschema, pointer, applies to the same instance
    for (const k of SAME_INSTANCE_ONE) if (k in node) children.push([node[k] as Json, `${at}/${k}`, true])
    for (const k of SAME_INSTANCE_MANY) {
      const list = node[k]
      if (Array.isArray(list)) list.forEach((s, i) => children.push([s, `${at}/${k}/${i}`, true]))
    }
    for (const k of CHILD_ONE) {
      const value = node[k]
      if (Array.isArray(value)) value.forEach((s, i) => children.push([s, `${at}/${k}/${i}`, false]))
      else if (value !== undefined) children.push([value, `${at}/${k}`, false])
    }
    for (const k of CHILD_MAP) {
      const map = node[k]
      if (isObject(map)) for (const [name, s] of Object.entries(map)) children.push([s, `${at}/${k}/${escapePointer(name)}`, false])
    }
    const dependencies = node.dependencies
    if (isObject(dependencies)) {
      for (const [name, s] of Object.entries(dependencies)) {
        if (!Array.isArray(s)) children.push([s, `${at}/dependencies/${escapePointer(name)}`, true])
      }
    }
    for (const [child, pointer, same] of children) {
      const problem = this.#visit(child, pointer, false)
      if (problem !== undefined) return problem
      if (same && isObject(child)) this.#sameOf(node).push(child)
    }
    return undefined
  }

  /** The subschema `ref` points at (a boolean schema as itself), or undefined. */
  #resolve (ref: string): object | boolean | undefined {
    if (ref === '#') return this.#root
    let node: Json = this.#root
    for (const raw of ref.slice(2).split('/')) {
      let token: string
      try {
        token = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~')
      } catch {
        return undefined
      }
      if (Array.isArray(node)) node = node[Number(token)] as Json
      else if (isObject(node) && Object.hasOwn(node, token)) node = node[token] as Json
      else return undefined
      if (node === undefined) return undefined
    }
    if (typeof node === 'boolean') return node
    return isObject(node) && this.#pointers.has(node) ? node : undefined
  }

  /** A loop of subschemas applying to one instance (ajv would recurse forever), or undefined. */
  #cycle (): string | undefined {
    const state = new Map<object, 1 | 2>() // 1: on the current path, 2: done
    for (const start of this.#same.keys()) {
      if (state.has(start)) continue
      // Iterative DFS: a chain of $refs may be as long as the schema has subschemas.
      const stack: Array<{ node: object, next: number }> = [{ node: start, next: 0 }]
      state.set(start, 1)
      while (stack.length > 0) {
        const top = stack[stack.length - 1] as { node: object, next: number }
        const edges = this.#same.get(top.node) ?? []
        if (top.next >= edges.length) {
          state.set(top.node, 2)
          stack.pop()
          continue
        }
        const to = edges[top.next++] as object
        const seen = state.get(to)
        if (seen === 1) {
          return `${this.#field}${this.#pointers.get(to) ?? ''} refers back to itself through $ref without descending into the data`
        }
        if (seen === undefined) {
          state.set(to, 1)
          stack.push({ node: to, next: 0 })
        }
      }
    }
    return undefined
  }
}

function patternProblem (pattern: string): string | undefined {
  try {
    compilePattern(pattern)
    return undefined
  } catch (err) {
    return `RE2 (linear-time, no backreferences or lookaround) cannot compile it: ${(err as Error).message}`
  }
}

function isObject (value: unknown): value is SchemaObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function escapePointer (name: string): string {
  return name.replace(/~/g, '~0').replace(/\//g, '~1')
}
