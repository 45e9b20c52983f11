// The compiled-module cache: bounded by estimated bytes (not a count), LRU, one compile per
// miss however many calls wait for it, and a module over the whole budget still cached.
import { estimateCompiledBytes, ModuleCache } from '../../src/registry/module-cache'

// The smallest valid module: magic + version. Each load returns a fresh copy.
const EMPTY = (): Uint8Array => new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0])

function counting (): { load: () => Promise<Uint8Array>, loads: () => number } {
  let n = 0
  return { load: async () => { n++; return EMPTY() }, loads: () => n }
}

test('estimates grow with functions and code, never below the fixed cost', () => {
  const none = estimateCompiledBytes({ size: 8, functions: 0, codeBytes: 0 })
  expect(none).toBeGreaterThanOrEqual(16 * 1024)
  expect(estimateCompiledBytes({ size: 40_000, functions: 3000, codeBytes: 30_000 })).toBeGreaterThan(280 * 1024)
  expect(estimateCompiledBytes({ size: 400_000, functions: 30_000, codeBytes: 300_000 })).toBeGreaterThan(2.9 * 1024 * 1024)
})

test('concurrent misses of one key share one compile', async () => {
  const hits: boolean[] = []
  let compiles = 0
  const cache = new ModuleCache(1 << 20, { onLookup: h => hits.push(h), onCompile: () => compiles++ })
  const { load, loads } = counting()
  const modules = await Promise.all(Array.from({ length: 16 }, async () => cache.get('a', 1000, load)))
  expect(loads()).toBe(1)
  expect(compiles).toBe(1)
  expect(new Set(modules).size).toBe(1)
  expect(hits.filter(h => !h)).toHaveLength(1)
  expect(hits.filter(h => h)).toHaveLength(15)
})

test('evicts least recently used entries by bytes, not by count', async () => {
  const bytes: number[] = []
  const cache = new ModuleCache(3000, { onBytes: b => bytes.push(b) })
  const { load, loads } = counting()
  // 300 small modules fit a budget a count bound of 64 would have thrashed.
  const small = new ModuleCache(300 * 10, {})
  for (let i = 0; i < 300; i++) await small.get(`s${i}`, 10, load)
  expect(small.size).toBe(300)
  for (let i = 0; i < 300; i++) await small.get(`s${i}`, 10, load)
  expect(loads()).toBe(300)

  await cache.get('a', 1000, load)
  await cache.get('b', 1000, load)
  await cache.get('c', 1000, load)
  await cache.get('a', 1000, load) // a is now the most recent
  await cache.get('d', 1000, load) // over budget: b (least recent) goes
  expect(cache.size).toBe(3)
  expect(cache.bytes).toBe(3000)
  const before = loads()
  await cache.get('a', 1000, load)
  await cache.get('c', 1000, load)
  await cache.get('d', 1000, load)
  expect(loads()).toBe(before)
  await cache.get('b', 1000, load)
  expect(loads()).toBe(before + 1)
  expect(Math.max(...bytes)).toBeLessThanOrEqual(4000)
  expect(bytes.at(-1)).toBe(3000)
})

test('a module larger than the whole budget is still kept until the next one', async () => {
  const cache = new ModuleCache(100)
  const { load, loads } = counting()
  await cache.get('huge', 10_000, load)
  await cache.get('huge', 10_000, load)
  expect(loads()).toBe(1)
  await cache.get('next', 10, load)
  expect(cache.size).toBe(1)
  expect(cache.bytes).toBe(10)
})

test('a failed compile is not cached and frees its bytes', async () => {
  const cache = new ModuleCache(1 << 20)
  await expect(cache.get('bad', 500, async () => new Uint8Array([1, 2, 3]))).rejects.toThrow()
  expect(cache.size).toBe(0)
  expect(cache.bytes).toBe(0)
})
