// The piscina worker entry: a plain function of its task that never throws. A worker owns the
// instances it runs; the main thread never touches guest memory. Runaway guest code is not
// interrupted here: the pool terminates this thread from outside when the deadline passes.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { threadId } from 'node:worker_threads'
// The one piscina import besides pool.ts: piscina transfers a result's buffer (rather than
// cloning it) only when the result is marked with its private "movable" symbol, through move().
// Measured (bench/micro.mts, post + receive): a 64 KiB output 38 µs cloned, 14 µs moved;
// 1 MiB 490 µs vs 215 µs.
import { move, transferableSymbol, valueSymbol } from 'piscina'
import { GuestError } from '../sandbox/guest-error'
import { MemoryPool } from '../sandbox/memory-pool'
import { ReusedInstances, runSandboxed } from '../sandbox/instance'
import type { SandboxCall, SandboxOutput } from '../sandbox/instance'
import { ResetInstances } from '../sandbox/reset-instances'
import { emptyEffects } from '../sandbox/extism/types'
import type { ExtismEffects } from '../sandbox/extism/types'
import { httpOverBridge } from './http-bridge'
import { lowerThreadPriority } from './thread-priority'
import type { SchemaValidators } from './validators'
import { clockMs, CONTROL_STATE, CONTROL_THREAD, markStarted, STATE_DONE, STATE_QUEUED, STATE_RUNNING } from './protocol'
import type { ExecuteResult, ExecuteTask, KeptReport } from './protocol'

lowerThreadPriority()

// One byte budget for everything this thread keeps between calls: free memories, reset
// instances and reused instances (sandbox/memory-pool.ts).
const memories = new MemoryPool()
const reused = new ReusedInstances(memories)
let validators: SchemaValidators | undefined
/**
 * Loaded on the first call with a schema, not at thread start: ajv and re2js add 0.2-1 s to
 * the start of every thread (measured on a loaded 2-core machine), replacements after a
 * deadline kill included, and most plugins have no schema.
 */
function schemaValidators (): SchemaValidators {
  validators ??= new (require('./validators') as typeof import('./validators')).SchemaValidators()
  return validators
}

const resets = new ResetInstances(memories)

function runCall (task: ExecuteTask, call: SandboxCall): SandboxOutput {
  if (task.reuse !== undefined) return reused.run(task.reuse, call)
  if (task.reset !== undefined) return resets.run(task.reset, call)
  return runSandboxed(call, memories)
}
const utf8 = new TextDecoder()

/** What piscina gets back: the result, or the result wrapped so its output buffer is moved. */
export type WorkerReply = ExecuteResult | ReturnType<typeof move>

/** Settles when the handler of the task before this one has returned. */
let previous: Promise<void> = Promise.resolve()
/**
 * Microtask turns a task gives piscina to post the previous task's result. A thread holds up
 * to 4 tasks, and piscina reads all that wait in its port at once: their handlers then run in
 * one microtask drain, and piscina posts each result one turn after its handler settles. A task
 * that started at once would hold the previous result back until it finished, and lose it if
 * killed at its deadline (measured, test/integration/fairness.test.ts: with 0 turns, 3 of 4
 * runs lost an answer behind a runaway; with 1, 2 or 3 turns none did). A turn of the event
 * loop instead (setImmediate) cut echo throughput by 4x: under piscina's 'sync' atomics the
 * loop turns only when the thread has nothing else to do.
 */
const POST_TURNS = 3

/**
 * Runs `handler(arg)` when the handler of the task before it has returned, and POST_TURNS
 * microtask turns later: every task of this thread, calls and trims alike, goes through here.
 */
async function inTurn<A, R> (handler: (arg: A) => R, arg: A): Promise<R> {
  const before = previous
  let finished: () => void = () => {}
  previous = new Promise(resolve => { finished = resolve })
  try {
    await before
    for (let i = 0; i < POST_TURNS; i++) await undefined
    return handler(arg)
  } finally {
    finished()
  }
}

