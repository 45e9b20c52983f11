// One sandboxed call: a new instance over a recycled, zeroed host memory, with exactly the
// imports the plugin was granted, then the ABI's calling convention (runOn, shared with the
// reset path of reset-instances.ts, which runs "fresh" calls of most modules). Or, for a
// plugin whose manifest opts in ("instance": "reuse"), one kept instance serving many calls.
// Runs inside a worker thread; the deadline is enforced from outside by terminating it.
import { runExtism } from './abi-extism'
import { callEntry, callJsonEntry, isJson } from './abi-json'
import type { InputRegion } from './abi-json'
import { classifyGuestThrow, GuestError } from './guest-error'
import type { ExtismEffects, ExtismSpec, HttpFunction } from './extism/types'
import { jsonProblem } from './json-problem'
import type { MemoryPool, MemorySource } from './memory-pool'
import { EXTISM_MODULE } from './extism/types'
import { LateImports } from './late-imports'
import { createWasi, WasiExit } from './wasi'
import type { Wasi } from './wasi'

export interface SandboxPreopen { guestPath: string, hostPath: string, readOnly: boolean, quotaBytes?: number }

export interface SandboxCall {
  module: WebAssembly.Module
  abi: 'json' | 'wasi' | 'extism'
  entry: string
  input: Uint8Array
  memory: { initial: number, maximum: number } | undefined
  outputBytes: number
  /** Absolute Date.now() ms; WASI sleeps are clamped to it. */
  deadline: number
  wasi: { args: string[], env: Record<string, string>, preopens: SandboxPreopen[] } | undefined
  /** Told about every host fd the call opens and closes (see workers/worker.ts). */
  onHostFd?: (fd: number, open: boolean) => void
  /** extism ABI: what the kernel grants, where it reports, and how it reaches HTTP. */
  extism?: { spec: ExtismSpec, effects: ExtismEffects, http: HttpFunction | undefined }
}

export interface SandboxOutput {
  output: Uint8Array
  stderr: Uint8Array | undefined
}

/** How much of stdout/stderr a PLUGIN_EXIT (and stderr a PLUGIN_TRAP) error carries back. */
const TAIL_BYTES = 4096
/** stderr kept per call (a tail) for the log and PLUGIN_EXIT / PLUGIN_TRAP details. */
const STDERR_BYTES = 64 * 1024

const utf8 = new TextDecoder()

function tail (bytes: Uint8Array): string {
  return utf8.decode(bytes.subarray(Math.max(0, bytes.length - TAIL_BYTES)))
}

/**
 * A call's WASI context, when the call has WASI (always for the wasi ABI), bound to `memory`.
 * The caller closes it.
 */
export function createCallWasi (call: SandboxCall, memory: WebAssembly.Memory | undefined): Wasi | undefined {
  if (call.wasi === undefined && call.abi !== 'wasi') return undefined
  const wasi = createWasi({
    args: call.wasi?.args ?? [],
    env: call.wasi?.env ?? {},
    preopens: call.wasi?.preopens ?? [],
    stdin: call.abi === 'wasi' ? call.input : new Uint8Array(0),
    // An extism plugin's stdout is logged, never the response: keep a log-sized tail.
    stdoutLimit: call.abi === 'extism' ? STDERR_BYTES : call.outputBytes,
    stderrLimit: STDERR_BYTES,
    deadline: call.deadline,
    ...(call.onHostFd !== undefined ? { onHostFd: call.onHostFd } : {})
  })
  if (memory !== undefined) wasi.bind(memory)
  return wasi
}

/**
 * Instantiates and calls a plugin once. Throws GuestError for every guest fault; the host
 * memory goes back to the pool (zeroed before reuse) however the call ended.
 */
export function runSandboxed (call: SandboxCall, pool: MemorySource): SandboxOutput {
  const imports: WebAssembly.Imports = {}
  const memory = call.memory === undefined ? undefined : pool.acquire(call.memory.initial, call.memory.maximum)
  if (memory !== undefined) imports.host = { memory }
  let wasi: Wasi | undefined
  try {
    wasi = createCallWasi(call, memory)
    if (wasi !== undefined) imports.wasi_snapshot_preview1 = wasi.imports as WebAssembly.ModuleImports
    return runOn(call, (extra) => new WebAssembly.Instance(call.module, extra === undefined ? imports : { ...imports, ...extra }), memory, wasi)
  } catch (err) {
    throw guestFailure(err, call, wasi)
  } finally {
    wasi?.close()
    if (memory !== undefined && call.memory !== undefined) pool.release(memory, call.memory.initial, call.memory.maximum)
  }
}

/**
 * What a failed call answers, on a new instance or a reset one. What the guest said before it
 * trapped (a Rust panic message, a C assert) is why it did: its stderr tail goes with the trap.
 * A guest that traps after its stdout ran over `outputBytes` (a Rust `println!` whose write
 * failed panics) exceeded its output limit, as a C program's failed write does.
 */
