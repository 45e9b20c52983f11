// What the syscall modules share: one object per WASI instance, built by createWasi.
import type { FdTable } from './fd-table'
import type { HostFds } from './host-fds'
import type { Jail } from './jail'
import type { GuestMemory } from './memory'
import type { ExactTimes } from './times'

/** The state of one WASI instance, as the syscall implementations see it. */
export interface WasiContext {
  /** A fresh bounds-checked view of guest memory (EFAULT when none is bound). */
  mem: () => GuestMemory
  readonly table: FdTable
  readonly hostFds: HostFds
  readonly jail: Jail
  /** argv entries, UTF-8, each NUL-terminated. */
  readonly args: readonly Uint8Array[]
  /** `KEY=value` entries, UTF-8, each NUL-terminated. */
  readonly env: readonly Uint8Array[]
  /** Times this instance set, reported exactly (see times.ts). */
  readonly times: ExactTimes
  /** Absolute Date.now() ms past which nothing may sleep. */
  readonly deadline: number
}
