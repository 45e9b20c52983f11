// The CPU-time clocks a guest reads (PROCESS_CPUTIME_ID, THREAD_CPUTIME_ID). Both count the
// CPU time of the call itself: from the moment its WASI instance was made, on the thread that
// runs it. The process's CPU time moved with every other plugin's calls (and the worker
// thread's, with the calls it ran before), which told a plugin what the others were doing
// (security issue 16). For a guest, its call is its whole process.

/** CPU time the calling thread has used, in ns. */
function threadCpuNs (): bigint {
  // Node >= 23.9 (the pinned runtime is 24); a runtime without it reads wall time instead,
  // which tells a guest nothing about other threads either.
  if (typeof process.threadCpuUsage === 'function') {
    const { user, system } = process.threadCpuUsage()
    return BigInt(user + system) * 1000n
  }
  return process.hrtime.bigint()
}

/** One call's CPU clock: starts at 0 when it is made. */
export class CallCpuClock {
  readonly #start = threadCpuNs()

  /** CPU time used by this call so far, in ns (never negative). */
  now (): bigint {
    const used = threadCpuNs() - this.#start
    return used > 0n ? used : 0n
  }
}
