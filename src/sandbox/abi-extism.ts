// The extism ABI: a plugin built with an Extism PDK imports the kernel from
// `extism:host/env` (sandbox/extism/kernel.ts) and exports functions `() -> i32` or
// `() -> ()`. A fresh kernel per call holds the input; the plugin reads it, calls back for
// config, vars, logs and HTTP, and sets its output and error in kernel blocks. Return 0 (or
// nothing) with no error set is success; anything else is PLUGIN_ERROR.
import { GuestError } from './guest-error'
import { ExtismKernel } from './extism/kernel'
import { EXTISM_MODULE } from './extism/types'
import type { ExtismEffects, ExtismSpec, HttpFunction } from './extism/types'
import { WasiExit } from './wasi'
import type { Wasi } from './wasi'

export interface ExtismCall {
  module: WebAssembly.Module
  entry: string
  input: Uint8Array
  outputBytes: number
  spec: ExtismSpec
  /** Filled in as the call runs, so a failed call still reports its logs and var writes. */
  effects: ExtismEffects
  http: HttpFunction | undefined
}

/** Exports run before the entry, when present: WASI reactors' and GHC's initialisers. */
const INITIALISERS = ['_initialize', 'hs_init'] as const

/**
 * Runs one call of an extism plugin on the instance `instantiate` gives (a new one, one reset
 * to its initial state, or a kept one). `memory` is the host-provided guest
 * memory (counted with the kernel's blocks against spec.memoryBytes); `wasi`, when granted,
 * only ever sees an empty stdin, and what it writes goes to the log.
 */
export function runExtism (call: ExtismCall, instantiate: (kernel: WebAssembly.Imports) => WebAssembly.Instance, memory: WebAssembly.Memory | undefined, wasi: Wasi | undefined, initialise = true): Uint8Array {
  let guestMemory = memory
  const kernel = new ExtismKernel({
    spec: call.spec,
    input: call.input,
    outputBytes: call.outputBytes,
    guestMemoryBytes: () => guestMemory?.buffer.byteLength ?? 0,
    effects: call.effects,
    http: call.http
  })
  let rc = 0
  try {
    const instance = instantiate({ [EXTISM_MODULE]: kernel.imports() })
    if (guestMemory === undefined) {
      const exported = instance.exports.memory
      if (exported instanceof WebAssembly.Memory) {
        guestMemory = exported
        wasi?.bind(exported)
      }
    }
    const main = instance.exports[call.entry]
    if (typeof main !== 'function') throw new GuestError('FUNCTION_NOT_FOUND', `plugin has no exported function '${call.entry}'`)
    // A kept ("reuse") instance runs them on its first call only, as Extism does.
    for (const name of initialise ? INITIALISERS : []) {
      const init = instance.exports[name]
      // hs_init(argc, argv): GHC accepts 0, NULL, as Extism's runtimes pass.
      if (typeof init === 'function') (init as (...args: number[]) => unknown)(0, 0)
    }
    const value = (main as () => unknown)()
    rc = typeof value === 'number' ? value : 0
  } catch (err) {
    if (!(err instanceof WasiExit)) throw err
    // proc_exit(0) ends the call as a success, with the output set so far.
    if (err.code !== 0) throw new GuestError('PLUGIN_EXIT', String(err.code), { exitCode: err.code, stdout: '', stderr: '' })
  }
  const message = kernel.errorMessage()
  if (rc !== 0 || message !== undefined) {
    const text = message ?? `plugin returned ${rc}`
    throw new GuestError('PLUGIN_ERROR', text, { message: text, returnCode: rc })
  }
  return kernel.output
}