export function guestFailure (err: unknown, call: SandboxCall, wasi: Wasi | undefined): GuestError {
  const e = classifyGuestThrow(err)
  // An extism plugin's WASI output went to its log (runExtismCall), never into the response.
  if (e.code !== 'PLUGIN_TRAP' || wasi === undefined || call.abi === 'extism') return e
  const stderr = tail(wasi.stderr())
  if (wasi.stdoutOverflowed) {
    return new GuestError('PLUGIN_INVALID_OUTPUT', `stdout is over the ${call.outputBytes}-byte limit`, { limit: call.outputBytes, stderr })
  }
  return e.withDetails({ stderr })
}

/**
 * Runs the call's ABI on the instance `instance()` returns (a new one, or one reset to the
 * state of a new one): `_initialize` and the json entry, or `_start`, or the extism entry.
 * Instantiation happens inside, so a proc_exit from a start function is an exit like any
 * other. `extra`: imports only known once the call runs (the extism kernel's); the reset path
 * points its kept instance's forwarders at them (reset-instances.ts).
 */
export function runOn (call: SandboxCall, instance: (extra?: WebAssembly.Imports) => WebAssembly.Instance, memory: WebAssembly.Memory | undefined, wasi: Wasi | undefined): SandboxOutput {
  if (call.abi === 'extism') return runExtismCall(call, instance, memory, wasi)
  if (call.abi === 'wasi') {
    if (wasi === undefined) throw new GuestError('INTERNAL', 'a wasi call without a WASI context')
    return runCommand(call, instance, wasi)
  }
  return runJson(call, instance, memory)
}

function runJson (call: SandboxCall, instantiate: () => WebAssembly.Instance, memory: WebAssembly.Memory | undefined): SandboxOutput {
  if (!isJson(call.input)) throw new GuestError('INVALID_INPUT', `body is not valid JSON: ${jsonProblem(call.input)}`)
  if (memory === undefined) throw new GuestError('INTERNAL', 'json plugin without memory passed validation')
  try {
    const instance = instantiate()
    return { output: callJsonEntry(instance.exports, memory, call.entry, call.input, call.outputBytes), stderr: undefined }
  } catch (err) {
    // A reactor that calls proc_exit ends the call: 0 without output is still no output.
    if (err instanceof WasiExit) {
      throw new GuestError('PLUGIN_EXIT', String(err.code), { exitCode: err.code, stdout: '', stderr: '' })
    }
    throw err
  }
}

function runExtismCall (call: SandboxCall, instantiate: (kernel: WebAssembly.Imports) => WebAssembly.Instance, memory: WebAssembly.Memory | undefined, wasi: Wasi | undefined): SandboxOutput {
  if (call.extism === undefined) throw new GuestError('INTERNAL', 'extism call without its kernel spec')
  try {
    const output = runExtism({ module: call.module, entry: call.entry, input: call.input, outputBytes: call.outputBytes, ...call.extism }, instantiate, memory, wasi)
    return { output, stderr: wasiText(wasi) }
  } catch (err) {
    const text = wasiText(wasi)
    if (text !== undefined && text.length > 0) call.extism.effects.logs.push({ level: 'info', msg: utf8.decode(text) })
    throw err
  }
}

/** What an extism plugin wrote to WASI stdout and stderr: logged, never the response. */
function wasiText (wasi: Wasi | undefined): Uint8Array | undefined {
  if (wasi === undefined) return undefined
  const out = wasi.stdout()
  const err = wasi.stderr()
  if (out.length === 0) return err
  if (err.length === 0) return out
  const both = new Uint8Array(out.length + err.length)
  both.set(out)
  both.set(err, out.length)
  return both
}

function runCommand (call: SandboxCall, instantiate: () => WebAssembly.Instance, wasi: Wasi): SandboxOutput {
  let exitCode = 0
  try {
    const instance = instantiate()
    if (call.memory === undefined) {
      const exported = instance.exports.memory
      if (exported instanceof WebAssembly.Memory) wasi.bind(exported)
    }
    const start = instance.exports._start
    if (typeof start !== 'function') throw new GuestError('FUNCTION_NOT_FOUND', 'plugin has no exported _start')
    start()
  } catch (err) {
    if (!(err instanceof WasiExit)) throw err
    exitCode = err.code
  }
  if (wasi.stdoutOverflowed) {
    throw new GuestError('PLUGIN_INVALID_OUTPUT', `stdout is over the ${call.outputBytes}-byte limit`, { limit: call.outputBytes })
  }
  const stdout = wasi.stdout()
  const stderr = wasi.stderr()
  if (exitCode !== 0) {
    throw new GuestError('PLUGIN_EXIT', String(exitCode), { exitCode, stdout: tail(stdout), stderr: tail(stderr) })
  }
  return { output: stdout, stderr }
}

/** Calls one reused instance serves before it is replaced by a fresh one. */
export const REUSE_MAX_CALLS = 1000
/** Reused instances a worker keeps (least recently used dropped first); each holds a memory. */
export const REUSE_MAX_INSTANCES = 16

