// Admission to worker threads, fair across plugins. Calls wait here, one FIFO per plugin, and
// a free slot goes to the next plugin in round-robin order, so one plugin's flood never sits
// in front of another plugin's call. Each acquire says how many slots its plugin may hold at
// once (the pool gives suspects of runaway code all threads but one).
import { serviceError } from '../errors'

interface Waiter {
  grant: () => void
  timer: NodeJS.Timeout
}

export class FairQueue {
  readonly #slots: number
  /** The slot limit each waiting key asked for last. */
  readonly #limits = new Map<string, number>()
  /** Waiting calls per key; Map order is the round-robin order (a served key moves last). */
  readonly #queues = new Map<string, Waiter[]>()
  readonly #running = new Map<string, number>()
  #busy = 0
  #waiting = 0

  constructor (slots: number) {
    this.#slots = slots
  }

  get waiting (): number {
    return this.#waiting
  }

  /**
   * Resolves when `key` may start one call; rejects with OVERLOADED after `timeoutMs` in the
   * queue. Every resolved acquire must be followed by exactly one release(key).
   */
  async acquire (key: string, timeoutMs: number, maxSlots = this.#slots): Promise<void> {
    const limit = Math.max(1, Math.min(maxSlots, this.#slots))
    this.#limits.set(key, limit)
    if (this.#busy < this.#slots && (this.#running.get(key) ?? 0) < limit && !this.#queues.has(key)) {
      this.#take(key)
      return
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        grant: resolve,
        timer: setTimeout(() => {
          const queue = this.#queues.get(key)
          const i = queue?.indexOf(waiter) ?? -1
          if (queue === undefined || i < 0) return
          queue.splice(i, 1)
          if (queue.length === 0) this.#queues.delete(key)
          this.#waiting--
          reject(serviceError('OVERLOADED', [`no worker was free within ${timeoutMs} ms`], { retryAfterSeconds: 1 }))
        }, timeoutMs)
      }
      const queue = this.#queues.get(key)
      if (queue === undefined) this.#queues.set(key, [waiter]); else queue.push(waiter)
      this.#waiting++
    })
  }

  release (key: string): void {
    const n = (this.#running.get(key) ?? 1) - 1
    if (n === 0) this.#running.delete(key); else this.#running.set(key, n)
    if (n === 0 && !this.#queues.has(key)) this.#limits.delete(key)
    this.#busy--
    this.#dispatch()
  }

  #take (key: string): void {
    this.#busy++
    this.#running.set(key, (this.#running.get(key) ?? 0) + 1)
  }

  #dispatch (): void {
    while (this.#busy < this.#slots) {
      let served: string | undefined
      for (const [key, queue] of this.#queues) {
        if ((this.#running.get(key) ?? 0) >= (this.#limits.get(key) ?? this.#slots)) continue
        const waiter = queue.shift()
        if (waiter === undefined) continue
        clearTimeout(waiter.timer)
        this.#waiting--
        this.#take(key)
        waiter.grant()
        served = key
        break
      }
      if (served === undefined) return
      const rest = this.#queues.get(served)
      this.#queues.delete(served)
      if (rest !== undefined && rest.length > 0) this.#queues.set(served, rest) // to the back of the line
    }
  }
}
