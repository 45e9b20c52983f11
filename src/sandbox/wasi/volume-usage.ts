// How much a volume holds: bytes (per inode) and entries (per name), walked through directory
// fds at any depth. A guest can build a tree whose full path is far longer than PATH_MAX by
// making each level through the fd of the one above (20 levels of 250-character names), so
// no walk may name an entry by its path from the root: each directory is opened
// (O_DIRECTORY | O_NOFOLLOW) through `/proc/self/fd/<parent>/<name>`, and the walk climbs
// back through `..` of the fd it holds, checking it lands on the directory it came from. So
// it holds one directory fd at a time, whatever the depth.
//
// The walk is written once, as a generator of file-system operations, and driven two ways:
// synchronously (in a worker, for a volume no one measured: the CLI, tests) and
// asynchronously (on the main thread, which must not block its event loop on a big tree).
import { closeSync, constants, existsSync, fstatSync, lstatSync, openSync, readdirSync } from 'node:fs'
import type { BigIntStats, Dirent } from 'node:fs'
import { lstat, open, readdir } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { join } from 'node:path'

/** What a volume holds. `bytes` is Infinity when the tree was too large to walk. */
export interface Usage {
  bytes: number
  entries: number
}

/** Most entries a usage walk visits before it reports the tree as too large (full). */
export const USAGE_WALK_LIMIT = 50_000

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW | constants.O_NONBLOCK

type Op =
  | { op: 'open', at: number | undefined, name: string }
  | { op: 'list', fd: number }
  | { op: 'lstat', fd: number, name: string }
  | { op: 'fstat', fd: number }
  | { op: 'close', fd: number }

interface Frame { subdirs: string[], dev: bigint, ino: bigint }

const procFds = existsSync('/proc/self/fd')

/**
 * How a driver names an open directory and its entries: through `/proc/self/fd` (any depth),
 * or, without /proc (not Linux), by path (then bounded by PATH_MAX, like the jail's fallback).
 */
class DirNames {
  readonly #paths = new Map<number, string>()

  target (op: { at: number | undefined, name: string }): string {
    return op.at === undefined ? op.name : this.child(op.at, op.name)
  }

  opened (fd: number, path: string): void {
    if (!procFds) this.#paths.set(fd, path)
  }

  closed (fd: number): void {
    this.#paths.delete(fd)
  }

  dir (fd: number): string {
    return procFds ? `/proc/self/fd/${fd}` : this.#paths.get(fd) ?? ''
  }

  child (fd: number, name: string): string {
    return procFds ? `/proc/self/fd/${fd}/${name}` : join(this.dir(fd), name)
  }
}

// The walk. Every value it receives back is the result of the op it yielded.
function * walk (root: string, limit: number): Generator<Op, Usage, unknown> {
  let bytes = 0
  let entries = 0
  const seen = new Set<string>()
  let fd = (yield { op: 'open', at: undefined, name: root }) as number
  const scan = function * (dir: number): Generator<Op, Frame | undefined, unknown> {
    const id = (yield { op: 'fstat', fd: dir }) as BigIntStats
    const frame: Frame = { subdirs: [], dev: id.dev, ino: id.ino }
    for (const entry of (yield { op: 'list', fd: dir }) as Dirent[]) {
      if (++entries > limit) return undefined
      if (entry.isDirectory()) {
        frame.subdirs.push(entry.name)
      } else if (entry.isFile() || entry.isSymbolicLink()) {
        // A symlink's size is its target's length: guests create them (WASI symlinks).
        const st = (yield { op: 'lstat', fd: dir, name: entry.name }) as BigIntStats | undefined
        if (st === undefined) continue
        if (st.nlink > 1n) {
          const key = `${st.dev}:${st.ino}`
          if (seen.has(key)) continue
          seen.add(key)
        }
        bytes += Number(st.size)
      }
    }
    return frame
  }
  const stack: Frame[] = []
  let frame = yield * scan(fd)
  while (frame !== undefined) {
    const next = frame.subdirs.pop()
    if (next !== undefined) {
      const child = (yield { op: 'open', at: fd, name: next }) as number | undefined
      if (child === undefined) continue // gone, or no longer a directory
      yield { op: 'close', fd }
      fd = child
      stack.push(frame)
      frame = yield * scan(fd)
      continue
    }
    const parent = stack.pop()
    if (parent === undefined) break
    const up = (yield { op: 'open', at: fd, name: '..' }) as number | undefined
    if (up === undefined) throw new Error('volume walk: a directory vanished under the walk')
    yield { op: 'close', fd }
    fd = up
    const id = (yield { op: 'fstat', fd }) as BigIntStats
    // `..` of a directory moved away meanwhile is not where the walk came from.
    if (id.dev !== parent.dev || id.ino !== parent.ino) throw new Error('volume walk: the tree changed under the walk')
    frame = parent
  }
  yield { op: 'close', fd }
  return entries > limit ? { bytes: Infinity, entries } : { bytes, entries }
}

