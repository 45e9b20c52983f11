// dispatch.ts against a fake piscina: what it does with a task according to what the control
// block says (placed on a thread or not, started or not) when its timer fires.
import { dispatch, RESCUE_AFTER_MS } from '../../src/workers/dispatch'
import type { DispatchContext } from '../../src/workers/dispatch'
import { clockMs, CONTROL_STATE, CONTROL_THREAD, markStarted, STATE_CANCELLED, STATE_DONE, STATE_QUEUED, STATE_RUNNING } from '../../src/workers/protocol'
import type { ExecuteResult, ExecuteTask } from '../../src/workers/protocol'

const OK: ExecuteResult = { ok: true, output: new Uint8Array([0x7b, 0x7d]), durationMs: 0.1 }

const task: Omit<ExecuteTask, 'control'> = {
  module: undefined as unknown as WebAssembly.Module, // never instantiated here
  abi: 'json',
  entry: 'execute',
  input: new Uint8Array([0x7b, 0x7d]),
  memory: undefined,
  timeoutMs: 5000,
  outputBytes: 1024,
  wasi: undefined
}

interface Posting { control: Int32Array, settle: (r: ExecuteResult) => void, fail: (e: Error) => void }

/** A piscina stand-in: records each posting; the test decides where it sits and how it ends. */
function fakeContext (overrides: Partial<DispatchContext> = {}): { ctx: DispatchContext, posted: Posting[], killed: number[] } {
  const posted: Posting[] = []
  const killed: number[] = []
  const ctx: DispatchContext = {
    post: async (t) => new Promise<ExecuteResult>((resolve, reject) => {
      posted.push({ control: new Int32Array(t.control), settle: resolve, fail: reject })
    }),
    kill: (threadId) => { killed.push(threadId) },
    queueTimeoutMs: 10_000,
    usableThread: () => true,
    inFlight: new Map(),
    ...overrides
  }
  return { ctx, posted, killed }
}

const sleep = async (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** What the worker does when it takes a task: claim it, then answer. */
function start (p: Posting, threadId: number): void {
  Atomics.store(p.control, CONTROL_THREAD, threadId)
  markStarted(p.control.buffer as SharedArrayBuffer, clockMs())
  expect(Atomics.compareExchange(p.control, CONTROL_STATE, STATE_QUEUED, STATE_RUNNING)).toBe(STATE_QUEUED)
}

function finish (p: Posting, result = OK): void {
  Atomics.store(p.control, CONTROL_STATE, STATE_DONE)
  p.settle(result)
}

describe('dispatch', () => {
  test('hands the task over once and returns the answer; forgets it when piscina lets go', async () => {
    const { ctx, posted } = fakeContext()
    const running = dispatch(task, clockMs(), ctx)
    await sleep(0)
    expect(posted).toHaveLength(1)
    expect(ctx.inFlight.size).toBe(1)
    const [p] = posted as [Posting]
    start(p, 1)
    finish(p)
    await expect(running).resolves.toBe(OK)
    expect(ctx.inFlight.size).toBe(0)
  })

  test('a task waiting on a thread behind a long call moves; its cancelled copy stays counted until piscina lets go of it', async () => {
    const { ctx, posted } = fakeContext()
    const running = dispatch(task, clockMs(), ctx)
    await sleep(0)
    const [first] = posted as [Posting]
    Atomics.store(first.control, CONTROL_THREAD, 7) // the balancer put it on thread 7, which is busy
    await sleep(RESCUE_AFTER_MS + 40)
    expect(Atomics.load(first.control, CONTROL_STATE)).toBe(STATE_CANCELLED)
    expect(posted).toHaveLength(2)
    // Both copies are known: the cancelled one still takes a place on thread 7.
    expect(ctx.inFlight.size).toBe(2)
    const second = posted[1] as Posting
    start(second, 8)
    finish(second)
    await expect(running).resolves.toBe(OK)
    expect(ctx.inFlight.size).toBe(1)
    // Thread 7 reaches the cancelled copy and skips it.
    first.settle({ ok: false, code: 'OVERLOADED', message: 'cancelled in the queue', durationMs: 0 })
    await sleep(0)
    expect(ctx.inFlight.size).toBe(0)
  })

  test('a task still in piscina\'s own queue keeps its place: it is not posted again', async () => {
    const { ctx, posted } = fakeContext({ queueTimeoutMs: 3 * RESCUE_AFTER_MS })
    const running = dispatch(task, clockMs(), ctx)
    await sleep(2 * RESCUE_AFTER_MS)
    expect(posted).toHaveLength(1) // no thread yet (CONTROL_THREAD 0): moving it would only send it to the back
    const [p] = posted as [Posting]
    expect(Atomics.load(p.control, CONTROL_STATE)).toBe(STATE_QUEUED)
    await expect(running).rejects.toMatchObject({ code: 'OVERLOADED' })
    expect(Atomics.load(p.control, CONTROL_STATE)).toBe(STATE_CANCELLED)
    expect(posted).toHaveLength(1)
  })

  test('a suspect, or a task with no thread to move to, waits where it is', async () => {
    for (const [suspect, usable] of [[true, true], [false, false]] as const) {
      const { ctx, posted } = fakeContext({ usableThread: () => usable })
      const running = dispatch(task, clockMs(), ctx, () => suspect)
      await sleep(0)
      const [p] = posted as [Posting]
      Atomics.store(p.control, CONTROL_THREAD, 3)
      await sleep(2 * RESCUE_AFTER_MS)
      expect(posted).toHaveLength(1)
      start(p, 3)
      finish(p)
      await expect(running).resolves.toBe(OK)
    }
  })

  test('past the deadline the call is DEADLINE_EXCEEDED and its thread is killed', async () => {
    const { ctx, posted, killed } = fakeContext()
    const running = dispatch({ ...task, timeoutMs: 30 }, clockMs(), ctx)
    await sleep(0)
    start(posted[0] as Posting, 4)
    await expect(running).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED', details: { timeoutMs: 30 } })
    expect(killed).toEqual([4])
    // The killed task is forgotten when its thread's exit fails it.
    expect(ctx.inFlight.size).toBe(1)
    ;(posted[0] as Posting).fail(new Error('worker exited'))
    await sleep(0)
    expect(ctx.inFlight.size).toBe(0)
  })

  test('a task whose thread died before starting it is posted again; one that had started fails', async () => {
    const { ctx, posted } = fakeContext()
    const running = dispatch(task, clockMs(), ctx)
    await sleep(0)
    ;(posted[0] as Posting).fail(new Error('worker exited'))
    await sleep(0)
    expect(posted).toHaveLength(2)
    const second = posted[1] as Posting
    start(second, 2)
    second.fail(new Error('worker exited'))
    await expect(running).rejects.toThrow('worker exited')
  })
})
