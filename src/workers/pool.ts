// The worker pool: the only module that imports piscina. Everything else calls `execute()`.
//
// Admission: per-plugin concurrency (PLUGIN_THROTTLED), then a bounded queue (OVERLOADED).
// Timing: queue wait and run time have separate bounds, watched by dispatch.ts. The worker
// marks its start in a shared control block (see protocol.ts); the run deadline counts from
// that start. A running wasm loop cannot be interrupted in-thread, so the deadline terminates
// the thread; piscina starts a replacement. Host files the call had
// open need no help from here: WASI opens them through node:fs, and Node closes the fds a
// worker opened that way when the thread is torn down (measured: 100 fds opened with
// openSync, all closed by terminate(); a main-thread "reaper" that closed them again once
// closed numbers already reused by the replacement thread's libuv, and aborted the process).
import { resolve } from 'node:path'
import { Piscina, queueOptionsSymbol } from 'piscina'
import { internalError, isServiceError, serviceError } from '../errors'
import { clockMs, CONTROL_STATE, CONTROL_THREAD, startedAtMs, STATE_CANCELLED, STATE_KILLED, STATE_QUEUED, STATE_RUNNING } from './protocol'
import type { ExecuteResult, ExecuteTask, KeptReport } from './protocol'
import type { ExtismEffects } from '../sandbox/extism/types'
import { Breaker } from './breaker'
import { FairQueue } from './fair-queue'
import { CallSpeed } from './call-speed'
import { dispatch, TASKS_PER_WORKER } from './dispatch'
import type { DispatchContext } from './dispatch'

/** The compiled worker; tests and production run the same file. */
export const WORKER_FILE = resolve(__dirname, '..', '..', 'dist', 'workers', 'worker.js')

type Balancer = NonNullable<NonNullable<ConstructorParameters<typeof Piscina>[0]>['loadBalancer']>
/** A thread as piscina's balancer sees it (the type is not exported by name). */
type PiscinaWorker = Parameters<Balancer>[1][number]

/**
 * A task as handed to piscina: its control block rides along under piscina's queue-options
 * symbol, the one property of a task a balancer is shown (postMessage does not copy
 * symbol-keyed properties, so the worker never sees it).
 */
type Placeable = ExecuteTask & { [queueOptionsSymbol]: Int32Array }

/** The worker export that suspected runaways are posted to (see worker.ts). */
const SUSPECT_HANDLER = 'suspect'
/** The worker export that lets go of what a thread keeps (see worker.ts trim). */
const TRIM_HANDLER = 'trim'

/** A thread whose call has run this long gets no more tasks queued behind it. */
const STALLED_MS = 10

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
  /**
   * After this long without a call, threads let go of what they keep between calls (free
   * memories, kept instances) and the memory goes back to the OS. 0: never.
   */
  idleReleaseMs?: number
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

export interface ExecuteHooks {
  /** extism ABI: what the call did (var writes, logs, HTTP), whether it succeeded or failed. */
  onEffects?: (effects: ExtismEffects) => void
}

export class WorkerPool {
  readonly #piscina: Piscina
  readonly #options: PoolOptions
  readonly #inFlight = new Map<string, number>()
  /** Last report of each thread (by threadId): bytes it keeps between calls. */
  readonly #keptBytes = new Map<number, number>()
  readonly #queue: FairQueue
  readonly #breaker: Breaker
  /** Control blocks of the calls handed to piscina and not yet answered. */
  readonly #dispatched = new Map<Int32Array, boolean>()
  readonly #dispatchContext: DispatchContext
  readonly #speed = new CallSpeed()
  /** Threads being terminated, until piscina has seen them exit. */
  readonly #killing = new Set<Promise<void>>()
  /** Threads given a suspected runaway's call, until the balancer finds them idle again. */
  readonly #suspectThreads = new Set<number>()
  /** Calls admitted so far; the idle check compares it between its rounds. */
  #calls = 0
  #idleTimer: NodeJS.Timeout | undefined
  #closed = false

