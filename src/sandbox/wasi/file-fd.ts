// A regular file opened by path_open. The guest-visible position is kept here and every
// host read/write is positional, so APPEND, seek and pread/pwrite never depend on host fd
// state. Writes check the volume (read-only, quota) and reserve their growth before touching
// the file. A file unlinked while open keeps its bytes on disk, so it keeps them charged
// until its last fd in the call is closed (OpenFiles).
import { fdatasyncSync, fstatSync, fsyncSync, ftruncateSync, futimesSync, readdirSync, readSync, writeSync } from 'node:fs'
import { Advice, Fdflags, Filetype, Rights, Whence } from './constants'
import { Descriptor } from './descriptor'
import type { Readiness } from './descriptor'
import { Errno } from './errno'
import { fail } from './errors'
import type { HostFds } from './host-fds'
import type { Filestat } from './layout'
import { toFilestat } from './stat'
import type { ExactTimes } from './times'
import type { Volume } from './volume'

/** A guest u64 offset/size as a safe JS number; past 2^53 - 1 it is EFBIG. */
export function toOffset (value: bigint): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) fail(Errno.FBIG)
  return Number(value)
}

/**
 * Whether an fd of this process other than `except` refers to the file `st` (Linux /proc;
 * false without it). A file whose last name is removed keeps its blocks on disk until its
 * last fd closes, in whichever call and thread holds it, so its bytes stay charged until
 * then: otherwise a plugin could unlink and refill the same quota again and again, with all
 * of it on disk at once. Scanned only when the last name of a non-empty file goes.
 */
export function openElsewhere (st: { dev: bigint, ino: bigint }, except = -1): boolean {
  let fds: string[]
  try {
    fds = readdirSync('/proc/self/fd')
  } catch {
    return false
  }
  for (const name of fds) {
    const fd = Number(name)
    if (fd === except) continue
    try {
      const other = fstatSync(fd, { bigint: true })
      if (other.ino === st.ino && other.dev === st.dev) return true
    } catch {
      // Closed meanwhile (or the listing's own fd): not this file.
    }
  }
  return false
}

/** A guest fd for a host regular file. */
export class FileFd extends Descriptor {
  readonly filetype = Filetype.REGULAR_FILE
  readonly volume: Volume
  readonly #hostFds: HostFds
  readonly #fd: number
  #pos = 0

  constructor (hostFds: HostFds, fd: number, volume: Volume, rightsBase: bigint, fdflags: number) {
    super(rightsBase, 0n, fdflags)
    this.#hostFds = hostFds
    this.#fd = fd
    this.volume = volume
  }

