// The worker pool: the only module that imports piscina. Everything else calls `execute()`.
//
// Admission: per-plugin concurrency (PLUGIN_THROTTLED), then a bounded queue (OVERLOADED).
// Timing: queue wait and run time have separate bounds. The worker announces its start
// through a shared control block (see protocol.ts); the run deadline counts from that start.
// A running wasm loop cannot be interrupted in-thread, so the deadline aborts the piscina
// task, which terminates the thread; piscina starts a replacement. Host files the call had
// open need no help from here: WASI opens them through node:fs, and Node closes the fds a
// worker opened that way when the thread is torn down (measured: 100 fds opened with
// openSync, all closed by terminate(); a main-thread "reaper" that closed them again once
// closed numbers already reused by the replacement thread's libuv, and aborted the process).
import { resolve } from 'node:path'
import { Piscina } from 'piscina'
import { serviceError } from '../errors'
import type { ServiceError } from '../errors'
import {
  CONTROL_BYTES, CONTROL_STARTED_F64, CONTROL_STATE, STATE_CANCELLED, STATE_KILLED, STATE_QUEUED, STATE_RUNNING
} from './protocol'
import type { ExecuteResult, ExecuteTask } from './protocol'

/** The compiled worker; tests and production run the same file. */
export const WORKER_FILE = resolve(__dirname, '..', '..', 'dist', 'workers', 'worker.js')

export interface PoolOptions {
  workers: number
  queueMax: number
  queueTimeoutMs: number
  pluginConcurrency: number
  workerFile?: string
}

export type TerminationReason = 'deadline'

export interface PoolEvents {
  /** A worker thread was terminated on purpose. */
  onTermination?: (reason: TerminationReason) => void
  /** Time a call waited for a thread, in seconds. */
  onQueueWait?: (seconds: number) => void
}

export interface ExecuteOutcome {
  output: Uint8Array
  durationMs: number
  stderr: string | undefined
}

export type ExecuteRequest = Omit<ExecuteTask, 'control'> & { plugin: string }

export class WorkerPool {
  readonly #piscina: Piscina
  readonly #options: PoolOptions
  readonly #events: PoolEvents
  readonly #inFlight = new Map<string, number>()
  /** Calls submitted but not yet started by a thread (or cancelled): the queue we bound. */
  #waiting = 0
  #closed = false

  constructor (options: PoolOptions, events: PoolEvents = {}) {
    this.#options = options
    this.#events = events
    this.#piscina = new Piscina({
      filename: options.workerFile ?? WORKER_FILE,
      minThreads: options.workers,
      maxThreads: options.workers,
      maxQueue: options.queueMax + options.workers, // a backstop; #waiting is the real bound
      concurrentTasksPerWorker: 1,
      idleTimeout: Number.MAX_SAFE_INTEGER,
      // No heap resourceLimits: guest memory lives outside the JS heap, and measured on
      // Node 24.21 a large table in a worker with a small heap limit aborts the process.
      env: {}
    })
    // A worker that dies outside a deliberate termination is replaced by piscina; keep the
    // process alive and let the affected call fail.
    this.#piscina.on('error', () => {})
  }

  get threads (): number {
    return this.#piscina.threads.length
  }

  get queueSize (): number {
    return this.#waiting
  }

  /** Runs one plugin call. Throws catalogue errors; never a raw piscina error. */
  async execute (request: ExecuteRequest): Promise<ExecuteOutcome> {
    if (this.#closed) throw serviceError('NOT_READY', ['shutting down'])
    const { plugin, ...rest } = request
    const running = this.#inFlight.get(plugin) ?? 0
    if (running >= this.#options.pluginConcurrency) {
      throw serviceError('PLUGIN_THROTTLED', [`plugin '${plugin}' already has ${running} calls in flight`], { retryAfterSeconds: 1 })
    }
    this.#inFlight.set(plugin, running + 1)
    try {
      return await this.#run({ ...rest, control: new SharedArrayBuffer(CONTROL_BYTES) })
    } finally {
      const left = (this.#inFlight.get(plugin) ?? 1) - 1
      if (left === 0) this.#inFlight.delete(plugin); else this.#inFlight.set(plugin, left)
    }
  }

  async #run (task: ExecuteTask): Promise<ExecuteOutcome> {
    const control = new Int32Array(task.control)
    const abort = new AbortController()
    const enqueued = performance.now()
    let deadlineTimer: NodeJS.Timeout | undefined
    let failure: ServiceError | undefined
    let settled = false

    // Counted here rather than through piscina's maxQueue, whose capacity also counts
    // threads that are still starting, so a full queue is refused exactly at QUEUE_MAX.
    if (this.#waiting >= this.#options.queueMax) {
      throw serviceError('OVERLOADED', ['the execution queue is full'], { retryAfterSeconds: 1 })
    }
    this.#waiting++
    let queued = true
    const leaveQueue = (): void => { if (queued) { queued = false; this.#waiting-- } }
    const started = Atomics.waitAsync(control, CONTROL_STATE, STATE_QUEUED, this.#options.queueTimeoutMs)
    const startedPromise = started.async ? started.value : Promise.resolve(started.value)
    const watcher = startedPromise.then(() => {
      leaveQueue()
      if (Atomics.compareExchange(control, CONTROL_STATE, STATE_QUEUED, STATE_CANCELLED) === STATE_QUEUED) {
        failure = serviceError('OVERLOADED', [`no worker was free within ${this.#options.queueTimeoutMs} ms`], { retryAfterSeconds: 1 })
        return failure
      }
      this.#events.onQueueWait?.((performance.now() - enqueued) / 1000)
      const startedAt = new Float64Array(task.control, 0, 2)[CONTROL_STARTED_F64] ?? Date.now()
      const left = Math.max(0, startedAt + task.timeoutMs - Date.now())
      return new Promise<ServiceError>(resolve => {
        if (settled) return
        deadlineTimer = setTimeout(() => {
          if (Atomics.compareExchange(control, CONTROL_STATE, STATE_RUNNING, STATE_KILLED) !== STATE_RUNNING) return
          failure = serviceError('DEADLINE_EXCEEDED', [task.timeoutMs], { details: { timeoutMs: task.timeoutMs } })
          this.#events.onTermination?.('deadline')
          abort.abort(failure)
          resolve(failure)
        }, left)
      })
    })

    let result: ExecuteResult
    try {
      const run = this.#piscina.run(task, { signal: abort.signal }) as Promise<ExecuteResult>
      run.catch(() => {}) // still observed below; this only keeps a late rejection handled
      result = await Promise.race([run, watcher.then(err => { if (err.code === 'OVERLOADED') throw err; return run })])
    } catch (err) {
      if (failure !== undefined) throw failure
      if (err instanceof Error && err.message === 'Task queue is at limit') {
        throw serviceError('OVERLOADED', ['the execution queue is full'], { retryAfterSeconds: 1 })
      }
      if (this.#closed) throw serviceError('NOT_READY', ['shutting down'])
      throw err
    } finally {
      leaveQueue()
      settled = true
      if (deadlineTimer !== undefined) clearTimeout(deadlineTimer)
    }
    if (!result.ok) {
      throw serviceError(result.code, [result.message], result.details !== undefined ? { details: result.details } : {})
    }
    return { output: result.output, durationMs: result.durationMs, stderr: result.stderr }
  }

  /** Stops taking calls, lets queued and running calls finish, then stops the threads. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#piscina.close()
  }
}
