// createWasi: our own wasi_snapshot_preview1, a sandbox (node:wasi is not one: symlinks
// escape it, it has no read-only mode, a guest can close the host's stdout and its fds leak
// when the worker is terminated). Deny by default: stdio are in-memory buffers, the only
// host files reachable are under the preopens, and every host fd is tracked and closed.
// Runs in a worker thread: the synchronous fs calls block only that thread.
import { constants, realpathSync } from 'node:fs'
import { DIR_RIGHTS, FILE_RIGHTS } from './constants'
import type { WasiContext } from './context'
import { SinkFd, StdinFd } from './descriptor'
import { DirFd } from './dir-fd'
import { Errno } from './errno'
import { fail, toErrno } from './errors'
import { FdTable } from './fd-table'
import { HostFds } from './host-fds'
import { Jail, procFdWorks } from './jail'
import { encode, GuestMemory, u32, u64 } from './memory'
import type { MemoryLike } from './memory'
import { WASI_SIGNATURES } from './signatures'
import type { WasiImports, WasiName } from './signatures'
import { BoundedSink, TailSink } from './sinks'
import { fdSyscalls } from './syscalls-fd'
import { miscSyscalls } from './syscalls-misc'
import { pathSyscalls } from './syscalls-path'
import { createQuotaBlock, Quota, Volume } from './volume'
import { measureVolume } from './volume-usage'
import { ExactTimes } from './times'

export { WasiExit } from './errors'
export { Errno } from './errno'
export type { MemoryLike } from './memory'
export { WASI_SIGNATURES, matchesSignature } from './signatures'
export type { WasiImports, WasiName, WasmType } from './signatures'

/** A host directory made visible to the guest. */
export interface Preopen {
  /** The name the guest sees (`fd_prestat_dir_name`), e.g. `/data`. */
  guestPath: string
  /** The host directory; symlinks in this path itself are resolved once, at creation. */
  hostPath: string
  /** Refuse every change (EROFS). */
  readOnly: boolean
  /** Byte quota for everything under hostPath (the plugin's private volume); EDQUOT past it. */
  quotaBytes?: number
  /**
   * With quotaBytes: the most entries (names) the directory may hold; each then also costs
   * ENTRY_BYTES of the byte quota. Unset: only file bytes count. Ignored with quotaState.
   */
  quotaEntries?: number
  /**
   * With quotaBytes: the directory's quota block (volume.ts createQuotaBlock), shared with
   * every other call using the directory, so that they draw on one account. Unset: the
   * directory is measured now and the account is this instance's alone.
   */
  quotaState?: SharedArrayBuffer
}

/** What one guest call may see and how much it may write. */
export interface WasiOptions {
  args: string[]
  env: Record<string, string>
  preopens: Preopen[]
  /** The request body; reads never block; EOF at the end. */
  stdin: Uint8Array
  /** Bytes; past it, fd_write returns EFBIG and `stdoutOverflowed` becomes true. */
  stdoutLimit: number
  /** Bytes; stderr keeps the LAST stderrLimit bytes (a tail), never fails. */
  stderrLimit: number
  /** Absolute Date.now() ms of the call's deadline; poll_oneoff sleeps are clamped to it. */
  deadline: number
  /**
   * Called right after every host fd is opened (open=true) and right BEFORE it is closed
   * (open=false), so the worker can mirror the set in shared memory and the main thread can
   * close what is left if it terminates the thread mid-call.
   */
  onHostFd?: (fd: number, open: boolean) => void
}

/** One WASI instance: one guest call. */
export interface Wasi {
  /** The wasi_snapshot_preview1 namespace: `{ wasi_snapshot_preview1: wasi.imports }`. */
  readonly imports: WasiImports
  /** The implementations, unchecked (raw wasm arguments go through a namespace, never here). */
  readonly impl: WasiImports
  /** The guest memory; re-read on every call (it may grow). Calls before bind are EFAULT. */
  bind: (memory: MemoryLike) => void
  /** A copy of what the guest wrote to stdout (never more than stdoutLimit bytes). */
  stdout: () => Uint8Array
  /** True once a stdout write was refused for passing stdoutLimit. */
  readonly stdoutOverflowed: boolean
  /** A copy of the last stderrLimit bytes written to stderr. */
  stderr: () => Uint8Array
  /** Closes every host fd this instance opened. Idempotent; call it in `finally`. */
  close: () => void
}

function checkOptions (options: WasiOptions): void {
  const nul = (s: string): boolean => s.includes('\0')
  if (!Array.isArray(options.args) || options.args.some((a) => typeof a !== 'string' || nul(a))) {
    throw new TypeError('wasi: args must be strings without NUL')
  }
  for (const [key, value] of Object.entries(options.env)) {
    if (key === '' || key.includes('=') || nul(key) || typeof value !== 'string' || nul(value)) {
      throw new TypeError(`wasi: invalid environment variable ${JSON.stringify(key)}`)
    }
  }
  for (const p of options.preopens) {
    if (typeof p.guestPath !== 'string' || p.guestPath === '' || nul(p.guestPath)) {
      throw new TypeError('wasi: a preopen needs a guestPath')
    }
    if (p.quotaBytes !== undefined && !(p.quotaBytes >= 0)) throw new TypeError('wasi: quotaBytes must be >= 0')
  }
  if (!(options.stdoutLimit >= 0) || !(options.stderrLimit >= 0)) throw new TypeError('wasi: limits must be >= 0')
  if (typeof options.deadline !== 'number' || Number.isNaN(options.deadline)) throw new TypeError('wasi: deadline must be a number')
}