export default function execute (task: ExecuteTask): Promise<WorkerReply> {
  return inTurn(run, task)
}

/**
 * The same handler under another name: the pool posts calls of a suspected runaway plugin by
 * this name, so its balancer can tell them apart and give them only an idle thread.
 */
export const suspect = execute

/**
 * Released on idle: the pool posts this to a thread that kept memory and has had no call for
 * a while. Everything kept goes (free memories, reset and reused instances), then a garbage
 * collection, without which an idle thread (it allocates nothing) would hold the dropped
 * memories' pages until its next calls.
 */
export function trim (): Promise<KeptReport> {
  return inTurn(letGo, undefined)
}

function letGo (): KeptReport {
  resets.clear()
  reused.clear()
  memories.clear()
  collectGarbage()
  return { thread: threadId, bytes: memories.bytes }
}

let gc: (() => void) | undefined
function collectGarbage (): void {
  if (gc === undefined) {
    // V8's gc() without starting the process with --expose-gc: the flag set now applies to
    // contexts made after it, and a new one hands the function out.
    setFlagsFromString('--expose-gc')
    gc = runInNewContext('gc') as () => void
  }
  gc()
}

function run (task: ExecuteTask): WorkerReply {
  const control = new Int32Array(task.control)
  const started = clockMs()
  // Written before the state turns RUNNING, so the pool never reads a start time of 0.
  markStarted(task.control, started)
  Atomics.store(control, CONTROL_THREAD, threadId)
  // The queue timeout may have cancelled this task before a thread was free.
  if (Atomics.compareExchange(control, CONTROL_STATE, STATE_QUEUED, STATE_RUNNING) !== STATE_QUEUED) {
    return { ok: false, code: 'OVERLOADED', message: 'cancelled in the queue', durationMs: 0 }
  }
  const t0 = performance.now()
  const effects: ExtismEffects | undefined = task.extism !== undefined ? emptyEffects() : undefined
  try {
    if (task.inputSchema !== undefined) schemaValidators().input(task.inputSchema, task.input)
    const deadline = Date.now() + task.timeoutMs
    const call: SandboxCall = {
      module: task.module,
      abi: task.abi,
      entry: task.entry,
      input: task.input,
      memory: task.memory,
      outputBytes: task.outputBytes,
      deadline, // WASI clamps sleeps against Date.now()
      wasi: task.wasi
    }
    if (task.extism !== undefined && effects !== undefined) {
      const { httpChannel, ...spec } = task.extism
      const http = httpChannel !== undefined && spec.http !== undefined ? httpOverBridge(httpChannel, spec.http.allowedHosts, deadline) : undefined
      call.extism = { spec, effects, http }
    }
    const { output, stderr } = runCall(task, call)
    if (task.outputSchema !== undefined) schemaValidators().output(task.outputSchema, output)
    const result: ExecuteResult = { ok: true, output, durationMs: performance.now() - t0, kept: { thread: threadId, bytes: memories.bytes } }
    if (stderr !== undefined && stderr.length > 0) result.stderr = utf8.decode(stderr)
    if (effects !== undefined) result.extism = effects
    // Outputs are copies out of guest memory or of the stdout sink, so they own their buffer.
    const buffer = output.buffer
    if (output.byteLength > 0 && output.byteOffset === 0 && output.byteLength === buffer.byteLength && buffer instanceof ArrayBuffer) {
      return move({ [transferableSymbol]: buffer, [valueSymbol]: result })
    }
    return result
  } catch (err) {
    const e = err instanceof GuestError ? err : new GuestError('INTERNAL', String(err))
    const failure: ExecuteResult = { ok: false, code: e.code, message: e.message, durationMs: performance.now() - t0, kept: { thread: threadId, bytes: memories.bytes } }
    if (e.details !== undefined) failure.details = e.details
    if (effects !== undefined) failure.extism = effects
    return failure
  } finally {
    // Fails only when the pool has already declared the deadline passed: it terminates us.
    Atomics.compareExchange(control, CONTROL_STATE, STATE_RUNNING, STATE_DONE)
  }
}
