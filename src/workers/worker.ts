// The piscina worker entry: a plain function of its task that never throws. A worker owns the
// instances it runs; the main thread never touches guest memory. Runaway guest code is not
// interrupted here: the pool terminates this thread from outside when the deadline passes.
import { threadId } from 'node:worker_threads'
import { GuestError } from '../sandbox/guest-error'
import { MemoryPool } from '../sandbox/memory-pool'
import { lowerThreadPriority } from './thread-priority'
import { runSandboxed } from '../sandbox/instance'
import { CONTROL_STARTED_F64, CONTROL_STATE, CONTROL_THREAD, STATE_DONE, STATE_QUEUED, STATE_RUNNING } from './protocol'
import type { ExecuteResult, ExecuteTask } from './protocol'

lowerThreadPriority()

const memories = new MemoryPool()
const utf8 = new TextDecoder()

export default function execute (task: ExecuteTask): ExecuteResult {
  const control = new Int32Array(task.control)
  const started = Date.now()
  new Float64Array(task.control, 0, 2)[CONTROL_STARTED_F64] = started
  Atomics.store(control, CONTROL_THREAD, threadId)
  // The queue timeout may have cancelled this task before a thread was free.
  if (Atomics.compareExchange(control, CONTROL_STATE, STATE_QUEUED, STATE_RUNNING) !== STATE_QUEUED) {
    return { ok: false, code: 'OVERLOADED', message: 'cancelled in the queue', durationMs: 0 }
  }
  Atomics.notify(control, CONTROL_STATE)
  const t0 = performance.now()
  try {
    const { output, stderr } = runSandboxed({
      module: task.module,
      abi: task.abi,
      entry: task.entry,
      input: task.input,
      memory: task.memory,
      outputBytes: task.outputBytes,
      deadline: started + task.timeoutMs,
      wasi: task.wasi
    }, memories)
    const result: ExecuteResult = { ok: true, output, durationMs: performance.now() - t0 }
    if (stderr !== undefined && stderr.length > 0) result.stderr = utf8.decode(stderr)
    return result
  } catch (err) {
    const e = err instanceof GuestError ? err : new GuestError('INTERNAL', String(err))
    const failure: ExecuteResult = { ok: false, code: e.code, message: e.message, durationMs: performance.now() - t0 }
    if (e.details !== undefined) failure.details = e.details
    return failure
  } finally {
    // Fails only when the pool has already declared the deadline passed: it terminates us.
    Atomics.compareExchange(control, CONTROL_STATE, STATE_RUNNING, STATE_DONE)
  }
}
