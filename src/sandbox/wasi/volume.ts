// A preopened host directory as a policy object: is it writable, and how much may the guest
// still store in it. The quota is per host directory (a plugin's private volume) and counts
// file bytes (st_size, once per inode; a symlink's is its target's length) plus, when entries are capped, ENTRY_BYTES for every
// name (file, directory, symlink): names and directories take disk space too, and without a
// price a guest could fill the disk's inodes under any byte quota.
//
// The account lives in a SharedArrayBuffer (the quota block): the main thread keeps one per
// volume and hands it to every call, so calls of one plugin running at once in different
// worker threads draw on one account. Growth is reserved with compare-exchange BEFORE the
// bytes are written, so two calls can never both pass the check for the last free bytes.
import { Errno } from './errno'
import { fail } from './errors'
import { measureVolume, USAGE_WALK_LIMIT } from './volume-usage'
import type { Usage } from './volume-usage'

export { USAGE_WALK_LIMIT } from './volume-usage'
export type { Usage } from './volume-usage'

/** What each directory entry costs against the byte quota when entries are capped. */
export const ENTRY_BYTES = 4096
/** Most entries (files, directories, symlinks) a `@plugin` volume may hold. */
export const VOLUME_ENTRIES = 10_000

// The quota block: Int32 [FLAGS, ENTRIES, ENTRY_LIMIT (-1: none), ENTRY_COST], then at byte
// 16 a BigInt64 of the bytes charged (file bytes + entries x ENTRY_COST).
const FLAGS = 0
const ENTRIES = 1
const ENTRY_LIMIT = 2
const ENTRY_COST = 3
const BYTES_OFFSET = 16
const BLOCK_BYTES = 24
const RETIRED = 1
/** "Too large to measure": full under any quota, and far from overflowing. */
const FULL = 2n ** 62n

/**
 * A quota block for a volume that holds `usage`. With `entryLimit`, entries are capped at it
 * and each costs ENTRY_BYTES; without, only file bytes count.
 */
export function createQuotaBlock (usage: Usage, entryLimit?: number): SharedArrayBuffer {
  const block = new SharedArrayBuffer(BLOCK_BYTES)
  const ints = new Int32Array(block, 0, 4)
  const cost = entryLimit === undefined ? 0 : ENTRY_BYTES
  ints[ENTRIES] = usage.entries
  ints[ENTRY_LIMIT] = entryLimit ?? -1
  ints[ENTRY_COST] = cost
  const bytes = usage.bytes + usage.entries * cost
  new BigInt64Array(block, BYTES_OFFSET, 1)[0] = Number.isFinite(bytes) ? BigInt(bytes) : FULL
  return block
}

/** Marks a volume deleted: every later write of every call holding its block is EROFS. */
export function retireQuotaBlock (block: SharedArrayBuffer): void {
  Atomics.or(new Int32Array(block, 0, 4), FLAGS, RETIRED)
}

/** Adds `delta` to `view[index]` atomically, never going below 0. */
function addInt (view: Int32Array, index: number, delta: number): void {
  for (;;) {
    const cur = Atomics.load(view, index)
    if (Atomics.compareExchange(view, index, cur, Math.max(0, cur + delta)) === cur) return
  }
}

function addBig (view: BigInt64Array, index: number, delta: bigint): void {
  for (;;) {
    const cur = Atomics.load(view, index)
    const next = cur + delta
    if (Atomics.compareExchange(view, index, cur, next < 0n ? 0n : next) === cur) return
  }
}

/** The account of one host directory, shared through its quota block. */
export class Quota {
  readonly limit: number
  readonly #ints: Int32Array
  readonly #bytes: BigInt64Array

  /** `used`: bytes already used (a private account), or a quota block shared with other calls. */
  constructor (limit: number, used: number | SharedArrayBuffer) {
    this.limit = limit
    const block = typeof used === 'number' ? createQuotaBlock({ bytes: used, entries: 0 }) : used
    this.#ints = new Int32Array(block, 0, 4)
    this.#bytes = new BigInt64Array(block, BYTES_OFFSET, 1)
  }

