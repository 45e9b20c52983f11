// Timestamps a guest sets, read back exactly. Node's utimes family takes seconds as a double,
// which holds a present-day time only to about 0.24 µs, so a time set to the nanosecond
// (WASI timestamps are u64 ns, and wasmtime's utimensat keeps them exact) would read back a
// little off, and a time the guest did not ask to change would move by the same rounding.
// Guests do compare (the WASI testsuite sets `mtim - 100` and reads it back). So each
// instance remembers, per inode, the exact times it set and what the host stored for them,
// and reports the exact ones for as long as the host still holds what was stored: anything
// that changes the file afterwards (a write, another set, another process) shows through.
// The host keeps the rounded value: another call sees that one.
import type { BigIntStats } from 'node:fs'
import { Fstflags } from './constants'
import { Errno } from './errno'
import { fail } from './errors'
import type { Filestat } from './layout'
import { toFilestat } from './stat'

/** Exact times an instance set on one inode, and the host's rounded copies of them. */
interface Pin {
  atim: bigint
  hostAtim: bigint
  mtim: bigint
  hostMtim: bigint
}

/** Most inodes one instance remembers (the oldest is forgotten first: its times round). */
const MAX_PINS = 1024

const key = (dev: bigint, ino: bigint): string => `${dev}:${ino}`

/** Nanoseconds since the epoch as the seconds Node's utimes family takes. */
function seconds (ns: bigint): number {
  return Number(ns / 1_000_000_000n) + Number(ns % 1_000_000_000n) / 1e9
}

/** The exact timestamps of one WASI instance. */
export class ExactTimes {
  readonly #pins = new Map<string, Pin>()

  /** `st` with the times this instance set, where the host still holds what it stored. */
  view (st: Filestat): Filestat {
    const pin = this.#pins.get(key(st.dev, st.ino))
    if (pin === undefined) return st
    return {
      ...st,
      atim: st.atim === pin.hostAtim ? pin.atim : st.atim,
      mtim: st.mtim === pin.hostMtim ? pin.mtim : st.mtim
    }
  }

  /**
   * Applies WASI `fstflags`: ATIM/MTIM set the given time, ATIM_NOW/MTIM_NOW the current
   * one, neither keeps the time as this instance shows it. ATIM with ATIM_NOW (or MTIM with
   * MTIM_NOW) is EINVAL. `stat` reads the host entry, `apply` sets both times in seconds
   * (Node has no UTIME_OMIT, so a kept time is passed back).
   */
  set (atim: bigint, mtim: bigint, flags: number, stat: () => BigIntStats, apply: (atime: number, mtime: number) => void): void {
    if ((flags & ~0xf) !== 0) fail(Errno.INVAL)
    if ((flags & Fstflags.ATIM) !== 0 && (flags & Fstflags.ATIM_NOW) !== 0) fail(Errno.INVAL)
    if ((flags & Fstflags.MTIM) !== 0 && (flags & Fstflags.MTIM_NOW) !== 0) fail(Errno.INVAL)
    const shown = this.view(toFilestat(stat()))
    // undefined: "now", whatever the host's clock says it is.
    const pick = (set: number, setNow: number, value: bigint, kept: bigint): bigint | undefined =>
      (flags & setNow) !== 0 ? undefined : (flags & set) !== 0 ? value : kept
    const a = pick(Fstflags.ATIM, Fstflags.ATIM_NOW, atim, shown.atim)
    const m = pick(Fstflags.MTIM, Fstflags.MTIM_NOW, mtim, shown.mtim)
    const now = Date.now() / 1000
    apply(a === undefined ? now : seconds(a), m === undefined ? now : seconds(m))
    const after = stat()
    const k = key(after.dev, after.ino)
    this.#pins.delete(k) // re-inserted last: the map's order is the forgetting order
    this.#pins.set(k, { atim: a ?? after.atimeNs, hostAtim: after.atimeNs, mtim: m ?? after.mtimeNs, hostMtim: after.mtimeNs })
    if (this.#pins.size > MAX_PINS) {
      const oldest = this.#pins.keys().next().value
      if (oldest !== undefined) this.#pins.delete(oldest)
    }
  }
}
