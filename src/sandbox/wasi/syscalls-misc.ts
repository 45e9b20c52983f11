// args, environ, clocks, random, poll_oneoff, proc, sched and sock. Nothing here touches the
// host file system; the only blocking call in the whole layer is poll_oneoff's sleep, which
// is clamped to the call's deadline and interruptible by worker termination.
import { randomFillSync } from 'node:crypto'
import { Clockid, Eventrwflags, Eventtype, Rights, Subclockflags } from './constants'
import { CallCpuClock } from './cpu-clock'
import type { WasiContext } from './context'
import { Errno } from './errno'
import { fail, toErrno, WasiExit } from './errors'
import { EVENT, readSubscription, SUBSCRIPTION, writeEvent } from './layout'
import type { Event } from './layout'
import type { GuestMemory } from './memory'
import type { WasiImports } from './signatures'

type MiscNames =
  | 'args_get' | 'args_sizes_get' | 'environ_get' | 'environ_sizes_get' | 'clock_res_get'
  | 'clock_time_get' | 'random_get' | 'poll_oneoff' | 'proc_exit' | 'proc_raise' | 'sched_yield'
  | 'sock_accept' | 'sock_recv' | 'sock_send' | 'sock_shutdown'

/**
 * Current value of a WASI clock in ns, or EINVAL for an unknown clock id. Both CPU-time
 * clocks read `cpu`: the call's own CPU time, never the process's (see cpu-clock.ts).
 */
export function clockNow (id: number, cpu: CallCpuClock): bigint {
  switch (id) {
    case Clockid.REALTIME:
      // timeOrigin + now(): sub-millisecond, unlike Date.now().
      return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6))
    case Clockid.MONOTONIC:
      return process.hrtime.bigint()
    case Clockid.PROCESS_CPUTIME_ID:
    case Clockid.THREAD_CPUTIME_ID:
      return cpu.now()
    default:
      return fail(Errno.INVAL)
  }
}

/** Resolution of a WASI clock in ns. */
function clockResolution (id: number): bigint {
  switch (id) {
    case Clockid.MONOTONIC: return 1n
    case Clockid.REALTIME:
    case Clockid.PROCESS_CPUTIME_ID:
    case Clockid.THREAD_CPUTIME_ID: return 1000n
    default: return fail(Errno.INVAL)
  }
}

// A private cell nobody ever notifies: Atomics.wait on it is a sleep that a worker
// termination interrupts (V8 wakes futex waits on TerminateExecution), unlike a busy loop.
const sleepCell = new Int32Array(new SharedArrayBuffer(4))

/** Sleeps until monotonic time `dueNs`, but never past `deadline` (Date.now() ms). */
export function sleepUntil (dueNs: bigint, deadline: number): void {
  for (;;) {
    const ms = Math.min(Number(dueNs - process.hrtime.bigint()) / 1e6, deadline - Date.now())
    if (!(ms > 0)) return
    Atomics.wait(sleepCell, 0, 0, ms)
  }
}

/** Writes a list of NUL-terminated strings as an array of pointers plus their bytes. */
function writeStrings (mem: GuestMemory, list: readonly Uint8Array[], ptrs: number, buf: number): void {
  let size = 0
  for (const s of list) size += s.byteLength
  mem.check(ptrs, list.length * 4)
  mem.check(buf, size)
  let at = buf
  list.forEach((s, i) => {
    mem.setU32(ptrs + i * 4, at)
    mem.write(at, s)
    at += s.byteLength
  })
}

function writeSizes (mem: GuestMemory, list: readonly Uint8Array[], countPtr: number, sizePtr: number): void {
  mem.check(countPtr, 4)
  mem.check(sizePtr, 4)
  mem.setU32(countPtr, list.length)
  mem.setU32(sizePtr, list.reduce((n, s) => n + s.byteLength, 0))
}

interface ClockWait { userdata: bigint, dueNs: bigint }

