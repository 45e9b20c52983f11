// A directory fd: a preopen or a directory opened by path_open. It is the root of every path
// resolved relative to it (like a cap-std Dir: `..` cannot climb above it) and carries the
// volume policy of the preopen it came from.
import { fdatasyncSync, fstatSync, fsyncSync, futimesSync, lstatSync, readdirSync } from 'node:fs'
import { Filetype, Rights } from './constants'
import { Descriptor } from './descriptor'
import type { DirEntry } from './descriptor'
import { Errno } from './errno'
import { fail } from './errors'
import type { HostFds } from './host-fds'
import type { DirNode } from './jail'
import type { Filestat } from './layout'
import { encode } from './memory'
import { filetypeOf, toFilestat } from './stat'
import type { ExactTimes } from './times'
import type { Volume } from './volume'

/** A guest fd for a host directory. */
export class DirFd extends Descriptor {
  readonly filetype = Filetype.DIRECTORY
  /** How paths relative to this fd are named on the host. */
  readonly node: DirNode
  readonly volume: Volume
  /** The guest path of a preopen (`fd_prestat_*`); undefined for opened directories. */
  readonly preopenName: string | undefined
  readonly #hostFds: HostFds
  readonly #fd: number
  #listing: DirEntry[] | undefined

  constructor (
    hostFds: HostFds, fd: number, node: DirNode, volume: Volume,
    rightsBase: bigint, rightsInheriting: bigint, preopenName?: string
  ) {
    super(rightsBase, rightsInheriting)
    this.#hostFds = hostFds
    this.#fd = fd
    this.node = node
    this.volume = volume
    this.preopenName = preopenName
  }

  override read (): number { return fail(Errno.ISDIR) }
  override write (): number { return fail(Errno.ISDIR) }
  override pread (): number { return fail(Errno.ISDIR) }
  override pwrite (): number { return fail(Errno.ISDIR) }
  override seek (): bigint { return fail(Errno.BADF) }
  override tell (): bigint { return fail(Errno.BADF) }
  override setSize (): void { fail(Errno.ISDIR) }
  override allocate (): void { fail(Errno.ISDIR) }
  override advise (): void { fail(Errno.BADF) }

  override filestat (): Filestat {
    this.need(Rights.FD_FILESTAT_GET)
    return toFilestat(fstatSync(this.#fd, { bigint: true }))
  }

  override setTimes (atim: bigint, mtim: bigint, flags: number, times: ExactTimes): void {
    this.need(Rights.FD_FILESTAT_SET_TIMES)
    this.volume.assertWritable()
    times.set(atim, mtim, flags, () => fstatSync(this.#fd, { bigint: true }), (a, m) => futimesSync(this.#fd, a, m))
  }

  override sync (): void {
    this.need(Rights.FD_SYNC)
    fsyncSync(this.#fd)
  }

  override datasync (): void {
    this.need(Rights.FD_DATASYNC)
    fdatasyncSync(this.#fd)
  }

  /**
   * The entries from index `cookie` on. The listing is taken at cookie 0 and kept while the
   * guest pages through it, so cookies stay stable and a large directory is read once, not
   * once per buffer. It starts with `.` and `..` as wasmtime's does, both with this
   * directory's inode: `..` of a preopen is a host directory outside it, whose inode the
   * guest has no business knowing.
   */
  override readdir (cookie: bigint): readonly DirEntry[] {
    this.need(Rights.FD_READDIR)
    if (cookie === 0n || this.#listing === undefined) this.#listing = this.#list()
    if (cookie >= BigInt(this.#listing.length)) return []
    return this.#listing.slice(Number(cookie))
  }

  #list (): DirEntry[] {
    const names = readdirSync(this.node.path, { withFileTypes: true })
    names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    const self = fstatSync(this.#fd, { bigint: true }).ino
    const dots: DirEntry[] = [
      { name: encode('.'), ino: self, filetype: Filetype.DIRECTORY },
      { name: encode('..'), ino: self, filetype: Filetype.DIRECTORY }
    ]
    return dots.concat(names.map((dirent) => {
      let ino = 0n
      let filetype = filetypeOf(dirent)
      try {
        const st = lstatSync(this.node.child(dirent.name), { bigint: true })
        ino = st.ino
        filetype = filetypeOf(st)
      } catch {
        // Removed since the listing: report it with what readdir knew.
      }
      return { name: encode(dirent.name), ino, filetype }
    }))
  }

  override pollRead (): never { return fail(Errno.BADF) }
  override pollWrite (): never { return fail(Errno.BADF) }

  override close (): void {
    this.#hostFds.close(this.#fd)
  }
}
