import { Breaker } from '../../src/workers/breaker'
import { FairQueue } from '../../src/workers/fair-queue'

describe('FairQueue', () => {
  test('grants free slots at once, then round-robin across keys, FIFO within a key', async () => {
    const q = new FairQueue(1)
    await q.acquire('a', 1000) // holds the only slot
    const order: string[] = []
    const waits = [['a', 1], ['a', 2], ['a', 3], ['b', 1], ['c', 1]].map(async ([k, n]) => {
      await q.acquire(String(k), 1000)
      order.push(`${String(k)}${String(n)}`)
    })
    expect(q.waiting).toBe(5)
    for (let i = 0; i < 5; i++) {
      q.release(order.length === 0 ? 'a' : (order[order.length - 1] ?? 'a').slice(0, 1))
      await new Promise(resolve => setImmediate(resolve))
    }
    await Promise.all(waits)
    // a's flood does not keep b and c behind it
    expect(order).toEqual(['a1', 'b1', 'c1', 'a2', 'a3'])
  })

  test('a key limited to fewer slots leaves the rest to others', async () => {
    const q = new FairQueue(2)
    await q.acquire('runaway', 1000, 1)
    let second = false
    const p = q.acquire('runaway', 1000, 1).then(() => { second = true })
    await q.acquire('healthy', 1000) // the second slot is not given to runaway
    await new Promise(resolve => setImmediate(resolve))
    expect(second).toBe(false)
    q.release('runaway')
    await p
    expect(second).toBe(true)
  })

  test('a wait past its timeout is OVERLOADED and leaves the queue', async () => {
    const q = new FairQueue(1)
    await q.acquire('a', 1000)
    await expect(q.acquire('b', 30)).rejects.toMatchObject({ code: 'OVERLOADED' })
    expect(q.waiting).toBe(0)
    q.release('a')
    await q.acquire('b', 30)
  })
})

describe('Breaker', () => {
  const options = { threshold: 3, cooldownMs: 1000, maxCooldownMs: 4000 }

  test('opens after `threshold` kills in a row, lets one probe through after the cool-down', () => {
    const b = new Breaker(options)
    for (let i = 0; i < 2; i++) b.record('p', 'deadline', 0)
    expect(b.blockedFor('p', 0)).toBe(0)
    expect(b.suspect('p')).toBe(true)
    b.record('p', 'deadline', 0)
    expect(b.blockedFor('p', 10)).toBe(990)
    expect(b.blockedFor('p', 1000)).toBe(0) // the probe
    expect(b.blockedFor('p', 1001)).toBeGreaterThan(0) // only one probe at a time
    b.record('p', 'deadline', 1100) // the probe ran away too: doubled cool-down
    expect(b.blockedFor('p', 1100)).toBe(2000)
    expect(b.blockedFor('p', 3100)).toBe(0)
    b.record('p', 'ok', 3200) // a good probe closes it
    expect(b.blockedFor('p', 3200)).toBe(0)
    expect(b.suspect('p')).toBe(false)
  })

  test('a success resets the count; cool-downs are capped; reset forgets', () => {
    const b = new Breaker(options)
    b.record('p', 'deadline', 0)
    b.record('p', 'deadline', 0)
    b.record('p', 'ok', 0)
    b.record('p', 'deadline', 0)
    expect(b.blockedFor('p', 0)).toBe(0)
    for (let i = 0; i < 3; i++) b.record('q', 'deadline', 0)
    let now = 0
    for (let i = 0; i < 5; i++) {
      now += 10_000
      expect(b.blockedFor('q', now)).toBe(0)
      b.record('q', 'deadline', now)
    }
    expect(b.blockedFor('q', now)).toBe(4000)
    b.reset('q')
    expect(b.blockedFor('q', now)).toBe(0)
  })
})
