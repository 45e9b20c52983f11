// The contract: routes vs openapi.yaml, the error catalogue vs openapi.yaml and the README,
// metric names vs DESIGN.md.
import { existsSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parse } from 'yaml'
import { errors } from '../../src/errors'
import { buildTestApp } from '../helpers/build-app'
import type { TestApp } from '../helpers/build-app'

const root = resolve(__dirname, '..', '..')
const spec = parse(readFileSync(resolve(root, 'openapi.yaml'), 'utf8')) as {
  paths: Record<string, Record<string, unknown>>
  components: { schemas: { Error: { properties: { code: { enum: string[] } } } } }
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