  #size (): number {
    return Number(fstatSync(this.#fd, { bigint: true }).size)
  }

  #readAt (into: Uint8Array[], position: number): number {
    let total = 0
    for (const view of into) {
      if (view.byteLength === 0) continue
      const n = readSync(this.#fd, view, 0, view.byteLength, position + total)
      total += n
      if (n < view.byteLength) break
    }
    return total
  }

  // Quota first (the growth is reserved: nothing is written if it does not fit), then the
  // bytes, then the settling of what really changed (a short write on a full disk grows the
  // file less; another call may have grown it meanwhile).
  #writeAt (from: Uint8Array[], position: number): number {
    this.volume.assertWritable()
    let length = 0
    for (const view of from) length += view.byteLength
    if (length === 0) return 0
    const before = this.#size()
    const reserved = this.volume.reserve(position + length - before)
    let total = 0
    try {
      for (const view of from) {
        if (view.byteLength === 0) continue
        const n = writeSync(this.#fd, view, 0, view.byteLength, position + total)
        total += n
        if (n < view.byteLength) break
      }
    } catch (err) {
      if (total === 0) throw err
    } finally {
      this.volume.account(this.#size() - before - reserved)
    }
    if ((this.fdflags & Fdflags.SYNC) !== 0) fsyncSync(this.#fd)
    else if ((this.fdflags & Fdflags.DSYNC) !== 0) fdatasyncSync(this.#fd)
    return total
  }

  override read (into: Uint8Array[]): number {
    this.need(Rights.FD_READ)
    const n = this.#readAt(into, this.#pos)
    this.#pos += n
    return n
  }

  override write (from: Uint8Array[]): number {
    this.need(Rights.FD_WRITE)
    // APPEND: every write lands at the current end, whatever the position was.
    if ((this.fdflags & Fdflags.APPEND) !== 0) this.#pos = this.#size()
    const n = this.#writeAt(from, this.#pos)
    this.#pos += n
    return n
  }

  override pread (into: Uint8Array[], offset: bigint): number {
    this.need(Rights.FD_READ | Rights.FD_SEEK)
    return this.#readAt(into, toOffset(offset))
  }

  override pwrite (from: Uint8Array[], offset: bigint): number {
    this.need(Rights.FD_WRITE | Rights.FD_SEEK)
    return this.#writeAt(from, toOffset(offset))
  }

  override seek (offset: bigint, whence: number): bigint {
    // seek(0, CUR) is how libc implements tell: FD_TELL is enough for it (FD_SEEK too).
    if (offset === 0n && whence === Whence.CUR && (this.rightsBase & Rights.FD_TELL) !== 0n) {
      return BigInt(this.#pos)
    }
    this.need(Rights.FD_SEEK)
    const delta = BigInt.asIntN(64, offset)
    let base: bigint
    if (whence === Whence.SET) base = 0n
    else if (whence === Whence.CUR) base = BigInt(this.#pos)
    else if (whence === Whence.END) base = BigInt(this.#size())
    else return fail(Errno.INVAL)
    const next = base + delta
    if (next < 0n) fail(Errno.INVAL)
    this.#pos = toOffset(next)
    return next
  }

  override tell (): bigint {
    this.need(Rights.FD_TELL)
    return BigInt(this.#pos)
  }

  override filestat (): Filestat {
    this.need(Rights.FD_FILESTAT_GET)
    return toFilestat(fstatSync(this.#fd, { bigint: true }))
  }

  override setSize (size: bigint): void {
    this.need(Rights.FD_FILESTAT_SET_SIZE)
    this.volume.assertWritable()
    this.#resize(toOffset(size))
  }

  #resize (next: number): void {
    const before = this.#size()
    const reserved = this.volume.reserve(next - before)
    try {
      ftruncateSync(this.#fd, next)
    } finally {
      this.volume.account(this.#size() - before - reserved)
    }
  }

  override setTimes (atim: bigint, mtim: bigint, flags: number, times: ExactTimes): void {
    this.need(Rights.FD_FILESTAT_SET_TIMES)
    this.volume.assertWritable()
    times.set(atim, mtim, flags, () => fstatSync(this.#fd, { bigint: true }), (a, m) => futimesSync(this.#fd, a, m))
  }

  override allocate (offset: bigint, len: bigint): void {
    this.need(Rights.FD_ALLOCATE)
    this.volume.assertWritable()
    const end = toOffset(offset + len)
    const before = this.#size()
    // posix_fallocate semantics: the file grows to cover the range, it never shrinks.
    if (end <= before) return
    this.#resize(end)
  }

  override advise (_offset: bigint, _len: bigint, advice: number): void {
    this.need(Rights.FD_ADVISE)
    if (advice < Advice.NORMAL || advice > Advice.NOREUSE) fail(Errno.INVAL)
  }

  override sync (): void {
    this.need(Rights.FD_SYNC)
    fsyncSync(this.#fd)
  }

  override datasync (): void {
    this.need(Rights.FD_DATASYNC)
    fdatasyncSync(this.#fd)
  }

  override pollRead (): Readiness {
    return { nbytes: BigInt(Math.max(0, this.#size() - this.#pos)), hangup: false }
  }

  override pollWrite (): Readiness {
    return { nbytes: 0n, hangup: false }
  }

  // The last fd of a file that has no name left frees its bytes (see openElsewhere).
  override close (): void {
    try {
      const st = fstatSync(this.#fd, { bigint: true })
      if (st.nlink === 0n && st.size > 0n && !openElsewhere(st, this.#fd)) this.volume.account(-Number(st.size))
    } finally {
      this.#hostFds.close(this.#fd)
    }
  }
}