  /** Bytes counted as used (entries included when they are charged). */
  get used (): number {
    return Number(Atomics.load(this.#bytes, 0))
  }

  /** Entries counted. */
  get entries (): number {
    return Atomics.load(this.#ints, ENTRIES)
  }

  /** True once the volume was deleted. */
  get retired (): boolean {
    return (Atomics.load(this.#ints, FLAGS) & RETIRED) !== 0
  }

  /** Throws EDQUOT unless `bytes` more fit. Records nothing: see `reserve`. */
  check (bytes: number): void {
    if (bytes > 0 && this.used + bytes > this.limit) fail(Errno.DQUOT)
  }

  /** Records `bytes` if they fit, atomically (EDQUOT otherwise). Returns what was recorded. */
  reserve (bytes: number): number {
    if (bytes <= 0) return 0
    const want = BigInt(bytes)
    const limit = BigInt(this.limit)
    for (;;) {
      const cur = Atomics.load(this.#bytes, 0)
      if (cur + want > limit) fail(Errno.DQUOT)
      if (Atomics.compareExchange(this.#bytes, 0, cur, cur + want) === cur) return bytes
    }
  }

  /** Records a change of usage (negative when bytes were freed). */
  add (delta: number): void {
    if (delta !== 0) addBig(this.#bytes, 0, BigInt(delta))
  }

  /** Records one new name, within the entry cap and its byte cost (EDQUOT otherwise). */
  addEntry (): void {
    const limit = Atomics.load(this.#ints, ENTRY_LIMIT)
    for (;;) {
      const cur = Atomics.load(this.#ints, ENTRIES)
      if (limit >= 0 && cur >= limit) fail(Errno.DQUOT)
      if (Atomics.compareExchange(this.#ints, ENTRIES, cur, cur + 1) === cur) break
    }
    try {
      this.reserve(Atomics.load(this.#ints, ENTRY_COST))
    } catch (err) {
      addInt(this.#ints, ENTRIES, -1)
      throw err
    }
  }

  /** Records one name gone. */
  removeEntry (): void {
    addInt(this.#ints, ENTRIES, -1)
    this.add(-Atomics.load(this.#ints, ENTRY_COST))
  }
}

/**
 * Measures the bytes stored under `root`, without following symlinks and counting a file
 * with several hard links once. The walk is bounded: a tree with more than `limit` entries
 * is reported as `Infinity` (treated as full) rather than making every call slow.
 */
export function measureUsage (root: string, limit = USAGE_WALK_LIMIT): number {
  return measureVolume(root, limit).bytes
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

  /**
   * Throws EROFS when the volume is read-only, or was deleted while this call ran (its
   * directory is being removed: nothing may be added to it). Called before any side effect.
   */
  assertWritable (): void {
    if (this.readOnly || this.quota?.retired === true) fail(Errno.ROFS)
  }

  /** Throws EDQUOT unless the volume can take `bytes` more. Records nothing. */
  checkGrowth (bytes: number): void {
    this.quota?.check(bytes)
  }

  /**
   * Records `bytes` of growth before it happens, atomically across calls (EDQUOT if they do
   * not fit). Settle with `account(actual - reserved)` once the change is made.
   */
  reserve (bytes: number): number {
    return this.quota?.reserve(bytes) ?? 0
  }

  /** Records bytes stored (positive) or freed (negative). */
  account (delta: number): void {
    if (delta !== 0) this.quota?.add(delta)
  }

  /** Records a name about to be made (EDQUOT past the entry cap or the bytes it costs). */
  addEntry (): void {
    this.quota?.addEntry()
  }

  /** Records a name gone (or one that `addEntry` recorded and that was not made after all). */
  removeEntry (): void {
    this.quota?.removeEntry()
  }
}
