// Host stat results as WASI filestats.
import { lstatSync } from 'node:fs'
import type { BigIntStats } from 'node:fs'
import { Filetype } from './constants'
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

/** lstat (bigint) of a host path, or null when nothing is there. */
export function lstatOrNull (path: string): BigIntStats | null {
  try {
    return lstatSync(path, { bigint: true })
  } catch (err) {
    if (typeof err === 'object' && err !== null && 'code' in err && err.code === 'ENOENT') return null
    throw err
  }
}
