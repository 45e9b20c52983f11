// The two exceptions of the WASI layer. `WasiError` never leaves it: the import wrappers turn
// it into the errno the guest sees. `WasiExit` is the only exception that unwinds the guest,
// and the caller catches it.
import { Errno, errnoFromCode } from './errno'
import type { ErrnoValue } from './errno'

/** Internal: a syscall failed with this errno. Caught by the import wrappers. */
export class WasiError extends Error {
  readonly errno: ErrnoValue

  constructor (errno: ErrnoValue) {
    super(`wasi errno ${errno}`)
    this.name = 'WasiError'
    this.errno = errno
  }
}

/**
 * Thrown by `proc_exit(code)` to unwind the guest's stack. The caller of the guest's
 * `_start` catches it and reads `code` (the guest's u32 exit code; 0 is success). It is a
 * plain data carrier: it must not cross a thread boundary as an instance (copy `code`).
 */
export class WasiExit extends Error {
  readonly code: number

  constructor (code: number) {
    super(`wasi proc_exit(${code})`)
    this.name = 'WasiExit'
    this.code = code
  }
}

/** Throws `WasiError(errno)`; reads better at call sites than `throw new ...`. */
export function fail (errno: ErrnoValue): never {
  throw new WasiError(errno)
}

/**
 * Converts anything a syscall threw into an errno. `WasiExit` is rethrown: it is the one
 * exception meant to reach the guest's caller. Host errors map by their `code`; anything
 * else (a bug of ours, a RangeError from a typed array) becomes EIO rather than an
 * exception escaping into the guest.
 */
export function toErrno (err: unknown): ErrnoValue {
  if (err instanceof WasiExit) throw err
  if (err instanceof WasiError) return err.errno
  if (err instanceof RangeError) return Errno.FAULT
  if (typeof err === 'object' && err !== null && 'code' in err) return errnoFromCode(err.code)
  return Errno.IO
}
