// The CPU-time clocks a guest reads (PROCESS_CPUTIME_ID, THREAD_CPUTIME_ID). Both count the
// CPU time of the call itself, on the thread that runs it. The process's CPU time moved with
// every other plugin's calls (and the worker thread's, with the calls it ran before), which
// told a plugin what the others were doing (security issue 16). For a guest, its call is its
// whole process. They start at the guest's first read of either (which reads 0), not when the
// call's WASI context is made: reading the thread's CPU time for every context cost ~7 µs a
// call, a sixth of a Rust plugin's call on a reset instance, for a clock few guests read, and
// only differences between readings mean anything to a guest.

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

/** One call's CPU clock: 0 at its first reading. */
export class CallCpuClock {
  #start: bigint | undefined

  /** CPU time used by this call since its first reading, in ns (never negative). */
  now (): bigint {
    const now = threadCpuNs()
    this.#start ??= now
    const used = now - this.#start
    return used > 0n ? used : 0n
  }
}
