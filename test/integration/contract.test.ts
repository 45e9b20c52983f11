// The contract: routes vs openapi.yaml, the error catalogue vs openapi.yaml and the README,
// metric names vs DESIGN.md.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parse } from 'yaml'
import { errors } from '../../src/errors'
import { buildTestApp } from '../helpers/build-app'
import type { TestApp } from '../helpers/build-app'

const root = resolve(__dirname, '..', '..')
const spec = parse(readFileSync(resolve(root, 'openapi.yaml'), 'utf8')) as {
  paths: Record<string, Record<string, unknown>>
  components: { schemas: { Error: { properties: { code: { enum: string[] } }, allOf: ErrorCase[] } } & Record<string, unknown> }
}
/** One `if code is X then details is Y` of the Error schema. */
interface ErrorCase {
  if: { properties: { code: { const?: string, enum?: string[] } } }
  then: { properties?: { details?: { $ref?: string } }, not?: { required?: string[] } }
}
let t: TestApp

beforeAll(async () => { t = await buildTestApp() })
afterAll(async () => { await t.close() })

test('every route is in openapi.yaml and every documented operation exists', async () => {
  const documented = new Set<string>()
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const method of Object.keys(ops)) {
      if (method === 'parameters') continue
      documented.add(`${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`)
    }
  }
  // printRoutes draws a tree ("│   └── /:name (GET, PUT)"), 4 columns per level: rebuild paths.
  const registered = new Set<string>()
  const stack: string[] = []
  for (const line of t.app.printRoutes({ commonPrefix: false }).split('\n')) {
    // A node is a path segment; under a `/` route its children lose their leading slash.
    const m = /^([│├└─\s]*)(\S+) \(([^)]+)\)/.exec(line)
    if (m === null) continue
    const depth = Math.floor((m[1] ?? '').length / 4)
    stack.length = depth
    stack.push(m[2] ?? '')
    for (const method of (m[3] ?? '').split(', ')) {
      if (method !== 'HEAD' && method !== 'OPTIONS') registered.add(`${method} ${stack.join('')}`)
    }
  }
  expect([...registered].sort()).toEqual([...documented].sort())
})

test('the error catalogue, openapi.yaml and the README list the same codes', () => {
  const catalogue = Object.keys(errors).sort()
  expect([...spec.components.schemas.Error.properties.code.enum].sort()).toEqual(catalogue)
  const readme = readFileSync(resolve(root, 'README.md'), 'utf8')
  for (const code of catalogue) expect(readme).toContain(`\`${code}\``)
  for (const [code, Ctor] of Object.entries(errors)) {
    const err = new Ctor('x', 'y')
    expect(err.code).toBe(code)
  }
})

test('metric names are those of DESIGN.md', async () => {
  const designPath = resolve(root, '..', 'shared', 'DESIGN.md')
  const names = ['plugin_executions_total', 'plugin_execution_duration_seconds', 'plugin_queue_wait_seconds',
    'worker_pool_queue_size', 'worker_pool_threads', 'worker_terminations_total', 'plugins_loaded', 'plugin_compile_duration_seconds',
    'plugin_http_requests_total', 'plugin_log_lines_dropped_total']
  if (existsSync(designPath)) {
    const design = readFileSync(designPath, 'utf8')
    for (const name of names) expect(design).toContain(name)
  }
  const res = await t.app.inject({ method: 'GET', url: '/metrics' })
  for (const name of names) expect(res.body).toContain(`# TYPE ${name} `)
  expect(res.body).toContain('process_cpu_seconds_total')
})

/** The text of a call's arguments, `(` to its matching `)`, from the `(` at `open`. */
function callArguments (text: string, open: number): string {
  let depth = 0
  for (let i = open; i < text.length; i++) {
    if (text[i] === '(') depth++
    else if (text[i] === ')' && --depth === 0) return text.slice(open, i + 1)
  }
  return text.slice(open)
}

/** Every .ts file under src. */
function sources (dir = resolve(root, 'src')): Array<{ file: string, text: string }> {
  return readdirSync(dir, { withFileTypes: true }).flatMap(e => e.isDirectory()
    ? sources(join(dir, e.name))
    : e.name.endsWith('.ts') ? [{ file: join(dir, e.name), text: readFileSync(join(dir, e.name), 'utf8') }] : [])
}

test('every code the server sends with details has its details schema in openapi.yaml, and only those', () => {
  // Where the server creates an error with details: serviceError(CODE, [...], { details: ... })
  // and new GuestError(CODE, message, {...}), with a literal code.
  const withDetails = new Set<string>()
  for (const { text } of sources()) {
    for (const m of text.matchAll(/(serviceError|new GuestError)\('([A-Z_]+)'/g)) {
      const callee = m[1] as string
      const args = callArguments(text, (m.index ?? 0) + callee.length)
      if (callee === 'serviceError' ? /\bdetails:/.test(args) : /^\('[A-Z_]+',[\s\S]*,\s*\{/.test(args)) withDetails.add(m[2] as string)
    }
  }
  // And where the code is not a literal (checked by hand, so keep this list in step):
  // workers/validators.ts (maxDepth, maxValues for the input and the output side), the extism
  // kernel's CAPABILITY_DENIED from the HTTP bridge ({host}), and a trap's stderr
  // (sandbox/instance.ts guestFailure: withDetails on PLUGIN_TRAP).
  for (const code of ['INVALID_INPUT', 'PLUGIN_INVALID_OUTPUT', 'CAPABILITY_DENIED', 'PLUGIN_TRAP']) withDetails.add(code)
  // The scan still finds the literal sites it was written for.
  for (const code of ['FUNCTION_NOT_FOUND', 'PRECONDITION_FAILED', 'INSUFFICIENT_STORAGE', 'DEADLINE_EXCEEDED', 'PLUGIN_THROTTLED', 'PLUGIN_EXIT', 'PLUGIN_ERROR']) {
    expect(withDetails).toContain(code)
  }
  const { schemas } = spec.components
  const documented = new Map<string, string>()
  const without = new Set<string>()
  for (const c of schemas.Error.allOf) {
    const ref = c.then.properties?.details?.$ref
    if (c.if.properties.code.const !== undefined && ref !== undefined) documented.set(c.if.properties.code.const, ref)
    if (c.then.not?.required?.includes('details') === true) for (const code of c.if.properties.code.enum ?? []) without.add(code)
  }
  expect([...documented.keys()].sort()).toEqual([...withDetails].sort())
  for (const ref of documented.values()) expect(schemas[ref.replace('#/components/schemas/', '')]).toBeDefined()
  // Every other code is documented as having no details.
  expect([...without].sort()).toEqual(Object.keys(errors).filter(code => !withDetails.has(code)).sort())
})
