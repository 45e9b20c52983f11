// The piscina worker entry: a plain function of its task that never throws. A worker owns the
// instances it runs; the main thread never touches guest memory. Runaway guest code is not
// interrupted here: the pool terminates this thread from outside when the deadline passes.
import { threadId } from 'node:worker_threads'
import { GuestError } from '../sandbox/guest-error'
import { MemoryPool } from '../sandbox/memory-pool'
import { runSandboxed } from '../sandbox/instance'
import {
  CONTROL_FD_BASE, CONTROL_FD_SLOTS, CONTROL_STARTED_F64, CONTROL_STATE, CONTROL_THREAD,
  STATE_DONE, STATE_QUEUED, STATE_RUNNING
} from './protocol'
import type { ExecuteResult, ExecuteTask } from './protocol'

const memories = new MemoryPool()
const utf8 = new TextDecoder()

/**
 * Records host fds in the shared control block while the call holds them, so that the pool
 * can close them if it has to terminate this thread mid-call (fds belong to the process).
 */
function fdRecorder (control: Int32Array): (fd: number, open: boolean) => void {
  const slots = new Map<number, number>()
  let next = 0
  return (fd, open) => {
    if (open) {
      for (let i = 0; i < CONTROL_FD_SLOTS; i++) {
        const slot = CONTROL_FD_BASE + ((next + i) % CONTROL_FD_SLOTS)
        if (Atomics.compareExchange(control, slot, 0, fd + 1) === 0) {
          slots.set(fd, slot)
          next = (slot - CONTROL_FD_BASE + 1) % CONTROL_FD_SLOTS
          return
        }
      }
      // More fds than slots: the WASI fd table limit keeps a call below this.
      return
    }
    const slot = slots.get(fd)
    if (slot !== undefined) {
      Atomics.store(control, slot, 0)
      slots.delete(fd)
    }
  }
}

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
      wasi: task.wasi,
      onHostFd: fdRecorder(control)
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
