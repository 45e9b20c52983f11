// What a plugin's schema may be (src/registry/schema.ts), and the worker-side validator cache
// (src/workers/validators.ts), without threads or HTTP.
import { schemaProblem, schemaRef, schemaShapeProblem, MAX_SCHEMA_DEPTH } from '../../src/registry/schema'
import { jsonShape } from '../../src/sandbox/abi-json'
import { GuestError } from '../../src/sandbox/guest-error'
import { SchemaValidators } from '../../src/workers/validators'

const problem = (schema: unknown): string | undefined => schemaShapeProblem('inputSchema', schema) ?? schemaProblem('inputSchema', schema)

describe('schema rules', () => {
  test.each([
    ['a plain schema', { type: 'object', properties: { a: { type: 'string', pattern: '^[a-z]+$' } } }],
    ['a boolean schema', true],
    ['a recursive schema that descends into the data', { type: 'array', items: { $ref: '#' } }],
    ['a $ref into definitions, with pointer escapes', { definitions: { 'a/b': { type: 'string' } }, properties: { x: { $ref: '#/definitions/a~1b' } } }],
    ['a root $id and draft-07 $schema', { $id: 'https://example.com/s.json', $schema: 'http://json-schema.org/draft-07/schema#', type: 'object' }],
    ['draft-07 $schema without its "#"', { $schema: 'http://json-schema.org/draft-07/schema', type: 'object' }],
    ['a pattern RE2 runs in linear time', { pattern: '^(a+)+$' }],
    ['"$async" as a property name', { properties: { $async: { type: 'string' } } }]
  ])('accepted: %s', (_label, schema) => {
    expect(problem(schema)).toBeUndefined()
  })

  test.each([
    ['$async at the root', { $async: true }, /\$async/],
    ['$async below', { properties: { a: { $async: true } } }, /inputSchema\/properties\/a: "\$async"/],
    ['a $ref to another document', { $ref: 'https://example.com/a.json' }, /leaves the schema/],
    ['a $ref to the meta-schema', { $ref: 'http://json-schema.org/draft-07/schema#' }, /leaves the schema/],
    ['an anchor $ref', { $ref: '#foo' }, /leaves the schema/],
    ['a $ref to nothing', { $ref: '#/nowhere' }, /does not point at a subschema/],
    ['a $ref into data', { enum: [{ type: 'string' }], $ref: '#/enum/0' }, /does not point at a subschema/],
    ['a $ref to itself', { $ref: '#' }, /refers back to itself/],
    ['a $ref loop through allOf', { definitions: { a: { allOf: [{ $ref: '#/definitions/a' }] } }, properties: { x: { $ref: '#/definitions/a' } } }, /refers back to itself/],
    ['$id below the root', { properties: { a: { $id: 'https://example.com/x' } } }, /\$id" is allowed only at the root/],
    ['an unknown $schema', { $schema: 'https://example.com/s' }, /\$schema/],
    ['draft-07 over https (not the meta-schema\'s id)', { $schema: 'https://json-schema.org/draft-07/schema#' }, /only draft-07/],
    ['a draft 2020-12 $schema', { $schema: 'https://json-schema.org/draft/2020-12/schema' }, /only draft-07/],
    ['$dynamicRef', { $dynamicRef: '#meta' }, /\$dynamicRef/],
    ['a backreference', { pattern: '(a)\\1' }, /pattern "\(a\)\\\\1" is not supported: RE2/],
    ['a lookahead in patternProperties', { patternProperties: { '(?=a)': {} } }, /patternProperties/],
    ['an invalid keyword value', { type: 'nonsense' }, /not a valid JSON schema/]
  ])('refused: %s', (_label, schema, message) => {
    expect(problem(schema)).toMatch(message)
  })

  test(`nesting over ${MAX_SCHEMA_DEPTH} levels is refused without recursion (even 100,000 levels)`, () => {
    let deep: unknown = {}
    for (let i = 0; i < 100_000; i++) deep = { not: deep }
    expect(schemaShapeProblem('inputSchema', deep)).toMatch(/nested deeper than 64 levels/)
    let ok: unknown = {}
    for (let i = 0; i < MAX_SCHEMA_DEPTH - 1; i++) ok = { not: ok }
    expect(schemaShapeProblem('inputSchema', ok)).toBeUndefined()
  })

  test('schemaRef: the same text, the same key', () => {
    expect(schemaRef({ type: 'object' })).toEqual(schemaRef({ type: 'object' }))
    expect(schemaRef({ type: 'object' }).key).not.toBe(schemaRef({ type: 'array' }).key)
  })
})

describe('jsonShape', () => {
  test('depth and value caps, counted before parsing', () => {
    const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
    expect(jsonShape(bytes('[[[]]]'), 3, 10)).toBe('ok')
    expect(jsonShape(bytes('[[[]]]'), 2, 10)).toBe('deep')
    expect(jsonShape(bytes('{"a":{"b":{}}}'), 2, 10)).toBe('deep')
    expect(jsonShape(bytes('[1,2,3]'), 5, 4)).toBe('ok')
    expect(jsonShape(bytes('[1,2,3]'), 5, 3)).toBe('many')
    expect(jsonShape(bytes('[1,2,'), 5, 10)).toBe('invalid')
  })
})

describe('SchemaValidators (the worker side)', () => {
  const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)
  const codeOf = (fn: () => void): string | undefined => {
    try { fn(); return undefined } catch (err) { return err instanceof GuestError ? err.code : 'not a GuestError' }
  }

  test('input and output errors keep their codes; patterns are matched by RE2, each its own', () => {
    const v = new SchemaValidators()
    const ref = schemaRef({ type: 'object', properties: { a: { pattern: '^a+$' }, b: { pattern: '^b+$' } } })
    expect(codeOf(() => v.input(ref, bytes('{"a":"aaa","b":"bbb"}')))).toBeUndefined()
    expect(codeOf(() => v.input(ref, bytes('{"b":"aaa"}')))).toBe('INVALID_INPUT')
    expect(codeOf(() => v.output(ref, bytes('{"a":"b"}')))).toBe('PLUGIN_INVALID_OUTPUT')
    expect(codeOf(() => v.input(ref, bytes('{')))).toBe('INVALID_INPUT')
    expect(codeOf(() => v.input(schemaRef({ pattern: '^(a+)+$' }), bytes(JSON.stringify('a'.repeat(5000) + '!'))))).toBe('INVALID_INPUT')
  })

  test('each schema compiles in its own Ajv: the same $id twice is no conflict', () => {
    const v = new SchemaValidators()
    const one = schemaRef({ $id: 'https://example.com/a', required: ['a'] })
    const two = schemaRef({ $id: 'https://example.com/a', required: ['b'] })
    expect(codeOf(() => v.input(one, bytes('{"a":1}')))).toBeUndefined()
    expect(codeOf(() => v.input(two, bytes('{"b":1}')))).toBeUndefined()
    expect(codeOf(() => v.input(two, bytes('{"a":1}')))).toBe('INVALID_INPUT')
  })

  test('the cache is bounded, least recently used first out', () => {
    const v = new SchemaValidators(2)
    for (let i = 0; i < 5; i++) v.input(schemaRef({ maxLength: i + 10 }), bytes('"x"'))
    expect(v.size).toBe(2)
  })
})
