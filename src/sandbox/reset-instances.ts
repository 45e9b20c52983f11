// Fresh state at reuse speed: a worker keeps one instance per plugin version and, after every
// call, puts it back into exactly the state it had right after instantiation (instance-state.ts)
// instead of instantiating the module again. V8's instantiation costs per function of the
// module (measured, bench/sandbox.mts: 60 µs at 3,000 functions, 749 µs at 30,000), a reset per
// byte of memory (2 µs for 2 pages). `_initialize` and `_start` still run on every call, as on a
// new instance. Only for modules reset-plan.ts accepts; the registry sends the others to
// runSandboxed. A call that grew the memory or a table leaves an instance that cannot be reset
// (neither shrinks): it is dropped and the next call instantiates again. Whatever ends a call (a
// trap, proc_exit, a limit, a host error), the reset runs before the instance serves again; a
// deadline kill terminates the thread and everything it kept. Host functions whose state is
// per call (WASI's context, the Extism kernel) are imported as forwarders (late-imports.ts)
// that each call points at its own.
import { restoreInstance, snapshotInstance } from './instance-state'
import type { InstanceSnapshot } from './instance-state'
import { createCallWasi, guestFailure, runOn } from './instance'
import type { SandboxCall, SandboxOutput } from './instance'
import { EXTISM_MODULE } from './extism/types'
import { LateImports } from './late-imports'
import type { MemoryPool } from './memory-pool'
import { wasiForwarders } from './wasi'
import type { Wasi, WasiForwarders } from './wasi'

/** Instances a worker keeps at most (least recently used dropped first); bytes bound them too. */
export const RESET_MAX_INSTANCES = 64

interface Kept {
  instance: WebAssembly.Instance
  memory: WebAssembly.Memory | undefined
  shape: { initial: number, maximum: number } | undefined
  /** Undefined when the state cannot be restored exactly: the instance serves one call. */
  snapshot: InstanceSnapshot | undefined
  /** The WASI namespace it imports, pointed at each call's WASI context. */
  wasi: WasiForwarders | undefined
  /** extism ABI: the kernel namespace it imports, pointed at each call's kernel. */
  kernel: LateImports | undefined
  /** Counted against the worker's byte budget while kept. */
  bytes: number
}

export interface ResetStats {
  /** Instances created (first call of a plugin on this thread, or after one was dropped). */
  created: number
  /** Calls served by an instance that was reset after an earlier call. */
  reused: number
  /** Instances dropped because a call grew their memory or a table, or their state could not be snapshotted. */
  dropped: number
}

export class ResetInstances {
  readonly #pool: MemoryPool
  readonly #kept = new Map<string, Kept>()
  readonly #maxInstances: number
  readonly #stats: ResetStats = { created: 0, reused: 0, dropped: 0 }

  constructor (pool: MemoryPool, maxInstances = RESET_MAX_INSTANCES) {
    this.#pool = pool
    this.#maxInstances = maxInstances
  }

  /** Runs `call` on the instance kept under `key` (a plugin version), reset to its initial state. */
  run (key: string, call: SandboxCall): SandboxOutput {
    let kept = this.#kept.get(key)
    if (kept !== undefined) {
      this.#kept.delete(key) // re-inserted when it is kept again: most recently used last
      this.#pool.hold(-kept.bytes)
      this.#stats.reused++
    }
    let wasi: Wasi | undefined
    try {
      kept ??= this.#create(call)
      wasi = createCallWasi(call, kept.memory)
      if (wasi !== undefined) kept.wasi?.bind(wasi)
      const { instance, kernel } = kept
      // runExtism makes the call's kernel and hands its functions over here.
      return runOn(call, (extra) => { kernel?.bindFrom(extra); return instance }, kept.memory, wasi)
    } catch (err) {
      throw guestFailure(err, call, wasi)
    } finally {
      wasi?.close()
      kept?.wasi?.unbind()
      kept?.kernel?.unbind()
      if (kept !== undefined) this.#settle(key, kept)
    }
  }

  /** Lets go of every kept instance and its memory (released on idle). */
  clear (): void {
    for (const kept of this.#kept.values()) this.#pool.hold(-kept.bytes)
    this.#kept.clear()
  }

  /** Instances kept right now (for tests). */
  get size (): number {
    return this.#kept.size
  }

  get stats (): Readonly<ResetStats> {
    return { ...this.#stats }
  }

  #create (call: SandboxCall): Kept {
    const shape = call.memory
    const memory = shape === undefined ? undefined : this.#pool.acquire(shape.initial, shape.maximum)
    const imports: WebAssembly.Imports = {}
    if (memory !== undefined) imports.host = { memory }
    const late = call.wasi !== undefined || call.abi === 'wasi' ? wasiForwarders() : undefined
    if (late !== undefined) imports.wasi_snapshot_preview1 = late.namespace as unknown as WebAssembly.ModuleImports
    // Only the kernel functions the module imports (capabilities.ts checked their types).
    const kernel = call.abi === 'extism' ? LateImports.of(call.module, EXTISM_MODULE) : undefined
    if (kernel !== undefined) imports[kernel.module] = kernel.namespace
    let instance: WebAssembly.Instance
    try {
      instance = new WebAssembly.Instance(call.module, imports)
    } catch (err) {
      if (memory !== undefined && shape !== undefined) this.#pool.release(memory, shape.initial, shape.maximum)
      throw err
    }
    this.#stats.created++
    // A memory over the byte budget can never be kept: no snapshot (reading every page of a big
    // memory costs a page fault each the first time), the instance serves this call and goes.
    const snapshot = (memory?.buffer.byteLength ?? 0) > this.#pool.maxBytes ? undefined : snapshotInstance(instance, memory)
    return { instance, memory, shape, snapshot, wasi: late, kernel, bytes: (memory?.buffer.byteLength ?? 0) + (snapshot?.imageBytes ?? 0) }
  }

  /** After a call, however it ended: reset and keep the instance, or drop it. */
  #settle (key: string, kept: Kept): void {
    let restored = false
    try {
      restored = kept.snapshot !== undefined && restoreInstance(kept.snapshot, kept.memory)
    } catch {
      restored = false // never keep an instance whose reset did not finish
    }
    if (!restored) {
      this.#stats.dropped++
      this.#release(kept)
      return
    }
    this.#kept.set(key, kept)
    this.#pool.hold(kept.bytes)
    // Past the budget (bytes or count), the least recently used go first; an instance that
    // alone is over the byte budget is not kept at all.
    for (const [k, old] of this.#kept) {
      if (this.#kept.size <= this.#maxInstances && this.#pool.bytes <= this.#pool.maxBytes) break
      this.#kept.delete(k)
      this.#pool.hold(-old.bytes)
      this.#release(old)
    }
  }

  /** The memory goes back to the pool (zeroed before reuse, or dropped if it grew or does not fit). */
  #release (kept: Kept): void {
    if (kept.memory !== undefined && kept.shape !== undefined) this.#pool.release(kept.memory, kept.shape.initial, kept.shape.maximum)
  }
}
