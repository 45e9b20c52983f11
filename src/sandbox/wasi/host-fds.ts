// Every host file descriptor a WASI instance opens goes through here, so that `close()` can
// close all of them however the call ended (trap, proc_exit, host error), and so that the
// worker can mirror the set into shared memory: if the thread is terminated mid-call, no JS
// runs in it any more and the main thread must close what was left open.
import { closeSync, openSync } from 'node:fs'

/** Called after a host fd is opened (`open` true) and right before it is closed (`open` false). */
export type HostFdListener = (fd: number, open: boolean) => void

/** The set of host fds one instance holds. */
export class HostFds {
  readonly #open = new Set<number>()
  readonly #listener: HostFdListener | undefined

  constructor (listener?: HostFdListener) {
    this.#listener = listener
  }

  /** Number of host fds currently open. */
  get size (): number {
    return this.#open.size
  }

  /** Opens a host file and registers the fd before anything else can fail. */
  open (path: string, flags: number, mode?: number): number {
    const fd = openSync(path, flags, mode)
    this.#open.add(fd)
    try {
      this.#listener?.(fd, true)
    } catch (err) {
      // The listener is how the fd survives a thread termination; without it the fd
      // must not live on.
      this.close(fd)
      throw err
    }
    return fd
  }

  /**
   * Closes a registered fd. The listener hears of it BEFORE the close: if the thread dies in
   * between, the worst case is one leaked fd, never the main thread closing a number that
   * was already reused by someone else.
   */
  close (fd: number): void {
    if (!this.#open.delete(fd)) return
    try {
      this.#listener?.(fd, false)
    } finally {
      try {
        closeSync(fd)
      } catch {
        // EBADF/EIO on close: the fd is gone either way, nothing to recover.
      }
    }
  }

  /** Closes every fd still open. Never throws: it runs in the caller's `finally`. */
  closeAll (): void {
    for (const fd of [...this.#open]) {
      try {
        this.close(fd)
      } catch {
        // Only the listener can throw here, and the fd was closed regardless.
      }
    }
  }
}
