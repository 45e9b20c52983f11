// The schema-check thread (src/workers/schema-check.ts): a real thread, compiled from dist/.
import { isServiceError } from '../../src/errors'
import { SchemaChecker } from '../../src/workers/schema-check'

function big (): string {
  const properties: Record<string, unknown> = {}
  for (let i = 0; JSON.stringify(properties).length < 60_000; i++) properties[`p${i}`] = { type: 'string', pattern: `^[a-z]+${i}(x|y)*$` }
  return JSON.stringify({ type: 'object', properties })
}

async function codeOf (p: Promise<void>): Promise<string | undefined> {
  try { await p; return undefined } catch (err) { return isServiceError(err) ? `${err.code}: ${err.message}` : String(err) }
}

test('checks run in the thread: accepted, refused with the problem named, one after another', async () => {
  const checker = new SchemaChecker()
  const results = await Promise.all([
    codeOf(checker.check([{ field: 'inputSchema', text: '{"type":"object"}' }])),
    codeOf(checker.check([{ field: 'inputSchema', text: '{"type":"object"}' }, { field: 'outputSchema', text: '{"$async":true}' }])),
    codeOf(checker.check([]))
  ])
  expect(results[0]).toBeUndefined()
  expect(results[1]).toMatch(/^INVALID_MANIFEST: .*outputSchema.*\$async/)
  expect(results[2]).toBeUndefined()
})

test('a check past its CPU-time bound is stopped and the schema refused', async () => {
  const checker = new SchemaChecker(undefined, 50)
  expect(await codeOf(checker.check([{ field: 'inputSchema', text: big() }]))).toMatch(/^INVALID_MANIFEST: .*more than 50 ms of CPU time/)
  const roomy = new SchemaChecker()
  expect(await codeOf(roomy.check([{ field: 'inputSchema', text: '{"type":"string"}' }]))).toBeUndefined()
})
