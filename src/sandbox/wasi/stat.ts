// Host stat results as WASI filestats, and the set_times flag logic shared by the fd and
// path variants.
import { lstatSync } from 'node:fs'
import type { BigIntStats } from 'node:fs'
import { Filetype, Fstflags } from './constants'
import { Errno } from './errno'
import { fail } from './errors'
import type { Filestat } from './layout'

/** The WASI filetype of a host stat. FIFOs have no WASI type: UNKNOWN. */
export function filetypeOf (st: { isFile: () => boolean, isDirectory: () => boolean, isSymbolicLink: () => boolean, isCharacterDevice: () => boolean, isBlockDevice: () => boolean, isSocket: () => boolean }): number {
  if (st.isFile()) return Filetype.REGULAR_FILE
  if (st.isDirectory()) return Filetype.DIRECTORY
  if (st.isSymbolicLink()) return Filetype.SYMBOLIC_LINK
  if (st.isCharacterDevice()) return Filetype.CHARACTER_DEVICE
  if (st.isBlockDevice()) return Filetype.BLOCK_DEVICE
  if (st.isSocket()) return Filetype.SOCKET_STREAM
  return Filetype.UNKNOWN
}

/** A host stat (bigint flavour: nanosecond timestamps) as a WASI filestat. */
export function toFilestat (st: BigIntStats): Filestat {
  return {
    dev: st.dev,
    ino: st.ino,
    filetype: filetypeOf(st),
    nlink: st.nlink,
    size: st.size,
    atim: st.atimeNs,
    mtim: st.mtimeNs,
    ctim: st.ctimeNs
  }
}

/** A filestat with only a type (stdio: no host file behind it). */
export function syntheticFilestat (filetype: number, size = 0n): Filestat {
  return { dev: 0n, ino: 0n, filetype, nlink: 1n, size, atim: 0n, mtim: 0n, ctim: 0n }
}

/** Nanoseconds since the epoch as the seconds Node's utimes family takes. */
function seconds (ns: bigint): number {
  return Number(ns / 1_000_000_000n) + Number(ns % 1_000_000_000n) / 1e9
}

/**
 * The (atime, mtime) pair, in seconds, to pass to utimes for WASI `fstflags`. Node has no
 * UTIME_OMIT, so a time that is not being set is passed back as its current value (read
 * with `current()` only when needed). ATIM with ATIM_NOW (or MTIM with MTIM_NOW) is EINVAL.
 */
export function resolveTimes (
  atim: bigint, mtim: bigint, flags: number, current: () => BigIntStats
): [number, number] {
  if ((flags & ~0xf) !== 0) fail(Errno.INVAL)
  if ((flags & Fstflags.ATIM) !== 0 && (flags & Fstflags.ATIM_NOW) !== 0) fail(Errno.INVAL)
  if ((flags & Fstflags.MTIM) !== 0 && (flags & Fstflags.MTIM_NOW) !== 0) fail(Errno.INVAL)
  const now = Date.now() / 1000
  let st: BigIntStats | undefined
  const pick = (set: number, setNow: number, value: bigint, old: (s: BigIntStats) => bigint): number => {
    if ((flags & setNow) !== 0) return now
    if ((flags & set) !== 0) return seconds(value)
    st ??= current()
    return seconds(old(st))
  }
  return [
    pick(Fstflags.ATIM, Fstflags.ATIM_NOW, atim, (s) => s.atimeNs),
    pick(Fstflags.MTIM, Fstflags.MTIM_NOW, mtim, (s) => s.mtimeNs)
  ]
}

/** lstat (bigint) of a host path, or null when nothing is there. */
export function lstatOrNull (path: string): BigIntStats | null {
  try {
    return lstatSync(path, { bigint: true })
  } catch (err) {
    if (typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT') return null
    throw err
  }
}
