// V8 flags are process-wide and must be set before the first wasm module is compiled; worker
// threads share them (a Worker's execArgv refuses V8 flags), so the main thread sets them once.
import { setFlagsFromString } from 'node:v8'
import { v8SandboxFlags } from './limits'

let applied: string | undefined

/** Applies the sandbox's V8 flags. Idempotent; returns the flags in force. */
export function applyV8SandboxFlags (maxMemoryBytes: number, maxTableElements: number): string[] {
  const flags = v8SandboxFlags(maxMemoryBytes, maxTableElements)
  const key = flags.join(' ')
  if (applied !== key) {
    for (const flag of flags) setFlagsFromString(flag)
    applied = key
  }
  return flags
}
