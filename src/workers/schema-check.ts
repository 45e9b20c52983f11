// Checks a plugin's schemas off the main thread, at upload and at load. Compiling a schema
// (RE2 for its patterns, ajv for the validator) costs up to seconds for a 64 KiB one, and what
// it allocates must not outlive the check: so it runs in a thread of its own, one check at a
// time, each bounded by SCHEMA_CHECK_TIMEOUT_MS (past it the thread is terminated and the
// schema refused). The thread ends when idle, so whatever ajv kept goes with it.
import { resolve } from 'node:path'
import { Worker } from 'node:worker_threads'
import { serviceError } from '../errors'

/** Longest a schema may take to check and compile (a 64 KiB schema takes 1-2 s on one core). */
export const SCHEMA_CHECK_TIMEOUT_MS = 20_000
/** An idle check thread ends after this long. */
const IDLE_MS = 2_000
/** Checks one thread serves before it is replaced (what ajv and RE2 leave behind goes with it). */
const CHECKS_PER_THREAD = 50

export const SCHEMA_CHECK_FILE = resolve(__dirname, '..', '..', 'dist', 'workers', 'schema-check-worker.js')

export interface SchemaCheckRequest { id: number, schemas: Array<{ field: string, text: string }> }
export type SchemaCheckResult = { id: number, ok: true } | { id: number, ok: false, message: string }

interface Pending { request: SchemaCheckRequest, resolve: (r: SchemaCheckResult) => void, reject: (e: Error) => void }

/** One check thread at a time, started on demand; requests wait their turn in order. */
export class SchemaChecker {
  readonly #file: string
  readonly #timeoutMs: number
  readonly #waiting: Pending[] = []
  #thread: Worker | undefined
  #served = 0
  #busy = false
  #idle: NodeJS.Timeout | undefined
  #nextId = 1

  constructor (file = SCHEMA_CHECK_FILE, timeoutMs = SCHEMA_CHECK_TIMEOUT_MS) {
    this.#file = file
    this.#timeoutMs = timeoutMs
  }

  /** Throws INVALID_MANIFEST naming the first problem of `schemas` (each a field name and its JSON text). */
  async check (schemas: Array<{ field: string, text: string }>): Promise<void> {
    if (schemas.length === 0) return
    const result = await new Promise<SchemaCheckResult>((resolve, reject) => {
      this.#waiting.push({ request: { id: this.#nextId++, schemas }, resolve, reject })
      this.#next()
    })
    if (!result.ok) throw serviceError('INVALID_MANIFEST', [result.message])
  }

  #next (): void {
    if (this.#busy) return
    const pending = this.#waiting.shift()
    if (pending === undefined) {
      clearTimeout(this.#idle)
      this.#idle = setTimeout(() => { this.#stop() }, IDLE_MS).unref()
      return
    }
    clearTimeout(this.#idle)
    this.#busy = true
    if (this.#thread === undefined || this.#served >= CHECKS_PER_THREAD) {
      this.#stop()
      this.#thread = new Worker(this.#file)
      this.#thread.unref()
      this.#served = 0
    }
    const thread = this.#thread
    this.#served++
    const done = (settle: () => void): void => {
      clearTimeout(timer)
      thread.off('message', onMessage)
      thread.off('error', onError)
      thread.off('exit', onExit)
      settle()
      this.#busy = false
      this.#next()
    }
    const onMessage = (result: SchemaCheckResult): void => { if (result.id === pending.request.id) done(() => pending.resolve(result)) }
    const onError = (err: Error): void => { this.#forget(thread); done(() => pending.reject(err)) }
    const onExit = (): void => { this.#forget(thread); done(() => pending.reject(new Error('the schema-check thread exited'))) }
    const timer = setTimeout(() => {
      this.#stop()
      done(() => pending.resolve({ id: pending.request.id, ok: false, message: `checking the schema took longer than ${this.#timeoutMs} ms` }))
    }, this.#timeoutMs)
    thread.on('message', onMessage)
    thread.on('error', onError)
    thread.on('exit', onExit)
    thread.postMessage(pending.request)
  }

  #forget (thread: Worker): void {
    if (this.#thread === thread) this.#thread = undefined
  }

  #stop (): void {
    const thread = this.#thread
    this.#thread = undefined
    if (thread !== undefined) {
      thread.removeAllListeners('exit')
      thread.terminate().catch(() => {})
    }
  }
}

/** The process's checker: schema checks are rare (uploads, start-up) and need no wiring. */
export const schemaChecker = new SchemaChecker()
