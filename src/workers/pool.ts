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
import { Breaker } from './breaker'
import { FairQueue } from './fair-queue'

/** The compiled worker; tests and production run the same file. */
export const WORKER_FILE = resolve(__dirname, '..', '..', 'dist', 'workers', 'worker.js')

/** Longest a refusal of a paused plugin is held back. */
const TARPIT_MS = 1000

export interface PoolOptions {
  workers: number
  queueMax: number
  queueTimeoutMs: number
  pluginConcurrency: number
  /** Deadline kills in a row that open a plugin's breaker (0: no breaker). */
  breakerThreshold?: number
  breakerCooldownMs?: number
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
  readonly #queue: FairQueue
  readonly #breaker: Breaker
  /** Calls handed to piscina but not yet started by a thread (a replacement is starting). */
  #starting = 0
  #closed = false

  constructor (options: PoolOptions, events: PoolEvents = {}) {
    this.#options = options
    this.#events = events
    this.#queue = new FairQueue(options.workers)
    // Threshold 0 never pauses a plugin, but still tracks runaway suspects for the queue.
    this.#breaker = new Breaker({ threshold: options.breakerThreshold ?? 0, cooldownMs: options.breakerCooldownMs ?? 10_000, maxCooldownMs: 300_000 })
    this.#piscina = new Piscina({
      filename: options.workerFile ?? WORKER_FILE,
      minThreads: options.workers,
      maxThreads: options.workers,
      maxQueue: options.queueMax + options.workers, // a backstop: the fair queue is the real bound
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
    return this.#queue.waiting + this.#starting
  }

  /**
   * Runs one plugin call. Throws catalogue errors; never a raw piscina error.
   * Admission, in order: the plugin's breaker, its calls in flight (PLUGIN_THROTTLED), the
   * queue's size (OVERLOADED), then a fair wait for a thread (OVERLOADED past the timeout).
   */
  async execute (request: ExecuteRequest): Promise<ExecuteOutcome> {
    if (this.#closed) throw serviceError('NOT_READY', ['shutting down'])
    const { plugin, ...rest } = request
    const blockedMs = this.#breaker.blockedFor(plugin)
    if (blockedMs > 0) {
      // A tarpit: the refusal itself waits (up to a second), so a client that ignores
      // retry-after and loops on a paused plugin costs one cheap timer per second per
      // connection instead of a request per millisecond.
      await new Promise(resolve => setTimeout(resolve, Math.min(blockedMs, TARPIT_MS)))
      throw serviceError('PLUGIN_THROTTLED', [`plugin '${plugin}' keeps running past its deadline; paused for ${Math.ceil(blockedMs / 1000)} s`],
        { retryAfterSeconds: Math.ceil(blockedMs / 1000), details: { reason: 'deadline breaker' } })
    }
    let outcome: 'ok' | 'deadline' | 'other' = 'other'
    try {
      const running = this.#inFlight.get(plugin) ?? 0
      if (running >= this.#options.pluginConcurrency) {
        throw serviceError('PLUGIN_THROTTLED', [`plugin '${plugin}' already has ${running} calls in flight`], { retryAfterSeconds: 1 })
      }
      if (this.#queue.waiting >= this.#options.queueMax) {
        throw serviceError('OVERLOADED', ['the execution queue is full'], { retryAfterSeconds: 1 })
      }
      this.#inFlight.set(plugin, running + 1)
      try {
        const enqueued = performance.now()
        // A plugin killed at its deadline since its last success may hold all threads but
        // one, so its next runaway calls cannot starve everyone else; healthy plugins may use
        // every thread (work-conserving), and the queue is round-robin across plugins.
        const suspect = this.#breaker.suspect(plugin)
        await this.#queue.acquire(plugin, this.#options.queueTimeoutMs, suspect ? this.#options.workers - 1 : this.#options.workers)
        try {
          const result = await this.#run({ ...rest, control: new SharedArrayBuffer(CONTROL_BYTES) }, enqueued)
          outcome = 'ok'
          return result
        } finally {
          this.#queue.release(plugin)
        }
      } finally {
        const left = (this.#inFlight.get(plugin) ?? 1) - 1
        if (left === 0) this.#inFlight.delete(plugin); else this.#inFlight.set(plugin, left)
      }
    } catch (err) {
      if ((err as { code?: unknown }).code === 'DEADLINE_EXCEEDED') outcome = 'deadline'
      throw err
    } finally {
      this.#breaker.record(plugin, outcome)
    }
  }

  /** Forgets a plugin's breaker state (after a replace or a delete). */
  forget (plugin: string): void {
    this.#breaker.reset(plugin)
  }

  async #run (task: ExecuteTask, enqueued: number): Promise<ExecuteOutcome> {
    const control = new Int32Array(task.control)
    const abort = new AbortController()
    let deadlineTimer: NodeJS.Timeout | undefined
    let failure: ServiceError | undefined
    let settled = false

    // The fair queue granted a slot, but the thread may still be starting (a replacement
    // after a kill): that wait is bounded by the queue timeout too.
    this.#starting++
    let queued = true
    const leaveQueue = (): void => { if (queued) { queued = false; this.#starting-- } }
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
          // ranMs - timeoutMs is the overshoot: how late the thread was stopped
          failure = serviceError('DEADLINE_EXCEEDED', [task.timeoutMs], { details: { timeoutMs: task.timeoutMs, ranMs: Date.now() - startedAt } })
          this.#events.onTermination?.('deadline')
          abort.abort(failure)
          resolve(failure)
        }, left)
      })
    })

    let result: ExecuteResult
    try {
      // The input is moved, not copied, when it owns its whole ArrayBuffer (the execute route
      // makes sure it does): a structured clone would copy it twice, and a view into Node's
      // shared Buffer slab would copy the whole 8 KiB slab. The caller must not touch it after.
      const input = task.input
      const owned = input.byteLength > 0 && input.byteOffset === 0 && input.byteLength === input.buffer.byteLength &&
        Object.prototype.toString.call(input.buffer) === '[object ArrayBuffer]' // not a SharedArrayBuffer, from any realm
      const run = this.#piscina.run(task, owned ? { signal: abort.signal, transferList: [input.buffer as ArrayBuffer] } : { signal: abort.signal }) as Promise<ExecuteResult>
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
