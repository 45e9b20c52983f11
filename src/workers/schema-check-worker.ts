// The schema-check thread's entry (see schema-check.ts): answers each request with the first
// problem of its schemas, or none. Unlike the execute workers it keeps the normal priority:
// its work is an admin's, one check at a time, bounded in CPU time, and a lowered priority on
// a loaded machine made a 64 KiB schema wait minutes for a core.
import { parentPort } from 'node:worker_threads'
import { schemaProblem, schemaShapeProblem } from '../registry/schema'
import type { SchemaCheckRequest, SchemaCheckResult } from './schema-check'

parentPort?.on('message', (request: SchemaCheckRequest) => {
  let problem: string | undefined
  try {
    for (const { field, text } of request.schemas) {
      const schema: unknown = JSON.parse(text)
      problem = schemaShapeProblem(field, schema) ?? schemaProblem(field, schema)
      if (problem !== undefined) break
    }
  } catch (err) {
    problem = `schema check failed: ${err instanceof Error ? err.message : String(err)}`
  }
  const result: SchemaCheckResult = problem === undefined ? { id: request.id, ok: true } : { id: request.id, ok: false, message: problem }
  parentPort?.postMessage(result)
})
