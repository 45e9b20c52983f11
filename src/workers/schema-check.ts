// Checks a plugin's schemas off the main thread, at upload and at load. Compiling a schema
// (RE2 for its patterns, ajv for the validator) costs up to seconds for a 64 KiB one, and what
// it allocates must not outlive the check: so it runs in a thread of its own, one check at a
// time. A check is bounded by the CPU time the thread spends on it (SCHEMA_CHECK_CPU_MS, read
// with worker.cpuUsage()), not by the wall clock: on a loaded machine a legitimate schema may
// wait long for a core, and must not be refused for it. Past the bound the thread is terminated
// and the schema refused. The thread ends when idle, so whatever ajv kept goes with it.
import { resolve } from 'node:path'
import { Worker } from 'node:worker_threads'
import { serviceError } from '../errors'

/** CPU time a check may take (a 64 KiB schema with 1,000 patterns takes 1-2 s). */
export const SCHEMA_CHECK_CPU_MS = 10_000
/** A backstop on the wall clock, should the thread stop answering cpuUsage(). */
const SCHEMA_CHECK_WALL_MS = 300_000
/** How often the thread's CPU time is read during a check. */
const CPU_POLL_MS = 250
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
  readonly #cpuMs: number
  readonly #waiting: Pending[] = []
  #thread: Worker | undefined
  #served = 0
  #busy = false
  #idle: NodeJS.Timeout | undefined
  #nextId = 1

  constructor (file = SCHEMA_CHECK_FILE, cpuMs = SCHEMA_CHECK_CPU_MS) {
    this.#file = file
    this.#cpuMs = cpuMs
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
    const fresh = this.#thread === undefined || this.#served >= CHECKS_PER_THREAD
    if (fresh) {
      this.#stop()
      this.#thread = new Worker(this.#file)
      this.#thread.unref()
      this.#served = 0
    }
    const thread = this.#thread as Worker
    this.#served++
    let finished = false
    const done = (settle: () => void): void => {
      if (finished) return
      finished = true
      clearTimeout(wall)
      clearInterval(poll)
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
    const tooLong = (what: string): void => {
      this.#stop()
      done(() => pending.resolve({ id: pending.request.id, ok: false, message: `checking and compiling the schema took more than ${what}` }))
    }
    const cpuMs = (u: NodeJS.CpuUsage): number => (u.user + u.system) / 1000
    // A new thread counts from its start (its module loading included); a reused one from now.
    let baseline: number | undefined = fresh ? 0 : undefined
    if (!fresh) thread.cpuUsage().then(u => { baseline = cpuMs(u) }, () => {})
    const poll = setInterval(() => {
      thread.cpuUsage().then(u => {
        if (!finished && baseline !== undefined && cpuMs(u) - baseline > this.#cpuMs) tooLong(`${this.#cpuMs} ms of CPU time`)
      }, () => {}) // not running yet (starting) or already gone
    }, CPU_POLL_MS)
    const wall = setTimeout(() => { tooLong(`${SCHEMA_CHECK_WALL_MS} ms`) }, SCHEMA_CHECK_WALL_MS)
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
