// Guest code must not starve the main thread: it answers HTTP and fires the deadline timers
// that stop runaway guests. On Linux each thread has its own nice value, so a worker lowers
// its own priority; the main thread keeps the default. Measured with 400 deadline kills of
// CPU-burning plugins on 2 cores: see bench/RESULTS.md (soak).
import { readlinkSync } from 'node:fs'
import { setPriority } from 'node:os'

/** Nice value of worker threads (higher is lower priority). */
export const WORKER_NICE = 10

/** Lowers the calling thread's CPU priority; a no-op where threads cannot be addressed. */
export function lowerThreadPriority (nice = WORKER_NICE): boolean {
  try {
    // /proc/thread-self -> "<pid>/task/<tid>"; setpriority(PRIO_PROCESS, tid) affects one thread
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop())
    if (!Number.isInteger(tid) || tid <= 0) return false
    setPriority(tid, nice)
    return true
  } catch {
    return false
  }
}