interface Kept {
  instance: WebAssembly.Instance
  memory: WebAssembly.Memory
  shape: { initial: number, maximum: number }
  region: InputRegion
  /** extism ABI: the kernel namespace, pointed at each call's kernel. */
  kernel: LateImports | undefined
  /** extism ABI: whether `_initialize`/`hs_init` ran (on the instance's first call). */
  initialised: boolean
  calls: number
  /** Bytes counted against the worker's budget while kept. */
  held: number
}

/**
 * The instances of "instance": "reuse" plugins, one per plugin version per worker. For
 * trusted json and extism plugins without WASI (the registry refuses reuse for the wasi ABI
 * and for plugins granted WASI): state does persist between the calls one instance serves
 * (for extism plugins, as in Extism itself, whose kernel is still new for each call), which is
 * the point (no instantiation, no memory recycling per call) and the risk. An instance is
 * replaced after REUSE_MAX_CALLS calls, and after any call that fails, whatever the reason, so
 * a trap never leaves a half-updated instance behind. When it is dropped its memory goes back
 * to the pool, which zeroes it before reuse (or drops it, if it grew).
 */
export class ReusedInstances {
  readonly #pool: MemoryPool
  readonly #kept = new Map<string, Kept>()
  readonly #maxCalls: number
  readonly #maxInstances: number

  constructor (pool: MemoryPool, maxCalls = REUSE_MAX_CALLS, maxInstances = REUSE_MAX_INSTANCES) {
    this.#pool = pool
    this.#maxCalls = maxCalls
    this.#maxInstances = maxInstances
  }

  /** Runs `call` on the instance kept under `key` (a plugin version), creating it first if needed. */
  run (key: string, call: SandboxCall): SandboxOutput {
    const extism = call.abi === 'extism' ? call.extism : undefined
    if ((call.abi !== 'json' && extism === undefined) || call.wasi !== undefined || call.memory === undefined) return runSandboxed(call, this.#pool)
    if (call.abi === 'json' && !isJson(call.input)) throw new GuestError('INVALID_INPUT', `body is not valid JSON: ${jsonProblem(call.input)}`)
    let kept = this.#kept.get(key)
    try {
      if (kept === undefined) {
        kept = this.#create(call.module, call.memory, extism !== undefined)
      } else {
        this.#kept.delete(key) // re-inserted below: most recently used last
        this.#pool.hold(-kept.held)
        kept.held = 0
      }
      let output: Uint8Array
      if (extism !== undefined) {
        const { instance, kernel } = kept
        const initialise = !kept.initialised
        kept.initialised = true
        try {
          output = runExtism({ module: call.module, entry: call.entry, input: call.input, outputBytes: call.outputBytes, ...extism },
            (extra) => { kernel?.bindFrom(extra); return instance }, kept.memory, undefined, initialise)
        } finally {
          kernel?.unbind()
        }
      } else {
        output = callEntry(kept.instance.exports, kept.memory, call.entry, call.input, call.outputBytes, kept.region)
      }
      if (++kept.calls < this.#maxCalls) this.#keep(key, kept); else this.#drop(kept)
      return { output, stderr: undefined }
    } catch (err) {
      if (kept !== undefined) this.#drop(kept)
      throw classifyGuestThrow(err)
    }
  }

  /** Lets go of every kept instance and its memory (released on idle). */
  clear (): void {
    for (const kept of this.#kept.values()) { this.#pool.hold(-kept.held); kept.held = 0 }
    this.#kept.clear()
  }

  /** Instances kept right now (for tests). */
  get size (): number {
    return this.#kept.size
  }

  #create (module: WebAssembly.Module, shape: { initial: number, maximum: number }, extism: boolean): Kept {
    const memory = this.#pool.acquire(shape.initial, shape.maximum)
    const imports: WebAssembly.Imports = { host: { memory } }
    // An extism plugin imports the kernel: forwarders each call points at its own kernel.
    const kernel = extism ? LateImports.of(module, EXTISM_MODULE) : undefined
    if (kernel !== undefined) imports[kernel.module] = kernel.namespace
    let instance: WebAssembly.Instance
    try {
      instance = new WebAssembly.Instance(module, imports)
      // An extism plugin's initialisers run in its first call, where the kernel is bound.
      const init = instance.exports._initialize
      if (!extism && typeof init === 'function') (init as () => void)()
    } catch (err) {
      this.#pool.release(memory, shape.initial, shape.maximum)
      throw err
    }
    return { instance, memory, shape, region: { ptr: 0, capacity: 0 }, kernel, initialised: false, calls: 0, held: 0 }
  }

  #keep (key: string, kept: Kept): void {
    this.#kept.set(key, kept)
    kept.held = kept.memory.buffer.byteLength
    this.#pool.hold(kept.held)
    // Past the count or the worker's byte budget, the least recently used go first.
    for (const [k, old] of this.#kept) {
      if (this.#kept.size <= this.#maxInstances && this.#pool.bytes <= this.#pool.maxBytes) break
      this.#kept.delete(k)
      this.#drop(old)
    }
  }

  #drop (kept: Kept): void {
    this.#pool.hold(-kept.held)
    kept.held = 0
    this.#pool.release(kept.memory, kept.shape.initial, kept.shape.maximum)
  }
}
