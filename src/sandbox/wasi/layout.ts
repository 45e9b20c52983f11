// Struct layouts of wasi_snapshot_preview1 (sizes, offsets, alignment as computed from
// typenames.witx for wasm32) and the functions that read/write them in guest memory.
// Structs are zeroed before being written so padding never carries stale guest bytes.
import type { GuestMemory } from './memory'

/** `filestat`: 64 bytes, align 8. */
export const FILESTAT = {
  size: 64, dev: 0, ino: 8, filetype: 16, nlink: 24, fileSize: 32, atim: 40, mtim: 48, ctim: 56
} as const

/** `fdstat`: 24 bytes, align 8. */
export const FDSTAT = { size: 24, filetype: 0, flags: 2, rightsBase: 8, rightsInheriting: 16 } as const

/** `prestat`: 8 bytes, align 4 (u8 tag, then `prestat_dir.pr_name_len` at 4). */
export const PRESTAT = { size: 8, tag: 0, nameLen: 4 } as const

/** `dirent`: a 24-byte header (align 8) followed by `d_namlen` bytes of name. */
export const DIRENT = { size: 24, next: 0, ino: 8, namlen: 16, type: 20 } as const

/** `iovec` / `ciovec`: 8 bytes, align 4. */
export const IOVEC = { size: 8, buf: 0, bufLen: 4 } as const

/**
 * `subscription`: 48 bytes, align 8. The union `subscription_u` starts at 8 with its u8 tag;
 * its payload is 8-aligned, so it starts at 16. Clock payload: id u32, timeout u64,
 * precision u64, flags u16. fd payload: file_descriptor u32.
 */
export const SUBSCRIPTION = {
  size: 48,
  userdata: 0,
  tag: 8,
  clockId: 16,
  clockTimeout: 24,
  clockPrecision: 32,
  clockFlags: 40,
  fd: 16
} as const

/** `event`: 32 bytes, align 8; `event_fd_readwrite` (nbytes u64, flags u16) at 16. */
export const EVENT = { size: 32, userdata: 0, error: 8, type: 10, nbytes: 16, flags: 24 } as const

/** The fields of a `filestat`, host-side. */
export interface Filestat {
  dev: bigint
  ino: bigint
  filetype: number
  nlink: bigint
  size: bigint
  atim: bigint
  mtim: bigint
  ctim: bigint
}

/** Writes a `filestat` at `ptr`. */
export function writeFilestat (mem: GuestMemory, ptr: number, st: Filestat): void {
  mem.zero(ptr, FILESTAT.size)
  mem.setU64(ptr + FILESTAT.dev, st.dev)
  mem.setU64(ptr + FILESTAT.ino, st.ino)
  mem.setU8(ptr + FILESTAT.filetype, st.filetype)
  mem.setU64(ptr + FILESTAT.nlink, st.nlink)
  mem.setU64(ptr + FILESTAT.fileSize, st.size)
  mem.setU64(ptr + FILESTAT.atim, st.atim)
  mem.setU64(ptr + FILESTAT.mtim, st.mtim)
  mem.setU64(ptr + FILESTAT.ctim, st.ctim)
}

/** The fields of an `fdstat`, host-side. */
export interface Fdstat {
  filetype: number
  flags: number
  rightsBase: bigint
  rightsInheriting: bigint
}

/** Writes an `fdstat` at `ptr`. */
export function writeFdstat (mem: GuestMemory, ptr: number, st: Fdstat): void {
  mem.zero(ptr, FDSTAT.size)
  mem.setU8(ptr + FDSTAT.filetype, st.filetype)
  mem.setU16(ptr + FDSTAT.flags, st.flags)
  mem.setU64(ptr + FDSTAT.rightsBase, st.rightsBase)
  mem.setU64(ptr + FDSTAT.rightsInheriting, st.rightsInheriting)
}

/** Writes a `prestat` of type `dir` at `ptr`. */
export function writePrestatDir (mem: GuestMemory, ptr: number, nameLen: number): void {
  mem.zero(ptr, PRESTAT.size)
  mem.setU8(ptr + PRESTAT.tag, 0)
  mem.setU32(ptr + PRESTAT.nameLen, nameLen)
}

/** Encodes one dirent (header + name) host-side, so a truncated copy is a plain slice. */
export function encodeDirent (next: bigint, ino: bigint, filetype: number, name: Uint8Array): Uint8Array {
  const out = new Uint8Array(DIRENT.size + name.byteLength)
  const view = new DataView(out.buffer)
  view.setBigUint64(DIRENT.next, next, true)
  view.setBigUint64(DIRENT.ino, BigInt.asUintN(64, ino), true)
  view.setUint32(DIRENT.namlen, name.byteLength, true)
  view.setUint8(DIRENT.type, filetype)
  out.set(name, DIRENT.size)
  return out
}

/** A decoded `subscription`. */
export type Subscription =
  | { userdata: bigint, type: 0, clockId: number, timeout: bigint, precision: bigint, flags: number }
  | { userdata: bigint, type: 1 | 2, fd: number }
  | { userdata: bigint, type: 'invalid' }

/** Reads the `subscription` at `ptr`. */
export function readSubscription (mem: GuestMemory, ptr: number): Subscription {
  mem.check(ptr, SUBSCRIPTION.size)
  const userdata = mem.getU64(ptr + SUBSCRIPTION.userdata)
  const tag = mem.getU8(ptr + SUBSCRIPTION.tag)
  if (tag === 0) {
    return {
      userdata,
      type: 0,
      clockId: mem.getU32(ptr + SUBSCRIPTION.clockId),
      timeout: mem.getU64(ptr + SUBSCRIPTION.clockTimeout),
      precision: mem.getU64(ptr + SUBSCRIPTION.clockPrecision),
      flags: mem.getU16(ptr + SUBSCRIPTION.clockFlags)
    }
  }
  if (tag === 1 || tag === 2) return { userdata, type: tag, fd: mem.getU32(ptr + SUBSCRIPTION.fd) }
  return { userdata, type: 'invalid' }
}

/** An `event` to report. */
export interface Event {
  userdata: bigint
  error: number
  type: number
  nbytes: bigint
  flags: number
}

/** Writes an `event` at `ptr`. */
export function writeEvent (mem: GuestMemory, ptr: number, ev: Event): void {
  mem.zero(ptr, EVENT.size)
  mem.setU64(ptr + EVENT.userdata, ev.userdata)
  mem.setU16(ptr + EVENT.error, ev.error)
  mem.setU8(ptr + EVENT.type, ev.type)
  mem.setU64(ptr + EVENT.nbytes, ev.nbytes)
  mem.setU16(ptr + EVENT.flags, ev.flags)
}
