import { callJsonEntry, decodeReturn, isJson, writeInput } from '../../src/sandbox/abi-json'
import { GuestError } from '../../src/sandbox/guest-error'
import { MemoryPool } from '../../src/sandbox/memory-pool'

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s)

describe('json ABI', () => {
  test('decodes multi-value and packed i64 returns', () => {
    expect(decodeReturn([16, 5])).toEqual({ ptr: 16, len: 5 })
    expect(decodeReturn((16n << 32n) | 5n)).toEqual({ ptr: 16, len: 5 })
    expect(decodeReturn(-1n)).toEqual({ ptr: 0xffffffff, len: 0xffffffff })
    expect(() => decodeReturn(7)).toThrow(GuestError)
  })

  test('writes input through alloc, or past the old end by growing', () => {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 3 })
    expect(writeInput({ alloc: () => 100 }, memory, bytes('{"a":1}'))).toBe(100)
    expect(new TextDecoder().decode(new Uint8Array(memory.buffer, 100, 7))).toBe('{"a":1}')
    expect(writeInput({}, memory, bytes('[]'))).toBe(65536)
    expect(memory.buffer.byteLength).toBe(2 * 65536)
  })

  test('an alloc pointer outside memory, or input past the memory limit, are refused', () => {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1 })
    expect(() => writeInput({ alloc: () => 65535 }, memory, bytes('[1]'))).toThrow(/outside/)
    expect(() => writeInput({}, memory, bytes('[1]'))).toThrow(expect.objectContaining({ code: 'PAYLOAD_TOO_LARGE' }))
  })

  test('checks output size before bounds, and JSON validity', () => {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1 })
    new Uint8Array(memory.buffer).set(bytes('{"ok":true}'), 0)
    const entry = (ptr: number, len: number) => ({ alloc: () => 1000, execute: () => [ptr, len] })
    expect(new TextDecoder().decode(callJsonEntry(entry(0, 11), memory, 'execute', bytes('{}'), 11))).toBe('{"ok":true}')
    expect(() => callJsonEntry(entry(0, 11), memory, 'execute', bytes('{}'), 10)).toThrow(/over the 10-byte limit/)
    expect(() => callJsonEntry(entry(65530, 10), memory, 'execute', bytes('{}'), 100)).toThrow(/outside/)
    expect(() => callJsonEntry(entry(1, 5), memory, 'execute', bytes('{}'), 100)).toThrow(/not valid JSON/)
    expect(() => callJsonEntry(entry(0, 11), memory, 'missing', bytes('{}'), 100)).toThrow(expect.objectContaining({ code: 'FUNCTION_NOT_FOUND' }))
  })

  test('isJson accepts JSON text only (UTF-8)', () => {
    expect(isJson(bytes('{"a":[1,2,"é"]}'))).toBe(true)
    expect(isJson(bytes('{"a":'))).toBe(false)
    expect(isJson(new Uint8Array([0x22, 0xff, 0x22]))).toBe(false)
    expect(isJson(new Uint8Array(0))).toBe(false)
  })
})

describe('MemoryPool', () => {
  test('recycles memories only after zeroing them', async () => {
    const pool = new MemoryPool()
    const m = pool.acquire(1, 2)
    new Uint8Array(m.buffer).fill(7)
    pool.release(m, 1, 2)
    await new Promise(resolve => setImmediate(resolve))
    const again = pool.acquire(1, 2)
    expect(again).toBe(m)
    expect(new Uint8Array(again.buffer).every(b => b === 0)).toBe(true)
    expect(pool.stats).toEqual({ fresh: 1, reused: 1 })
  })

  test('a dirty memory taken before the scrub ran is zeroed on the spot', () => {
    const pool = new MemoryPool()
    const m = pool.acquire(1, 1)
    new Uint8Array(m.buffer)[100] = 1
    pool.release(m, 1, 1)
    expect(new Uint8Array(pool.acquire(1, 1).buffer)[100]).toBe(0)
  })

  test('a memory that grew far past its initial size is dropped, shapes do not mix', () => {
    const pool = new MemoryPool()
    const m = pool.acquire(1, 200)
    m.grow(100)
    pool.release(m, 1, 200)
    expect(pool.acquire(1, 200)).not.toBe(m)
    const n = pool.acquire(1, 2)
    pool.release(n, 1, 2)
    expect(pool.acquire(1, 3)).not.toBe(n)
  })
})
