// One sandboxed call: a fresh instance per call over a recycled, zeroed host memory, with
// exactly the imports the plugin was granted, then the ABI's calling convention.
// Runs inside a worker thread; the deadline is enforced from outside by terminating it.
import { callJsonEntry, isJson } from './abi-json'
import { classifyGuestThrow, GuestError } from './guest-error'
import type { MemoryPool } from './memory-pool'
import { createWasi, WasiExit } from './wasi'
import type { Wasi } from './wasi'

export interface SandboxPreopen { guestPath: string, hostPath: string, readOnly: boolean, quotaBytes?: number }

export interface SandboxCall {
  module: WebAssembly.Module
  abi: 'json' | 'wasi'
  entry: string
  input: Uint8Array
  memory: { initial: number, maximum: number } | undefined
  outputBytes: number
  /** Absolute Date.now() ms; WASI sleeps are clamped to it. */
  deadline: number
  wasi: { args: string[], env: Record<string, string>, preopens: SandboxPreopen[] } | undefined
  /** Told about every host fd the call opens and closes (see workers/worker.ts). */
  onHostFd?: (fd: number, open: boolean) => void
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
export function runSandboxed (call: SandboxCall, pool: MemoryPool): SandboxOutput {
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
        stdoutLimit: call.outputBytes,
        stderrLimit: STDERR_BYTES,
        deadline: call.deadline,
        ...(call.onHostFd !== undefined ? { onHostFd: call.onHostFd } : {})
      })
      if (memory !== undefined) wasi.bind(memory)
      imports.wasi_snapshot_preview1 = wasi.imports as WebAssembly.ModuleImports
    }
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
