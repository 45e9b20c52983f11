// One call's life after admission: hand it to a thread, watch its control block, and act on
// what the block says when a bound passes. Knows nothing of piscina: the pool passes in how to
// post a task and how to stop a thread.
//
// A thread holds up to TASKS_PER_WORKER tasks (bench/RESULTS.md: a worker that finds its next
// task waiting does not sleep, and each sleep/wake of a thread costs more than the call), so a
// task can sit behind a long call on its thread. It never waits there long: past RESCUE_AFTER_MS
// it is cancelled (the thread will skip it) and posted again, where piscina's balancer puts it
// on the least busy thread. A task whose thread died before starting it is posted again too.
import { serviceError } from '../errors'
import type { ServiceError } from '../errors'
import {
  clockMs, CONTROL_BYTES, CONTROL_STATE, CONTROL_THREAD, startedAtMs, STATE_CANCELLED, STATE_KILLED, STATE_QUEUED, STATE_RUNNING
} from './protocol'
import type { ExecuteResult, ExecuteTask } from './protocol'

/** Tasks a thread may hold: one running and the rest waiting in its port. */
export const TASKS_PER_WORKER = 4
/** A task waiting this long behind another on its thread moves to another thread. */
export const RESCUE_AFTER_MS = 50
/** Bodies from this size are posted in shared memory (see shareable). */
export const SHARE_FROM_BYTES = 64 * 1024

/**
 * The body as the task carries it. A task may be posted more than once, and postMessage copies
 * a plain buffer on this thread at each posting: a 16 MiB body took longer to copy and
 * deliver than RESCUE_AFTER_MS, so it was moved, copied again, moved... and never ran
 * (bench:stalls: 503 after 60 s, the event loop busy copying, /healthz p50 49 ms). A large body
 * is copied once into a SharedArrayBuffer, which every posting shares; a small one stays
 * plain, where a copy costs less than setting up shared memory. Nobody writes to it after.
 */
export function shareable (input: Uint8Array): Uint8Array {
  if (input.byteLength < SHARE_FROM_BYTES || input.buffer instanceof SharedArrayBuffer) return input
  const shared = new Uint8Array(new SharedArrayBuffer(input.byteLength))
  shared.set(input)
  return shared
}

export interface DispatchContext {
  /** Posts a task (`control` views its control block) to a thread; rejects if the thread dies before answering. */
  post: (task: ExecuteTask, control: Int32Array, suspect: boolean) => Promise<ExecuteResult>
  /** Stops a thread at once (the deadline); its unfinished tasks reject. */
  kill: (threadId: number) => void
  queueTimeoutMs: number
  /** Whether some thread would take a task without making it wait behind a long call. */
  usableThread: () => boolean
  /** Control blocks of tasks posted and not yet let go of by piscina, each with its call's `suspect`. */
  inFlight: Map<Int32Array, boolean>
  onQueueWait?: ((seconds: number) => void) | undefined
  onKill?: (() => void) | undefined
}

/** What one posting of a task came to. */
type Attempt = { kind: 'result', result: ExecuteResult } | { kind: 'again' }

/**
 * Runs a task to its result: a worker's answer, or DEADLINE_EXCEEDED / OVERLOADED thrown as a
 * catalogue error. `enqueued` (clockMs) is when the call was admitted: the queue wait metric
 * counts from there. The deadline counts from the start on a thread.
 */
export async function dispatch (task: Omit<ExecuteTask, 'control'>, enqueued: number, ctx: DispatchContext, suspect: () => boolean = () => false): Promise<ExecuteResult> {
  const queueDeadline = clockMs() + ctx.queueTimeoutMs
  const input = shareable(task.input)
  for (;;) {
    // Asked again for each posting: the plugin may have been killed meanwhile.
    const attempt = await postOnce({ ...task, input, control: new SharedArrayBuffer(CONTROL_BYTES) }, enqueued, queueDeadline, ctx, suspect())
    if (attempt.kind === 'result') return attempt.result
  }
}

