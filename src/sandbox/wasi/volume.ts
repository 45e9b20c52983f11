// A preopened host directory as a policy object: is it writable, and how many bytes may the
// guest still store in it. The byte quota is per host directory (a plugin's private volume),
// counted in file sizes (st_size; a symlink's is its target's length; directories count 0).
import { lstatSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { Errno } from './errno'
import { fail } from './errors'

/** Most directory entries the start-up usage walk visits before giving up. */
export const USAGE_WALK_LIMIT = 50_000

/** Byte accounting of one host directory. */
export class Quota {
  readonly limit: number
  #used: number

  constructor (limit: number, used: number) {
    this.limit = limit
    this.#used = used
  }

  /** Bytes counted as used. */
  get used (): number {
    return this.#used
  }

  /** Throws EDQUOT unless `bytes` more fit. Does not record them: see `add`. */
  check (bytes: number): void {
    if (bytes > 0 && this.#used + bytes > this.limit) fail(Errno.DQUOT)
  }

  /** Records a change of usage (negative when bytes were freed). */
  add (delta: number): void {
    this.#used = Math.max(0, this.#used + delta)
  }
}

/**
 * Measures the bytes stored under `root`, without following symlinks and counting a file
 * with several hard links once. The walk is bounded: a tree with more than `limit` entries
 * is reported as `Infinity` (treated as full) rather than making every call slow.
 */
export function measureUsage (root: string, limit = USAGE_WALK_LIMIT): number {
  let total = 0
  let visited = 0
  const seen = new Set<string>()
  const dirs = [root]
  for (let dir = dirs.pop(); dir !== undefined; dir = dirs.pop()) {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (++visited > limit) return Infinity
      const path = join(dir, entry.name)
      if (entry.isDirectory()) {
        dirs.push(path)
      } else if (entry.isFile() || entry.isSymbolicLink()) {
        const st = lstatSync(path, { bigint: true })
        if (st.nlink > 1n) {
          const key = `${st.dev}:${st.ino}`
          if (seen.has(key)) continue
          seen.add(key)
        }
        total += Number(st.size)
      }
    }
  }
  return total
}

/** One preopen's host directory and what the guest may do in it. */
export class Volume {
  /** Real (symlink-free) host path of the directory. */
  readonly root: string
  readonly readOnly: boolean
  readonly quota: Quota | undefined

  constructor (root: string, readOnly: boolean, quota?: Quota) {
    this.root = root
    this.readOnly = readOnly
    this.quota = quota
  }

  /** Throws EROFS when the volume is read-only. Called before any side effect. */
  assertWritable (): void {
    if (this.readOnly) fail(Errno.ROFS)
  }

  /** Throws EDQUOT unless the volume can take `bytes` more. */
  checkGrowth (bytes: number): void {
    this.quota?.check(bytes)
  }

  /** Records bytes stored (positive) or freed (negative). */
  account (delta: number): void {
    if (delta !== 0) this.quota?.add(delta)
  }
}
