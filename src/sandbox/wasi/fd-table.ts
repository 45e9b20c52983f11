// The guest's fd numbers. Only this table maps numbers to descriptors: closing or renumbering
// fd 0-2 changes the guest's view and nothing else (stdio are in-memory descriptors, the
// host's own stdout is never reachable from here).
import { Errno } from './errno'
import { fail } from './errors'
import type { Descriptor } from './descriptor'

/** Most fds a guest may hold open at once (EMFILE past it): bounds host fds per call. */
export const MAX_FDS = 512

/** The fd table of one WASI instance. */
export class FdTable {
  readonly #entries = new Map<number, Descriptor>()

  /** Number of open guest fds. */
  get size (): number {
    return this.#entries.size
  }

  /** The descriptor at `fd`, or EBADF. */
  get (fd: number): Descriptor {
    return this.#entries.get(fd) ?? fail(Errno.BADF)
  }

  /** Whether `fd` is open. */
  has (fd: number): boolean {
    return this.#entries.has(fd)
  }

  /** Puts `desc` at a given number (set-up: stdio, preopens). */
  set (fd: number, desc: Descriptor): void {
    this.#entries.set(fd, desc)
  }

  /** Stores `desc` at the lowest free number (POSIX order). EMFILE when full. */
  add (desc: Descriptor): number {
    if (this.#entries.size >= MAX_FDS) fail(Errno.MFILE)
    let fd = 0
    while (this.#entries.has(fd)) fd++
    this.#entries.set(fd, desc)
    return fd
  }

  /** Closes `fd`: the descriptor releases its host resources. */
  close (fd: number): void {
    const desc = this.get(fd)
    this.#entries.delete(fd)
    desc.close()
  }

  /** Moves `from` onto `to`, closing what `to` held. Both must be open (EBADF otherwise). */
  renumber (from: number, to: number): void {
    const desc = this.get(from)
    const old = this.get(to)
    if (from === to) return
    this.#entries.set(to, desc)
    this.#entries.delete(from)
    old.close()
  }

  /** Closes every fd (the instance's close). */
  closeAll (): void {
    const all = [...this.#entries.values()]
    this.#entries.clear()
    for (const desc of all) {
      try {
        desc.close()
      } catch {
        // Keep closing the rest; HostFds.closeAll is the backstop anyway.
      }
    }
  }
}
