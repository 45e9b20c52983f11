// What a guest fd can be. The base class denies everything (the errno POSIX gives for that
// kind of misuse, or NOTSUP); each kind overrides only what it really supports and checks
// its own rights. Stdio kinds live here: they are in-memory and never a host fd.
import { FDFLAGS_ALL, Filetype, Rights, SINK_RIGHTS, STDIN_RIGHTS } from './constants'
import { Errno } from './errno'
import { fail, WasiError } from './errors'
import type { Fdstat, Filestat } from './layout'
import type { Sink } from './sinks'
import type { ExactTimes } from './times'
import { SinkFull } from './sinks'
import { syntheticFilestat } from './stat'

/** Readiness for poll_oneoff. */
export interface Readiness {
  nbytes: bigint
  hangup: boolean
}

/** One directory entry as fd_readdir reports it. */
export interface DirEntry {
  name: Uint8Array
  ino: bigint
  filetype: number
}

/** A guest file descriptor. */
export abstract class Descriptor {
  abstract readonly filetype: number
  rightsBase: bigint
  rightsInheriting: bigint
  fdflags: number

  constructor (rightsBase: bigint, rightsInheriting: bigint, fdflags = 0) {
    this.rightsBase = rightsBase
    this.rightsInheriting = rightsInheriting
    this.fdflags = fdflags
  }

  /** Throws ENOTCAPABLE unless the fd holds every right in `rights`. */
  need (rights: bigint): void {
    if ((this.rightsBase & rights) !== rights) fail(Errno.NOTCAPABLE)
  }

  fdstat (): Fdstat {
    return { filetype: this.filetype, flags: this.fdflags, rightsBase: this.rightsBase, rightsInheriting: this.rightsInheriting }
  }

  setFlags (flags: number): void {
    this.need(Rights.FD_FDSTAT_SET_FLAGS)
    if ((flags & ~FDFLAGS_ALL) !== 0) fail(Errno.INVAL)
    this.fdflags = flags
  }

  /** Rights can only be dropped, never gained. */
  setRights (base: bigint, inheriting: bigint): void {
    if ((base & ~this.rightsBase) !== 0n || (inheriting & ~this.rightsInheriting) !== 0n) fail(Errno.NOTCAPABLE)
    this.rightsBase = base
    this.rightsInheriting = inheriting
  }

  read (_into: Uint8Array[]): number { return fail(Errno.BADF) }
  write (_from: Uint8Array[]): number { return fail(Errno.BADF) }
  pread (_into: Uint8Array[], _offset: bigint): number { return fail(Errno.SPIPE) }
  pwrite (_from: Uint8Array[], _offset: bigint): number { return fail(Errno.SPIPE) }
  seek (_offset: bigint, _whence: number): bigint { return fail(Errno.SPIPE) }
  tell (): bigint { return fail(Errno.SPIPE) }
  filestat (): Filestat { return syntheticFilestat(this.filetype) }
  setSize (_size: bigint): void { fail(Errno.INVAL) }
  setTimes (_atim: bigint, _mtim: bigint, _flags: number, _times: ExactTimes): void { fail(Errno.NOTSUP) }
  allocate (_offset: bigint, _len: bigint): void { fail(Errno.SPIPE) }
  advise (_offset: bigint, _len: bigint, _advice: number): void { fail(Errno.SPIPE) }
  sync (): void { fail(Errno.INVAL) }
  datasync (): void { fail(Errno.INVAL) }
  readdir (_cookie: bigint): readonly DirEntry[] { return fail(Errno.NOTDIR) }
  pollRead (): Readiness { return fail(Errno.BADF) }
  pollWrite (): Readiness { return fail(Errno.BADF) }
  /** Releases host resources; the table calls it exactly once. */
  close (): void {}
}

/** fd 0: reads the request body from memory; EOF at its end; never blocks. */
export class StdinFd extends Descriptor {
  // A stream, neither a tty (CHARACTER_DEVICE would make libc line-buffer) nor a file.
  readonly filetype = Filetype.UNKNOWN
  readonly #data: Uint8Array
  #pos = 0

  constructor (data: Uint8Array) {
    super(STDIN_RIGHTS, 0n)
    this.#data = data
  }

  override read (into: Uint8Array[]): number {
    this.need(Rights.FD_READ)
    let total = 0
    for (const view of into) {
      const n = Math.min(view.byteLength, this.#data.byteLength - this.#pos)
      view.set(this.#data.subarray(this.#pos, this.#pos + n))
      this.#pos += n
      total += n
      if (n < view.byteLength) break
    }
    return total
  }

  override pollRead (): Readiness {
    const left = this.#data.byteLength - this.#pos
    return { nbytes: BigInt(left), hangup: left === 0 }
  }
}

/** fd 1 and 2: write into an in-memory sink. */
export class SinkFd extends Descriptor {
  readonly filetype = Filetype.UNKNOWN
  readonly #sink: Sink

  constructor (sink: Sink) {
    super(SINK_RIGHTS, 0n)
    this.#sink = sink
  }

  override write (from: Uint8Array[]): number {
    this.need(Rights.FD_WRITE)
    try {
      return this.#sink.write(from)
    } catch (err) {
      // Past stdout's bound: what RLIMIT_FSIZE gives a POSIX process.
      if (err instanceof SinkFull) throw new WasiError(Errno.FBIG)
      throw err
    }
  }

  override pollWrite (): Readiness {
    return { nbytes: BigInt(this.#sink.capacity), hangup: false }
  }
}
