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

/** Frames of a trap's wasm backtrace kept in `details.backtrace`, and characters of a name. */
const BACKTRACE_FRAMES = 16
const FRAME_NAME_CHARS = 128
/** A wasm frame of a V8 stack: `at name (wasm://wasm/<hash>:wasm-function[7]:0x1a2)`, the name optional. */
const WASM_FRAME = /^\s*at (?:(.*) \()?wasm:\/\/wasm\/[^:]*:wasm-function\[(\d+)\]:(0x[0-9a-f]+)\)?$/

/**
 * The guest's frames of a trap, innermost first, as `name (function 7 at 0x1a2)` (offsets in
 * the module's code), with the names of the module's name section when it has one. V8 keeps
 * the names in the stack; host frames are left out.
 */
export function wasmBacktrace (err: unknown): string[] | undefined {
  const stack = err instanceof Error ? err.stack : undefined
  if (stack === undefined) return undefined
  const frames: string[] = []
  for (const line of stack.split('\n')) {
    const m = WASM_FRAME.exec(line)
    if (m === null) continue
    const name = (m[1] ?? `function ${m[2] ?? '?'}`).slice(0, FRAME_NAME_CHARS)
    frames.push(`${name} (function ${m[2] ?? '?'} at ${m[3] ?? '?'})`)
    if (frames.length === BACKTRACE_FRAMES) break
  }
  return frames.length > 0 ? frames : undefined
}

/**
 * Turns what a guest call threw into a GuestError. WebAssembly traps and stack overflows are
 * the guest's fault (PLUGIN_TRAP); anything else escaping the sandbox is a bug of ours.
 */
export function classifyGuestThrow (err: unknown): GuestError {
  if (err instanceof GuestError) return err
  const message = err instanceof Error ? err.message : String(err)
  const isTrapType = err instanceof WebAssembly.RuntimeError || err instanceof RangeError ||
    err instanceof WebAssembly.LinkError
  const backtrace = wasmBacktrace(err)
  const where = backtrace !== undefined ? { backtrace } : {}
  for (const [pattern, trap] of TRAP_KINDS) {
    if (isTrapType && pattern.test(message)) return new GuestError('PLUGIN_TRAP', trap, { trap, message, ...where })
  }
  if (err instanceof WebAssembly.RuntimeError || err instanceof WebAssembly.LinkError) {
    return new GuestError('PLUGIN_TRAP', message, { trap: 'other', message, ...where })
  }
  // For the service's log only (the pool keeps it out of the answer): the stack says where.
  return new GuestError('INTERNAL', `unexpected host error: ${err instanceof Error ? err.stack ?? message : message}`)
}