const missing = (err: unknown): boolean => {
  const code = (err as NodeJS.ErrnoException).code
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP'
}

/** Measures `root` synchronously (a worker thread; blocks only it). */
export function measureVolume (root: string, limit = USAGE_WALK_LIMIT): Usage {
  const opened = new Set<number>()
  const names = new DirNames()
  const gen = walk(root, limit)
  try {
    let input: unknown
    for (;;) {
      const step = gen.next(input)
      if (step.done === true) return step.value
      const op = step.value
      switch (op.op) {
        case 'open': {
          try {
            const path = names.target(op)
            const fd = openSync(path, DIR_FLAGS)
            opened.add(fd)
            names.opened(fd, path)
            input = fd
          } catch (err) {
            if (op.at === undefined || !missing(err)) throw err
            input = undefined
          }
          break
        }
        case 'list': input = readdirSync(names.dir(op.fd), { withFileTypes: true }); break
        case 'fstat': input = fstatSync(op.fd, { bigint: true }); break
        case 'lstat': {
          try { input = lstatSync(names.child(op.fd, op.name), { bigint: true }) } catch (err) { if (!missing(err)) throw err; input = undefined }
          break
        }
        case 'close': opened.delete(op.fd); names.closed(op.fd); closeSync(op.fd); input = undefined; break
      }
    }
  } finally {
    for (const fd of opened) closeSync(fd)
  }
}

/** Measures `root` without blocking the event loop (the main thread). */
export async function measureVolumeAsync (root: string, limit = USAGE_WALK_LIMIT): Promise<Usage> {
  const opened = new Map<number, FileHandle>()
  const names = new DirNames()
  const gen = walk(root, limit)
  try {
    let input: unknown
    for (;;) {
      const step = gen.next(input)
      if (step.done === true) return step.value
      const op = step.value
      switch (op.op) {
        case 'open': {
          try {
            const path = names.target(op)
            const handle = await open(path, DIR_FLAGS)
            opened.set(handle.fd, handle)
            names.opened(handle.fd, path)
            input = handle.fd
          } catch (err) {
            if (op.at === undefined || !missing(err)) throw err
            input = undefined
          }
          break
        }
        case 'list': input = await readdir(names.dir(op.fd), { withFileTypes: true }); break
        case 'fstat': input = await opened.get(op.fd)?.stat({ bigint: true }); break
        case 'lstat': {
          try { input = await lstat(names.child(op.fd, op.name), { bigint: true }) } catch (err) { if (!missing(err)) throw err; input = undefined }
          break
        }
        case 'close': {
          const handle = opened.get(op.fd)
          opened.delete(op.fd)
          names.closed(op.fd)
          await handle?.close()
          input = undefined
          break
        }
      }
    }
  } finally {
    for (const handle of opened.values()) await handle.close().catch(() => {})
  }
}
