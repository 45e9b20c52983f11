// MemoryPool hands out only memories a fresh one could not be told from: zeroed, and still at
// their initial size (a memory cannot shrink; a grown one would leave the next call less
// headroom under the same maximum).
import { MemoryPool } from '../../src/sandbox/memory-pool'

describe('MemoryPool keeps only memories a fresh one could not be told from', () => {
  test('a memory that grew at all is dropped: the next call gets its full headroom', () => {
    const pool = new MemoryPool()
    const m = pool.acquire(1, 4)
    m.grow(1)
    pool.release(m, 1, 4)
    const next = pool.acquire(1, 4)
    expect(next).not.toBe(m)
    expect(next.buffer.byteLength).toBe(65536)
    expect(next.grow(3)).toBe(1)
  })
})