async function postOnce (task: ExecuteTask, enqueued: number, queueDeadline: number, ctx: DispatchContext, suspect: boolean): Promise<Attempt> {
  const control = new Int32Array(task.control)
  const posted = clockMs()
  let failure: ServiceError | undefined
  let settle: (value: Attempt | ServiceError) => void = () => {}
  const watched = new Promise<Attempt | ServiceError>(resolve => { settle = resolve })
  const reportQueueWait = (): void => { ctx.onQueueWait?.(Math.max(0, startedAtMs(task.control) - enqueued) / 1000) }

  // Nobody waits on the control block: waking the main thread when a task starts cost a thread
  // wake per call. One timer instead, armed for the earliest moment a bound can pass (the
  // deadline counts from the start, which comes after the posting), re-armed as it fires.
  let timer: NodeJS.Timeout | undefined
  const check = (): void => {
    timer = undefined
    const now = clockMs()
    if (Atomics.load(control, CONTROL_STATE) === STATE_QUEUED) {
      const due = Math.min(queueDeadline, posted + RESCUE_AFTER_MS)
      if (now < due) { timer = setTimeout(check, due - now); return }
      // Past the queue timeout: give up. Short of it: move only a task that waits on a thread
      // (behind a call that turned long) and only if some thread would take it without a long
      // wait. A task still in piscina's own queue (no thread yet) keeps its place in line:
      // moving it would send it to the back and leave a dead copy in the line (measured with
      // the breaker off: healthy calls moved again and again, each time to the back, behind
      // a runaway's deadline). A suspect waits for an idle thread wherever it is posted.
      const placed = Atomics.load(control, CONTROL_THREAD) !== 0
      if (now < queueDeadline && (!placed || suspect || !ctx.usableThread())) { timer = setTimeout(check, Math.min(RESCUE_AFTER_MS, queueDeadline - now)); return }
      if (Atomics.compareExchange(control, CONTROL_STATE, STATE_QUEUED, STATE_CANCELLED) === STATE_QUEUED) {
        if (now >= queueDeadline) {
          failure = serviceError('OVERLOADED', [`no worker was free within ${ctx.queueTimeoutMs} ms`], { retryAfterSeconds: 1 })
          settle(failure)
        } else {
          settle({ kind: 'again' }) // stuck behind a long call: the thread will skip it
        }
        return
      }
    }
    if (Atomics.load(control, CONTROL_STATE) !== STATE_RUNNING) return // done: the result is on its way
    const startedAt = startedAtMs(task.control)
    const left = startedAt + task.timeoutMs - now
    if (left > 0) { timer = setTimeout(check, left); return }
    if (Atomics.compareExchange(control, CONTROL_STATE, STATE_RUNNING, STATE_KILLED) !== STATE_RUNNING) return
    // A running wasm loop cannot be interrupted in its thread: the thread goes.
    // ranMs - timeoutMs is the overshoot: how late the thread was stopped.
    failure = serviceError('DEADLINE_EXCEEDED', [task.timeoutMs], { details: { timeoutMs: task.timeoutMs, ranMs: Math.round(now - startedAt) } })
    reportQueueWait()
    ctx.onKill?.()
    ctx.kill(Atomics.load(control, CONTROL_THREAD))
    settle(failure)
  }
  timer = setTimeout(check, Math.max(0, Math.min(queueDeadline - posted, RESCUE_AFTER_MS, task.timeoutMs)))
  ctx.inFlight.set(control, suspect)

  let outcome: Attempt | ServiceError
  try {
    let handed: Promise<ExecuteResult>
    try {
      handed = ctx.post(task, control, suspect)
    } catch (err) {
      ctx.inFlight.delete(control)
      throw err
    }
    // Forgotten when piscina lets go of the task, not when this call moves on: a task
    // cancelled behind a long call still takes a place on that thread until the thread
    // reaches it or dies, and the balancer discounts it (pool.ts #pickThread).
    const forget = (): void => { ctx.inFlight.delete(control) }
    handed.then(forget, forget)
    const answer = handed.then((result): Attempt => ({ kind: 'result', result }), (err: unknown): Attempt => {
      // The thread died. A task it never started (queued behind one that was killed) is
      // posted again; one it was running failed with it.
      if (Atomics.compareExchange(control, CONTROL_STATE, STATE_QUEUED, STATE_CANCELLED) === STATE_QUEUED) return { kind: 'again' }
      throw err
    })
    answer.catch(() => {}) // still observed below; this only keeps a late rejection handled
    outcome = await Promise.race([answer, watched])
  } catch (err) {
    if (failure !== undefined) throw failure
    throw err
  } finally {
    if (timer !== undefined) clearTimeout(timer)
  }
  if (!('kind' in outcome)) throw outcome
  if (outcome.kind === 'result' && (outcome.result.ok || outcome.result.code !== 'OVERLOADED')) reportQueueWait()
  return outcome
}
