// One sandboxed call: a fresh instance per call over a recycled, zeroed host memory, with
// exactly the imports the plugin was granted, then the ABI's calling convention. Or, for a
// plugin whose manifest opts in ("instance": "reuse"), one kept instance serving many calls.
// Runs inside a worker thread; the deadline is enforced from outside by terminating it.
import { runExtism } from './abi-extism'
import { callEntry, callJsonEntry, isJson } from './abi-json'
import type { InputRegion } from './abi-json'
import { classifyGuestThrow, GuestError } from './guest-error'
import type { ExtismEffects, ExtismSpec, HttpFunction } from './extism/types'
import type { MemorySource } from './memory-pool'
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

/** How much of stdout/stderr a PLUGIN_EXIT error carries back. */
const TAIL_BYTES = 4096
/** stderr kept per call (a tail) for the log and PLUGIN_EXIT details. */
const STDERR_BYTES = 64 * 1024

const utf8 = new TextDecoder()

function tail (bytes: Uint8Array): string {
  return utf8.decode(bytes.subarray(Math.max(0, bytes.length - TAIL_BYTES)))
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
    if (call.wasi !== undefined || call.abi === 'wasi') {
      wasi = createWasi({
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
      imports.wasi_snapshot_preview1 = wasi.imports as WebAssembly.ModuleImports
    }
    if (call.abi === 'extism') return runExtismCall(call, imports, memory, wasi)
    return call.abi === 'wasi' ? runCommand(call, imports, wasi as Wasi) : runJson(call, imports, memory)
  } catch (err) {
    throw classifyGuestThrow(err)
  } finally {
    wasi?.close()
    if (memory !== undefined && call.memory !== undefined) pool.release(memory, call.memory.initial, call.memory.maximum)
  }
}

function runJson (call: SandboxCall, imports: WebAssembly.Imports, memory: WebAssembly.Memory | undefined): SandboxOutput {
  if (!isJson(call.input)) throw new GuestError('INVALID_INPUT', 'body is not valid JSON')
  if (memory === undefined) throw new GuestError('INTERNAL', 'json plugin without memory passed validation')
  let instance: WebAssembly.Instance
  try {
    instance = new WebAssembly.Instance(call.module, imports)
  } catch (err) {
    if (err instanceof WasiExit) throw new GuestError('PLUGIN_EXIT', String(err.code), { exitCode: err.code, stdout: '', stderr: '' })
    throw err
  }
  try {
    return { output: callJsonEntry(instance.exports, memory, call.entry, call.input, call.outputBytes), stderr: undefined }
  } catch (err) {
    // A reactor that calls proc_exit ends the call: 0 without output is still no output.
    if (err instanceof WasiExit) {
      throw new GuestError('PLUGIN_EXIT', String(err.code), { exitCode: err.code, stdout: '', stderr: '' })
    }
    throw err
  }
}

function runExtismCall (call: SandboxCall, imports: WebAssembly.Imports, memory: WebAssembly.Memory | undefined, wasi: Wasi | undefined): SandboxOutput {
  if (call.extism === undefined) throw new GuestError('INTERNAL', 'extism call without its kernel spec')
  try {
    const output = runExtism({ module: call.module, entry: call.entry, input: call.input, outputBytes: call.outputBytes, ...call.extism }, imports, memory, wasi)
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

function runCommand (call: SandboxCall, imports: WebAssembly.Imports, wasi: Wasi): SandboxOutput {
  let exitCode = 0
  try {
    const instance = new WebAssembly.Instance(call.module, imports)
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
  calls: number
}

/**
 * The instances of "instance": "reuse" plugins, one per plugin version per worker. For
 * trusted, stateless json plugins only (the registry refuses reuse for the wasi ABI and for
 * plugins granted WASI): state does persist between the calls one instance serves, which is
 * the point (no instantiation, no memory recycling per call) and the risk. An instance is
 * replaced after REUSE_MAX_CALLS calls, and after any call that fails, whatever the reason, so
 * a trap never leaves a half-updated instance behind. When it is dropped its memory goes back
 * to the pool, which zeroes it before reuse (or drops it, if it grew).
 */
export class ReusedInstances {
  readonly #pool: MemorySource
  readonly #kept = new Map<string, Kept>()
  readonly #maxCalls: number
  readonly #maxInstances: number

  constructor (pool: MemorySource, maxCalls = REUSE_MAX_CALLS, maxInstances = REUSE_MAX_INSTANCES) {
    this.#pool = pool
    this.#maxCalls = maxCalls
    this.#maxInstances = maxInstances
  }

  /** Runs `call` on the instance kept under `key` (a plugin version), creating it first if needed. */
  run (key: string, call: SandboxCall): SandboxOutput {
    if (call.abi !== 'json' || call.wasi !== undefined || call.memory === undefined) return runSandboxed(call, this.#pool)
    if (!isJson(call.input)) throw new GuestError('INVALID_INPUT', 'body is not valid JSON')
    let kept = this.#kept.get(key)
    try {
      if (kept === undefined) {
        kept = this.#create(call.module, call.memory)
      } else {
        this.#kept.delete(key) // re-inserted below: most recently used last
      }
      const output = callEntry(kept.instance.exports, kept.memory, call.entry, call.input, call.outputBytes, kept.region)
      if (++kept.calls < this.#maxCalls) this.#keep(key, kept); else this.#drop(kept)
      return { output, stderr: undefined }
    } catch (err) {
      if (kept !== undefined) this.#drop(kept)
      throw classifyGuestThrow(err)
    }
  }

  /** Instances kept right now (for tests). */
  get size (): number {
    return this.#kept.size
  }

  #create (module: WebAssembly.Module, shape: { initial: number, maximum: number }): Kept {
    const memory = this.#pool.acquire(shape.initial, shape.maximum)
    let instance: WebAssembly.Instance
    try {
      instance = new WebAssembly.Instance(module, { host: { memory } })
      const init = instance.exports._initialize
      if (typeof init === 'function') (init as () => void)()
    } catch (err) {
      this.#pool.release(memory, shape.initial, shape.maximum)
      throw err
    }
    return { instance, memory, shape, region: { ptr: 0, capacity: 0 }, calls: 0 }
  }

  #keep (key: string, kept: Kept): void {
    this.#kept.set(key, kept)
    if (this.#kept.size > this.#maxInstances) {
      const oldest = this.#kept.keys().next().value
      const k = oldest !== undefined ? this.#kept.get(oldest) : undefined
      if (oldest !== undefined && k !== undefined) {
        this.#kept.delete(oldest)
        this.#drop(k)
      }
    }
  }

  #drop (kept: Kept): void {
    this.#pool.release(kept.memory, kept.shape.initial, kept.shape.maximum)
  }
}