/** Builds the remaining imports of one instance. */
export function miscSyscalls (ctx: WasiContext): Pick<WasiImports, MiscNames> {
  // Made with the instance, so a call's CPU clocks start at 0 (one WASI instance per call).
  const cpu = new CallCpuClock()
  // fd subscriptions are answered at once: stdio are buffers and files never block.
  function fdEvent (userdata: bigint, type: 1 | 2, fd: number): Event {
    try {
      const desc = ctx.table.get(fd)
      desc.need(Rights.POLL_FD_READWRITE)
      const r = type === Eventtype.FD_READ ? desc.pollRead() : desc.pollWrite()
      return { userdata, error: Errno.SUCCESS, type, nbytes: r.nbytes, flags: r.hangup ? Eventrwflags.FD_READWRITE_HANGUP : 0 }
    } catch (err) {
      return { userdata, error: toErrno(err), type, nbytes: 0n, flags: 0 }
    }
  }

  // EBADF for a closed fd, ENOTSOCK for any open one.
  function notSocket (fd: number): never {
    ctx.table.get(fd)
    return fail(Errno.NOTSOCK)
  }

  return {
    args_get (argvPtr, bufPtr) {
      writeStrings(ctx.mem(), ctx.args, argvPtr, bufPtr)
      return Errno.SUCCESS
    },

    args_sizes_get (countPtr, sizePtr) {
      writeSizes(ctx.mem(), ctx.args, countPtr, sizePtr)
      return Errno.SUCCESS
    },

    environ_get (environPtr, bufPtr) {
      writeStrings(ctx.mem(), ctx.env, environPtr, bufPtr)
      return Errno.SUCCESS
    },

    environ_sizes_get (countPtr, sizePtr) {
      writeSizes(ctx.mem(), ctx.env, countPtr, sizePtr)
      return Errno.SUCCESS
    },

    clock_res_get (id, resPtr) {
      const res = clockResolution(id)
      ctx.mem().setU64(resPtr, res)
      return Errno.SUCCESS
    },

    clock_time_get (id, _precision, timePtr) {
      const now = clockNow(id, cpu)
      ctx.mem().setU64(timePtr, now)
      return Errno.SUCCESS
    },

    random_get (bufPtr, bufLen) {
      const mem = ctx.mem()
      const target = mem.view(bufPtr, bufLen)
      // Through a host buffer: the guest memory may be a SharedArrayBuffer.
      const chunk = new Uint8Array(Math.min(bufLen, 65536))
      for (let off = 0; off < bufLen; off += chunk.byteLength) {
        const n = Math.min(chunk.byteLength, bufLen - off)
        randomFillSync(chunk, 0, n)
        target.set(chunk.subarray(0, n), off)
      }
      return Errno.SUCCESS
    },

    poll_oneoff (inPtr, outPtr, nsubscriptions, neventsPtr) {
      if (nsubscriptions === 0) fail(Errno.INVAL)
      const mem = ctx.mem()
      mem.check(inPtr, nsubscriptions * SUBSCRIPTION.size)
      mem.check(outPtr, nsubscriptions * EVENT.size)
      mem.check(neventsPtr, 4)
      const events: Event[] = []
      const clocks: ClockWait[] = []
      const monoNow = process.hrtime.bigint()
      for (let i = 0; i < nsubscriptions; i++) {
        const sub = readSubscription(mem, inPtr + i * SUBSCRIPTION.size)
        if (sub.type === 'invalid') fail(Errno.INVAL)
        if (sub.type !== Eventtype.CLOCK) {
          events.push(fdEvent(sub.userdata, sub.type, sub.fd))
          continue
        }
        if (sub.clockId !== Clockid.REALTIME && sub.clockId !== Clockid.MONOTONIC) {
          // Waiting on a CPU-time clock would mean spinning: refused per subscription.
          events.push({ userdata: sub.userdata, error: Errno.NOTSUP, type: Eventtype.CLOCK, nbytes: 0n, flags: 0 })
          continue
        }
        const absolute = (sub.flags & Subclockflags.SUBSCRIPTION_CLOCK_ABSTIME) !== 0
        const wait = absolute ? sub.timeout - clockNow(sub.clockId, cpu) : sub.timeout
        clocks.push({ userdata: sub.userdata, dueNs: monoNow + (wait > 0n ? wait : 0n) })
      }
      if (events.length === 0 && clocks.length > 0) {
        const first = clocks.reduce((a, b) => (b.dueNs < a.dueNs ? b : a))
        sleepUntil(first.dueNs, ctx.deadline)
        // Woken by the deadline before any timeout: report the first one anyway, the guest
        // is about to be stopped from outside.
        if (process.hrtime.bigint() < first.dueNs) first.dueNs = 0n
      }
      const after = process.hrtime.bigint()
      for (const c of clocks) {
        if (c.dueNs <= after) events.push({ userdata: c.userdata, error: Errno.SUCCESS, type: Eventtype.CLOCK, nbytes: 0n, flags: 0 })
      }
      events.forEach((ev, i) => writeEvent(mem, outPtr + i * EVENT.size, ev))
      mem.setU32(neventsPtr, events.length)
      return Errno.SUCCESS
    },

    proc_exit (code): never {
      // Unwinds the guest; never process.exit.
      throw new WasiExit(code)
    },

    proc_raise () {
      return fail(Errno.NOTSUP)
    },

    sched_yield () {
      return Errno.SUCCESS
    },

    // No socket is ever granted, so no fd is one: these exist so modules importing them link,
    // and answer as wasmtime does for an fd that is not a socket.
    sock_accept (fd) { return notSocket(fd) },
    sock_recv (fd) { return notSocket(fd) },
    sock_send (fd) { return notSocket(fd) },
    sock_shutdown (fd) { return notSocket(fd) }
  }
}
