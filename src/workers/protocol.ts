// Messages between the main thread and a worker: plain data with declared types. Error
// subclasses do not survive postMessage, so a worker answers `{ ok: false, code, message }`
// and the pool turns that back into a catalogue error in one place.
import type { GuestErrorCode } from '../errors'
import type { ExtismEffects, ExtismSpec } from '../sandbox/extism/types'

/** A preopened directory, resolved to a host path by the main thread (see wasi Preopen). */
export interface PreopenSpec {
  guestPath: string
  hostPath: string
  readOnly: boolean
  quotaBytes?: number
  /** Most entries in the directory; each also costs ENTRY_BYTES of quotaBytes. */
  quotaEntries?: number
  /** The volume's quota block, shared by every call of the plugin (not copied: shared memory). */
  quotaState?: SharedArrayBuffer
}

export interface WasiSpec {
  args: string[]
  env: Record<string, string>
  preopens: PreopenSpec[]
}

/**
 * A plugin's inputSchema or outputSchema as a worker compiles it (workers/validators.ts): the
 * JSON text, and its sha256, under which each worker caches the compiled validator.
 */
export interface SchemaRef {
  key: string
  text: string
}

/** One call of a plugin. `module` is a compiled WebAssembly.Module, shared, not recompiled. */
export interface ExecuteTask {
  module: WebAssembly.Module
  abi: 'json' | 'wasi' | 'extism'
  /** json and extism ABIs: the export to call. */
  entry: string
  /**
   * The body, read-only. Never moved to the worker: dispatch.ts may post the same task again (a
   * thread died before starting it, or it moved off a stalled thread), so the bytes must stay
   * here until the call is answered. Small bodies are copied at each posting; large ones live
   * in a SharedArrayBuffer that every posting shares (dispatch.ts shareable).
   */
  input: Uint8Array
  /** Limits for the host-provided memory, or undefined when the module has none. */
  memory: { initial: number, maximum: number } | undefined
  timeoutMs: number
  outputBytes: number
  /** Present when WASI is granted (always for the wasi ABI). */
  wasi: WasiSpec | undefined
  /**
   * Set for a plugin whose manifest says "instance": "reuse": a key naming the plugin version.
   * The worker keeps one instance per key and serves many calls with it. Absent (the default):
   * a fresh instance per call.
   */
  reuse?: string | undefined
  /** Validated in the worker, within the deadline: the body before the call (INVALID_INPUT). */
  inputSchema?: SchemaRef | undefined
  /** Validated in the worker, within the deadline: the output after the call (PLUGIN_INVALID_OUTPUT). */
  outputSchema?: SchemaRef | undefined
  /**
   * Set (the same kind of key) for a "fresh" plugin whose module can be reset in place: the
   * worker keeps one instance per key and resets it to its state right after instantiation
   * after every call (sandbox/reset-instances.ts). Absent: a new instance per call.
   */
  reset?: string | undefined
  /** extism ABI: the kernel's grants and the vars snapshot (see sandbox/extism/types.ts). */
  extism?: ExtismTask | undefined
  /** See CONTROL_* below: the call's state, its thread and its start, shared with the pool. */
  control: SharedArrayBuffer
}

/** What the answering thread keeps between calls (sandbox/memory-pool.ts), for a gauge. */
export interface KeptReport { thread: number, bytes: number }

export interface ExtismTask extends ExtismSpec {
  /**
   * The BroadcastChannel the main thread answers http_request on (workers/http-bridge.ts);
   * undefined when the plugin has no HTTP grant.
   */
  httpChannel: string | undefined
}

export interface ExecuteOk {
  ok: true
  kept?: KeptReport
  output: Uint8Array
  /** Time inside the worker, instantiate to output read, in ms. */
  durationMs: number
  /** wasi ABI: the tail of what the plugin wrote to stderr (logged by the main thread). */
  stderr?: string
  /** extism ABI: var writes, log lines and HTTP outcomes, applied by the main thread. */
  extism?: ExtismEffects
}

export interface ExecuteFailure {
  ok: false
  kept?: KeptReport
  code: GuestErrorCode
  message: string
  details?: Record<string, unknown>
  durationMs: number
  /** extism ABI: what the call did before it failed (its var writes still apply). */
  extism?: ExtismEffects
}

export type ExecuteResult = ExecuteOk | ExecuteFailure

// The control block is an Int32Array over a SharedArrayBuffer:
//   [STATE]     QUEUED -> RUNNING -> DONE, or QUEUED -> CANCELLED (queue timeout), or
//               RUNNING -> KILLED (deadline): compare-exchange on both sides, so a result
//               that finished in time is never thrown away and a cancelled task never runs
//   [THREAD]    the threadId of the thread the task was handed to (written by the pool's
//               balancer, then by the worker when it starts): the thread the deadline
//               terminates, and where a cancelled task still waits (pool.ts #pickThread)
//   bytes 8-15  (a Float64) clockMs() at start: the deadline counts from here, not from enqueue
// Nobody waits on it: the pool reads it when its timer fires and when the result arrives.
export const CONTROL_STATE = 0
export const CONTROL_THREAD = 1
/** Index in a Float64Array view of the control buffer. */
const CONTROL_STARTED_F64 = 1
export const CONTROL_BYTES = 16

export const STATE_QUEUED = 0
export const STATE_RUNNING = 1
export const STATE_DONE = 2
export const STATE_CANCELLED = 3
export const STATE_KILLED = 4

/**
 * Milliseconds on a clock every thread of the process shares (each thread has its own
 * `performance.timeOrigin`, so `performance.now()` alone cannot be compared across threads).
 */
export function clockMs (): number {
  return performance.timeOrigin + performance.now()
}

export function markStarted (control: SharedArrayBuffer, at: number): void {
  new Float64Array(control, 0, 2)[CONTROL_STARTED_F64] = at
}

/** When a worker started the task (0 if none has). */
export function startedAtMs (control: SharedArrayBuffer): number {
  return new Float64Array(control, 0, 2)[CONTROL_STARTED_F64] ?? 0
}
