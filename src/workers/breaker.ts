// A circuit breaker per plugin for deadline kills. Each kill costs a thread restart (tens of
// ms of CPU) and a deadline's worth of a slot, so a plugin that keeps running past its
// deadline is refused for a cool-down instead of being given threads to burn. After the
// cool-down one probe call is let through: success closes the breaker, another kill reopens
// it with a doubled cool-down (capped).

export interface BreakerOptions {
  /** Deadline kills in a row (without a success between) that open the breaker; 0: never. */
  threshold: number
  cooldownMs: number
  maxCooldownMs: number
}

interface State {
  kills: number
  openUntil: number
  cooldownMs: number
  probing: boolean
}

export class Breaker {
  readonly #options: BreakerOptions
  readonly #states = new Map<string, State>()

  constructor (options: BreakerOptions) {
    this.#options = options
  }

  /** Milliseconds until `key` may run again, or 0 when it may run now. */
  blockedFor (key: string, now = Date.now()): number {
    const s = this.#states.get(key)
    if (s === undefined || s.openUntil === 0) return 0
    if (now < s.openUntil) return s.openUntil - now
    if (s.probing) return Math.max(1000, s.cooldownMs) // one probe at a time
    s.probing = true
    return 0
  }

  /** True when `key` was killed at its deadline since its last success: a runaway suspect. */
  suspect (key: string): boolean {
    return this.#states.has(key)
  }

  /** Records how a call of `key` ended. */
  record (key: string, outcome: 'ok' | 'deadline' | 'other', now = Date.now()): void {
    let s = this.#states.get(key)
    if (outcome !== 'deadline') {
      if (s !== undefined && (outcome === 'ok' || s.probing)) this.#states.delete(key)
      return
    }
    if (s === undefined) {
      s = { kills: 0, openUntil: 0, cooldownMs: this.#options.cooldownMs, probing: false }
      this.#states.set(key, s)
    }
    s.kills++
    if (s.probing) {
      s.cooldownMs = Math.min(s.cooldownMs * 2, this.#options.maxCooldownMs)
      s.openUntil = now + s.cooldownMs
      s.probing = false
    } else if (this.#options.threshold > 0 && s.kills >= this.#options.threshold) {
      s.openUntil = now + s.cooldownMs
    }
  }

  /** Keys paused now (open, or waiting for their probe): for the `plugins_paused` gauge. */
  paused (now = Date.now()): number {
    let n = 0
    for (const s of this.#states.values()) if (s.openUntil !== 0 && (now < s.openUntil || s.probing)) n++
    return n
  }

  /** Forgets `key` (a replaced or deleted plugin starts clean). */
  reset (key: string): void {
    this.#states.delete(key)
  }
}
