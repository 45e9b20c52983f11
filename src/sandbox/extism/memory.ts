// The Extism kernel's memory, kept on the host: every block (the input, what the plugin
// allocates, config and var values handed to it, HTTP responses) is a Uint8Array of its own,
// found by its offset. Offsets are opaque to plugins (PDKs only add an index to a block's
// offset), so they need not be addresses of one buffer; they start at 1, as 0 means "none".
// Every access is checked against one live block: an offset outside every block, or a u64
// that runs past its block's end, traps the call (KernelFault), never reads host memory.
import { GuestError } from '../guest-error'

/** Thrown by an access outside every live block; becomes PLUGIN_TRAP. */
export class KernelFault extends GuestError {
  constructor (message: string) {
    super('PLUGIN_TRAP', message, { trap: 'out of bounds memory access', message })
  }
}

interface Block {
  readonly offset: number
  bytes: Uint8Array | null
}

/**
 * The blocks of one call. `budget()` says how many bytes the blocks may hold in all right now
 * (the plugin's memory limit less what its own wasm memory holds): an allocation past it
 * fails as the reference kernel's does when memory.grow fails (offset 0).
 */
export class KernelMemory {
  /** Live and freed blocks in offset order (offsets only grow: a bump allocator). */
  readonly #blocks: Block[] = []
  readonly #byOffset = new Map<number, Block>()
  #next = 1
  #live = 0
  /** The block the last access hit: PDKs read and write a block byte by byte. */
  #last: Block | undefined
  readonly #budget: () => number

  constructor (budget: () => number) {
    this.#budget = budget
  }

  /** Bytes held by live blocks. */
  get liveBytes (): number {
    return this.#live
  }

  /** A new zeroed block of `n` bytes, or 0 when `n` is 0 or the budget is spent. */
  alloc (n: number): number {
    if (!Number.isSafeInteger(n) || n <= 0) return 0
    if (this.#live + n > this.#budget()) return 0
    const block: Block = { offset: this.#next, bytes: new Uint8Array(n) }
    this.#next += n
    this.#live += n
    this.#blocks.push(block)
    this.#byOffset.set(block.offset, block)
    return block.offset
  }

  /** A new block holding a copy of `bytes`, or 0 (empty, or over the budget). */
  store (bytes: Uint8Array): number {
    const offset = this.alloc(bytes.length)
    if (offset !== 0) (this.#byOffset.get(offset)?.bytes as Uint8Array).set(bytes)
    return offset
  }

  /** Frees the block starting at `offset`; anything else is ignored (as the kernel does). */
  free (offset: number): void {
    const block = this.#byOffset.get(offset)
    if (block?.bytes == null) return
    this.#live -= block.bytes.length
    block.bytes = null
    if (this.#last === block) this.#last = undefined
  }

  /** Length of the live block starting at `offset`, 0 for any other offset. */
  length (offset: number): number {
    return this.#byOffset.get(offset)?.bytes?.length ?? 0
  }

  /** The bytes of the live block starting at `offset`, or undefined. */
  block (offset: number): Uint8Array | undefined {
    return this.#byOffset.get(offset)?.bytes ?? undefined
  }

  /** The block holding [offset, offset + size), with the index of `offset` in it; else a trap. */
  #at (offset: number, size: number, what: string): { bytes: Uint8Array, index: number } {
    let block = this.#last
    if (block?.bytes == null || offset < block.offset || offset + size > block.offset + block.bytes.length) {
      block = this.#find(offset)
      if (block?.bytes == null || offset + size > block.offset + block.bytes.length) {
        throw new KernelFault(`${what}(${offset}): offset outside every allocated block`)
      }
      this.#last = block
    }
    return { bytes: block.bytes as Uint8Array, index: offset - block.offset }
  }

  /** The block whose range may hold `offset` (binary search over offsets). */
  #find (offset: number): Block | undefined {
    let lo = 0
    let hi = this.#blocks.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const b = this.#blocks[mid] as Block
      if (b.offset <= offset) lo = mid + 1; else hi = mid - 1
    }
    return hi >= 0 ? this.#blocks[hi] : undefined
  }

  loadU8 (offset: number): number {
    const { bytes, index } = this.#at(offset, 1, 'load_u8')
    return bytes[index] as number
  }

  loadU64 (offset: number): bigint {
    const { bytes, index } = this.#at(offset, 8, 'load_u64')
    return new DataView(bytes.buffer, bytes.byteOffset + index, 8).getBigUint64(0, true)
  }

  storeU8 (offset: number, value: number): void {
    const { bytes, index } = this.#at(offset, 1, 'store_u8')
    bytes[index] = value
  }

  storeU64 (offset: number, value: bigint): void {
    const { bytes, index } = this.#at(offset, 8, 'store_u64')
    new DataView(bytes.buffer, bytes.byteOffset + index, 8).setBigUint64(0, value, true)
  }

  /** [offset, offset + length) inside one live block, copied; a trap otherwise. */
  read (offset: number, length: number, what: string): Uint8Array {
    if (length === 0) return new Uint8Array(0)
    const { bytes, index } = this.#at(offset, length, what)
    return bytes.slice(index, index + length)
  }
}