function openPreopens (options: WasiOptions, hostFds: HostFds, table: FdTable): Jail {
  let jail: Jail | undefined
  const quotas = new Map<string, Quota>()
  options.preopens.forEach((p, i) => {
    const root = realpathSync(p.hostPath)
    const fd = hostFds.open(root, constants.O_RDONLY | constants.O_DIRECTORY)
    // Decided once per instance, on the first preopen: /proc fd paths when they work.
    jail ??= new Jail(hostFds, procFdWorks(fd, root))
    let quota: Quota | undefined
    if (p.quotaBytes !== undefined) {
      // One account per host directory, however many preopens name it.
      quota = quotas.get(root) ?? new Quota(p.quotaBytes, p.quotaState ?? createQuotaBlock(measureVolume(root), p.quotaEntries))
      quotas.set(root, quota)
    }
    const volume = new Volume(root, p.readOnly, quota)
    table.set(3 + i, new DirFd(hostFds, fd, jail.nodeFor(fd, root), volume, DIR_RIGHTS, DIR_RIGHTS | FILE_RIGHTS, p.guestPath))
  })
  return jail ?? new Jail(hostFds, false)
}

/**
 * The import namespace: for each function, a wrapper that checks and normalizes the raw wasm
 * arguments against its signature (i32 -> unsigned number, i64 -> unsigned bigint; anything
 * else is EFAULT), calls the implementation `target()` holds at that moment, and turns every
 * exception but WasiExit into an errno. Built once per namespace, not per call: a kept
 * instance's namespace (wasiForwarders) serves every call, each pointing it at its own context.
 */
function wrapAll (target: () => WasiImports): WasiImports {
  const imports: Record<string, (...raw: unknown[]) => number> = {}
  for (const name of Object.keys(WASI_SIGNATURES) as WasiName[]) {
    const types = WASI_SIGNATURES[name]
    // A method of an object literal with a computed key gets its name (for stack traces) as it
    // is created; setting name and length with Object.defineProperty instead cost 27 µs per
    // namespace (two calls for each of the 46 imports).
    imports[name] = {
      [name] (...raw: unknown[]): number {
        try {
          const args: Array<number | bigint> = []
          for (let i = 0; i < types.length; i++) args.push(types[i] === 'i64' ? u64(raw[i]) : u32(raw[i]))
          return (target()[name] as (...args: Array<number | bigint>) => number)(...args)
        } catch (err) {
          return toErrno(err)
        }
      }
    }[name] as (...raw: unknown[]) => number
  }
  return Object.freeze(imports) as unknown as WasiImports
}

/**
 * The wasi_snapshot_preview1 namespace of an instance that outlives a call: each call points
 * it at its own WASI context (`bind`), and between calls every function throws.
 */
export interface WasiForwarders {
  readonly namespace: WasiImports
  bind: (wasi: Wasi) => void
  unbind: () => void
}

export function wasiForwarders (): WasiForwarders {
  let current: WasiImports | undefined
  const namespace = wrapAll(() => {
    if (current === undefined) throw new Error('a WASI function called outside a call')
    return current
  })
  return {
    namespace,
    bind: (wasi) => { current = wasi.impl },
    unbind: () => { current = undefined }
  }
}

/** Creates a WASI instance for one guest call. Throws (closing what it opened) on bad options. */
export function createWasi (options: WasiOptions): Wasi {
  checkOptions(options)
  const hostFds = new HostFds(options.onHostFd)
  const table = new FdTable()
  const stdout = new BoundedSink(options.stdoutLimit)
  const stderr = new TailSink(options.stderrLimit)
  table.set(0, new StdinFd(options.stdin))
  table.set(1, new SinkFd(stdout))
  table.set(2, new SinkFd(stderr))
  let jail: Jail
  try {
    jail = openPreopens(options, hostFds, table)
  } catch (err) {
    hostFds.closeAll()
    throw err
  }

  let memory: MemoryLike | undefined
  let closed = false
  const ctx: WasiContext = {
    mem: () => (memory === undefined ? fail(Errno.FAULT) : new GuestMemory(memory.buffer)),
    table,
    hostFds,
    jail,
    args: options.args.map((a) => encode(`${a}\0`)),
    env: Object.entries(options.env).map(([k, v]) => encode(`${k}=${v}\0`)),
    times: new ExactTimes(),
    deadline: options.deadline
  }
  const impl: WasiImports = { ...fdSyscalls(ctx), ...pathSyscalls(ctx), ...miscSyscalls(ctx) }
  // Only a new instance needs a namespace of its own; a kept one forwards to `impl`.
  let imports: WasiImports | undefined

  return {
    get imports (): WasiImports {
      imports ??= wrapAll(() => impl)
      return imports
    },
    impl,
    bind (m: MemoryLike): void {
      memory = m
    },
    stdout: () => stdout.contents(),
    get stdoutOverflowed (): boolean {
      return stdout.overflowed
    },
    stderr: () => stderr.contents(),
    close (): void {
      if (closed) return
      closed = true
      table.closeAll()
      hostFds.closeAll()
    }
  }
}
