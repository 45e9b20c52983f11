import type { GuestErrorCode } from '../errors'

/**
 * A failure of a guest call, with the catalogue code it maps to. Thrown inside the worker
 * only: the worker flattens it to plain data before it crosses the thread boundary.
 */
export class GuestError extends Error {
  readonly code: GuestErrorCode
  readonly details: Record<string, unknown> | undefined

  constructor (code: GuestErrorCode, message: string, details?: Record<string, unknown>) {
    super(message)
    this.name = 'GuestError'
    this.code = code
    this.details = details
  }

  /** The same error with `extra` added to its details. */
  withDetails (extra: Record<string, unknown>): GuestError {
    const err = new GuestError(this.code, this.message, { ...this.details, ...extra })
    err.stack = this.stack
    return err
  }
}

const TRAP_KINDS: Array<[RegExp, string]> = [
  [/unreachable/i, 'unreachable'],
  [/memory access out of bounds|out of bounds memory/i, 'out of bounds memory access'],
  [/table index is out of bounds|table access out of bounds|element segment out of bounds/i, 'out of bounds table access'],
  [/divide by zero|remainder by zero/i, 'integer divide by zero'],
  [/integer overflow|divide result unrepresentable/i, 'integer overflow'],
  [/float unrepresentable|invalid conversion/i, 'invalid conversion to integer'],
  [/null function|signature mismatch|function signature/i, 'indirect call type mismatch'],
  [/data segment.*out of bounds|segment out of bounds/i, 'out of bounds data segment'],
  [/Maximum call stack size exceeded/i, 'stack overflow'],
  [/could not allocate memory|Out of memory|Array buffer allocation failed/i, 'out of memory']
]

/**
 * Turns what a guest call threw into a GuestError. WebAssembly traps and stack overflows are
 * the guest's fault (PLUGIN_TRAP); anything else escaping the sandbox is a bug of ours.
 */
export function classifyGuestThrow (err: unknown): GuestError {
  if (err instanceof GuestError) return err
  const message = err instanceof Error ? err.message : String(err)
  const isTrapType = err instanceof WebAssembly.RuntimeError || err instanceof RangeError ||
    err instanceof WebAssembly.LinkError
  for (const [pattern, trap] of TRAP_KINDS) {
    if (isTrapType && pattern.test(message)) return new GuestError('PLUGIN_TRAP', trap, { trap, message })
  }
  if (err instanceof WebAssembly.RuntimeError || err instanceof WebAssembly.LinkError) {
    return new GuestError('PLUGIN_TRAP', message, { trap: 'other', message })
  }
  return new GuestError('INTERNAL', `unexpected host error: ${message}`)
}
