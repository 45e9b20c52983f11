// How plugin schemas are compiled, the same way wherever it happens (the upload check's thread
// and the execute workers): one Ajv instance per schema, so no schema can see another's `$id`
// and everything a schema holds is freed with it; and `pattern`/`patternProperties` run on RE2
// (re2js, pure JS), whose matching time is linear in the input: no pattern can backtrack.
import Ajv from 'ajv'
import type { Options } from 'ajv'
import { RE2JS } from 're2js'

/**
 * Compiles a JSON Schema (ECMA-262) pattern for RE2, or throws RE2's message. Backreferences,
 * lookahead and lookbehind have no linear-time implementation, so RE2 refuses them.
 */
export function compilePattern (pattern: string): RE2JS {
  return RE2JS.compile(RE2JS.translateRegExp(pattern))
}

/**
 * Ajv's regular expression hook. ajv caches compiled patterns by `toString()`, so each object
 * must print as its own pattern (a shared "[object Object]" made every pattern the first one).
 */
const re2Engine = Object.assign((pattern: string): { test: (s: string) => boolean, toString: () => string } => {
  const re = compilePattern(pattern)
  return { test: (s: string) => re.test(s), toString: () => `re2:${pattern}` }
}, { code: 're2js' })

const options: Options = {
  strict: false,
  allErrors: false,
  // Checked once at upload (registry/schema.ts), against draft-07 only.
  validateSchema: false,
  // No meta-schemas in a plugin's instance: nothing to `$ref` outside the plugin's own schema.
  meta: false,
  logger: false,
  code: { regExp: re2Engine }
}

/** A fresh Ajv for one plugin schema (cheap: ~1 ms; the compile itself is what costs). */
export function createSchemaAjv (): Ajv {
  return new Ajv(options)
}