  constructor (options: PoolOptions, events: PoolEvents = {}) {
    this.#options = options
    this.#queue = new FairQueue(options.workers * TASKS_PER_WORKER)
    // Threshold 0 never pauses a plugin, but still tracks runaway suspects for the queue.
    this.#breaker = new Breaker({ threshold: options.breakerThreshold ?? 0, cooldownMs: options.breakerCooldownMs ?? 10_000, maxCooldownMs: 300_000 })
    this.#piscina = new Piscina({
      filename: options.workerFile ?? WORKER_FILE,
      minThreads: options.workers,
      maxThreads: options.workers,
      maxQueue: options.queueMax + options.workers * TASKS_PER_WORKER, // a backstop: the fair queue is the real bound
      // No AbortSignal per task (piscina would then run one task per thread): the deadline
      // terminates the thread itself, see kill below.
      concurrentTasksPerWorker: TASKS_PER_WORKER,
      // piscina's default balancer would queue a task behind a long call on a busy thread
      // while another thread is still starting; this one never does (see #pickThread).
      loadBalancer: (task, workers) => {
        // A trim goes to the thread it is for (or, if that one is gone, to any idle one).
        if (task.name === TRIM_HANDLER) {
          const target = (task[queueOptionsSymbol] as { trim?: number } | null)?.trim
          return workers.find(w => w.id === target) ?? workers.find(w => w.currentUsage === 0) ?? null
        }
        const queued = task[queueOptionsSymbol]
        const control = queued instanceof Int32Array ? queued : undefined
        // Cancelled while in piscina's queue (moved, or timed out): piscina cannot drop it, so
        // it goes to whichever thread skips it soonest, and claims no idle thread as a suspect.
        const cancelled = control !== undefined && Atomics.load(control, CONTROL_STATE) === STATE_CANCELLED
        const picked = this.#pickThread(!cancelled && task.name === SUSPECT_HANDLER, workers)
        // Where the task waits, known before it starts (see #parked).
        if (picked !== null && control !== undefined) Atomics.store(control, CONTROL_THREAD, picked.id)
        return picked
      },
      idleTimeout: Number.MAX_SAFE_INTEGER,
      // piscina's own per-task histograms: the service keeps its own metrics
      recordTiming: false,
      // No heap resourceLimits: guest memory lives outside the JS heap, and measured on
      // Node 24.21 a large table in a worker with a small heap limit aborts the process.
      env: {}
    })
    // A worker that dies outside a deliberate termination is replaced by piscina; keep the
    // process alive and let the affected call fail.
    this.#piscina.on('error', () => {})
    this.#dispatchContext = {
      post: (task, control, suspect) => {
        const placeable: Placeable = Object.assign(task, { [queueOptionsSymbol]: control })
        return this.#piscina.run(placeable, suspect ? { name: SUSPECT_HANDLER } : {}) as Promise<ExecuteResult>
      },
      kill: (threadId) => { this.#kill(threadId) },
      queueTimeoutMs: options.queueTimeoutMs,
      inFlight: this.#dispatched,
      usableThread: () => this.#piscina.threads.some(t => !this.#stalled(t.threadId)),
      onQueueWait: events.onQueueWait,
      onKill: () => events.onTermination?.('deadline')
    }
    const idleMs = options.idleReleaseMs ?? 0
    if (idleMs > 0) this.#watchIdle(idleMs)
  }

  /**
   * Every idleMs / 2: when no call was admitted since the last round (and none runs), each
   * thread that reported kept bytes is told to let go of them. Nothing per call but a count:
   * an idle thread blocks in piscina's Atomics.wait and cannot notice idleness itself.
   */
  #watchIdle (idleMs: number): void {
    let seen = -1
    let quietRounds = 0
    this.#idleTimer = setInterval(() => {
      if (this.#calls !== seen || this.#dispatched.size > 0) { seen = this.#calls; quietRounds = 0; return }
      if (++quietRounds < 2) return
      for (const t of this.#piscina.threads) {
        if ((this.#keptBytes.get(t.threadId) ?? 0) === 0) continue
        this.#keptBytes.set(t.threadId, 0) // asked once per idle spell; a call's report resets it
        const task = { [queueOptionsSymbol]: { trim: t.threadId } }
        const trimmed = this.#piscina.run(task, { name: TRIM_HANDLER }) as Promise<KeptReport>
        trimmed.then(r => { this.#keptBytes.set(r.thread, r.bytes) }, () => {})
      }
    }, Math.max(1, Math.floor(idleMs / 2)))
    this.#idleTimer.unref()
  }

  get threads (): number {
    return this.#piscina.threads.length
  }

  /** Plugins the breaker pauses now (kept hitting their deadline). */
  get pausedPlugins (): number {
    return this.#breaker.paused()
  }

  /** Calls admitted and not yet answered, per plugin (queued or running). */
  get callsInFlight (): ReadonlyMap<string, number> {
    return this.#inFlight
  }

  /** Bytes the live threads keep between calls (free memories and kept instances), as last reported. */
  get keptBytes (): number {
    let total = 0
    for (const t of this.#piscina.threads) total += this.#keptBytes.get(t.threadId) ?? 0
    if (this.#keptBytes.size > this.#piscina.threads.length * 2) {
      const live = new Set(this.#piscina.threads.map(t => t.threadId))
      for (const id of this.#keptBytes.keys()) if (!live.has(id)) this.#keptBytes.delete(id)
    }
    return total
  }

  /** Calls waiting for a thread: in the fair queue, or handed to piscina but not yet started. */
  get queueSize (): number {
    let notStarted = 0
    for (const control of this.#dispatched.keys()) if (Atomics.load(control, CONTROL_STATE) === STATE_QUEUED) notStarted++
    return this.#queue.waiting + notStarted
  }

  /**
   * Runs one plugin call. Throws catalogue errors; never a raw piscina error.
   * Admission, in order: the plugin's breaker, its calls in flight (PLUGIN_THROTTLED), the
   * queue's size (OVERLOADED), then a fair wait for a thread (OVERLOADED past the timeout).
   */
  async execute (request: ExecuteRequest, hooks: ExecuteHooks = {}): Promise<ExecuteOutcome> {
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
      if (this.queueSize >= this.#options.queueMax) {
        throw serviceError('OVERLOADED', ['the execution queue is full'], { retryAfterSeconds: 1 })
      }
      this.#inFlight.set(plugin, running + 1)
      this.#calls++
      try {
        const enqueued = clockMs()
        // A plugin killed at its deadline since its last success may hold all threads but
        // one, so its next runaway calls cannot starve everyone else; healthy plugins may use
        // every thread (work-conserving), and the queue is round-robin across plugins.
        // Only a plugin whose calls are short may queue calls on busy threads (a call behind
        // it waits little); others get a call per thread, as a slow call would delay the
        // calls queued behind it on its thread.
        const { workers } = this.#options
        const suspect = this.#breaker.suspect(plugin)
        const slots = suspect ? workers - 1 : this.#speed.fast(plugin) ? workers * TASKS_PER_WORKER : workers
        await this.#queue.acquire(plugin, this.#options.queueTimeoutMs, slots)
        try {
          const result = await this.#run(rest, plugin, enqueued, hooks)
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

  /**
   * An idle thread if there is one; else, unless the call is a suspected runaway (which gets
   * an idle thread or waits), the least busy thread that is not stalled (see #stalled); else
   * none, and piscina holds the task until a thread frees up or a replacement is ready.
   */
  #pickThread (suspect: boolean, workers: PiscinaWorker[]): PiscinaWorker | null {
    let best: PiscinaWorker | null = null
    let bestUsage = 0
    const parked = this.#parked()
    // A thread that is still starting is offered as idle too, and a task handed to it waits
    // until it has loaded the worker file (80-100 ms after a kill on a loaded machine).
    // Skipping such threads (they are known from piscina's 'workerCreate' event) was measured
    // and dropped: bench:isolation with the breaker on fell from 0.93-0.97 to 0.78-0.90
    // (3 interleaved runs each), and nothing improved with it off.
    for (const w of workers) {
      const usage = w.currentUsage - (parked?.get(w.id) ?? 0)
      if (usage <= 0) {
        // Idle, so whatever suspect it was given is done. Marked at once, not when the call
        // starts: tasks handed out in the same breath must not queue behind it.
        if (suspect) this.#suspectThreads.add(w.id); else this.#suspectThreads.delete(w.id)
        return w
      }
      if (suspect) continue
      if (usage >= TASKS_PER_WORKER || (best !== null && usage >= bestUsage)) continue
      if (!this.#stalled(w.id)) { best = w; bestUsage = usage }
    }
    return best
  }

  /**
   * Cancelled tasks still waiting on each thread, or undefined if there are none. A task moved
   * off a thread stuck in a long call stays in that thread's port until the thread reaches
   * it (and skips it) or dies; piscina counts it as load all the while, so a thread could look
   * full of work it will never do (measured with the breaker off: both threads at 4 tasks,
   * healthy calls held in piscina's queue for a whole runaway deadline).
   */
  #parked (): Map<number, number> | undefined {
    let parked: Map<number, number> | undefined
    for (const control of this.#dispatched.keys()) {
      if (Atomics.load(control, CONTROL_STATE) !== STATE_CANCELLED) continue
      const thread = Atomics.load(control, CONTROL_THREAD)
      parked ??= new Map()
      parked.set(thread, (parked.get(thread) ?? 0) + 1)
    }
    return parked
  }

  /**
   * Whether a thread is a bad place to wait: its running call has run STALLED_MS already, or
   * its plugin was killed at its deadline since its last success (a likely runaway), or the
   * thread is being terminated (its killed call stays listed until piscina sees the exit, and
   * until then piscina offers the thread like any other: measured with the breaker off, healthy
   * calls were handed to a dying thread after every kill and had to be posted again).
   */
  #stalled (threadId: number): boolean {
    if (this.#suspectThreads.has(threadId)) return true
    for (const [control, suspect] of this.#dispatched) {
      if (Atomics.load(control, CONTROL_THREAD) !== threadId) continue
      const state = Atomics.load(control, CONTROL_STATE)
      if (state === STATE_KILLED) return true
      if (state === STATE_RUNNING) return suspect || clockMs() - startedAtMs(control.buffer as SharedArrayBuffer) >= STALLED_MS
    }
    return false
  }

  /**
   * Terminates a thread. piscina notices the exit, fails the thread's other tasks (dispatch
   * posts again those that never started) and starts a replacement.
   */
  #kill (threadId: number): void {
    const thread = this.#piscina.threads.find(w => w.threadId === threadId)
    if (thread === undefined) return
    this.#suspectThreads.delete(threadId)
    const exited = thread.terminate().then(() => {}, () => {}).finally(() => this.#killing.delete(exited))
    this.#killing.add(exited)
  }

  /** Forgets what the pool learned of a plugin (after a replace or a delete). */
  forget (plugin: string): void {
    this.#breaker.reset(plugin)
    this.#speed.forget(plugin)
  }

  async #run (task: Omit<ExecuteTask, 'control'>, plugin: string, enqueued: number, hooks: ExecuteHooks): Promise<ExecuteOutcome> {
    let result: ExecuteResult
    try {
      result = await dispatch(task, enqueued, this.#dispatchContext, () => this.#breaker.suspect(plugin))
    } catch (err) {
      if (isServiceError(err)) throw err
      if (err instanceof Error && err.message === 'Task queue is at limit') {
        throw serviceError('OVERLOADED', ['the execution queue is full'], { retryAfterSeconds: 1 })
      }
      if (this.#closed) throw serviceError('NOT_READY', ['shutting down'])
      throw err
    }
    if (result.kept !== undefined) this.#keptBytes.set(result.kept.thread, result.kept.bytes)
    if (result.extism !== undefined) hooks.onEffects?.(result.extism)
    if (!result.ok) {
      // The worker's text of an INTERNAL failure is the host's own error (paths under
      // DATA_DIR, errno names): it goes to the log as the cause, not to the caller.
      if (result.code === 'INTERNAL') throw internalError(result.message)
      throw serviceError(result.code, [result.message], result.details !== undefined ? { details: result.details } : {})
    }
    this.#speed.record(plugin, result.durationMs)
    return { output: result.output, durationMs: result.durationMs, stderr: result.stderr }
  }

  /** Stops taking calls, lets queued and running calls finish, then stops the threads. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    if (this.#idleTimer !== undefined) clearInterval(this.#idleTimer)
    // piscina's close() waits for each thread to report a finished task; a thread we terminate
    // meanwhile never does, and close() would sit out its 30 s timeout. So calls in flight
    // finish (each is bounded by its deadline) and killed threads are gone first.
    while (this.#dispatched.size > 0 || this.#killing.size > 0) {
      await Promise.all([...this.#killing])
      if (this.#dispatched.size > 0) await new Promise(resolve => setTimeout(resolve, 10))
    }
    await this.#piscina.close()
  }
}
