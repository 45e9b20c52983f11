// The measurements behind the execute path's choices (bench/RESULTS.md), each one alone:
//   node --no-liftoff bench/micro.mts
// 1. posting a task with the body as a view into Node's Buffer slab vs a buffer of its own
// 2. returning the output cloned vs moved (transferred)
// 3. JSON validity: TextDecoder + JSON.parse vs isJson's validating scan
// 4. posting the compiled WebAssembly.Module with every task, and instantiating from it
// 5. whether a piscina worker's event loop turns between tasks, per `atomics` mode
// Needs `npm run build`.
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads'
import wabtInit from 'wabt'

setFlagsFromString('--no-liftoff')
const root = resolve(import.meta.dirname, '..')
const require = createRequire(import.meta.url)
const { isJson } = require('../dist/sandbox/abi-json.js') as typeof import('../src/sandbox/abi-json.js')
const { Piscina } = require('piscina') as typeof import('piscina')

function time (n: number, fn: () => void): number {
  for (let i = 0; i < Math.max(10, n / 10); i++) fn()
  const t0 = performance.now()
  for (let i = 0; i < n; i++) fn()
  return (performance.now() - t0) * 1000 / n
}
const us = (x: number): string => `${x.toFixed(2)} µs`
const small = JSON.stringify({ text: 'The quick brown fox jumps over the lazy dog', n: [1, 2, 3], nested: { ok: true, ratio: 0.75 } })
const items = []
for (let i = 0; Buffer.byteLength(JSON.stringify({ items })) < 64 * 1024 - 80; i++) items.push({ id: i, name: `item-${i}`, tags: ['alpha', 'beta'], score: i * 1.5, active: i % 2 === 0 })
const records = Buffer.from(JSON.stringify({ items }))
const longString = Buffer.from(JSON.stringify({ s: 'x'.repeat(64 * 1024 - 10) }))

// 1 + 2: serialize + deserialize through a MessageChannel, on one thread (no wake-ups).
const { port1, port2 } = new MessageChannel()
const task = (input: Uint8Array): Record<string, unknown> => ({ taskId: 1, task: { abi: 'json', entry: 'execute', input, memory: { initial: 1, maximum: 256 }, timeoutMs: 5000, outputBytes: 1 << 20, control: new SharedArrayBuffer(16) } })
console.log('1. post + receive a task with a 100-byte body')
console.log(`   view into the 8 KiB Buffer slab (Buffer.concat of a small body): ${us(time(20000, () => { port1.postMessage(task(Buffer.from(small))); receiveMessageOnPort(port2) }))}`)
console.log(`   owned copy, cloned:                                              ${us(time(20000, () => { port1.postMessage(task(new Uint8Array(Buffer.from(small)))); receiveMessageOnPort(port2) }))}`)
console.log(`   owned copy, transferred:                                         ${us(time(20000, () => { const u = new Uint8Array(Buffer.from(small)); port1.postMessage(task(u), [u.buffer]); receiveMessageOnPort(port2) }))}`)
console.log('2. return an output of N bytes: cloned vs moved')
for (const size of [100, 65536, 1 << 20]) {
  const n = size > 100_000 ? 1000 : 20000
  const cloned = time(n, () => { port1.postMessage({ ok: true, output: new Uint8Array(size), durationMs: 1 }); receiveMessageOnPort(port2) })
  const moved = time(n, () => { const u = new Uint8Array(size); port1.postMessage({ ok: true, output: u, durationMs: 1 }, [u.buffer]); receiveMessageOnPort(port2) })
  console.log(`   ${String(size).padStart(7)} B: cloned ${us(cloned)}, moved ${us(moved)}`)
}
port1.close()

// 3: JSON validity, as the worker checks input and output of every json-ABI call.
const decoder = new TextDecoder('utf-8', { fatal: true })
const parse = (b: Uint8Array): boolean => { try { JSON.parse(decoder.decode(b)); return true } catch { return false } }
console.log('3. JSON validity check: TextDecoder + JSON.parse vs isJson')
for (const [label, bytes, n] of [['100 B', Buffer.from(small), 200000], ['64 KiB of records', records, 2000], ['one 64 KiB string', longString, 5000]] as const) {
  console.log(`   ${label.padEnd(18)} JSON.parse ${us(time(n, () => parse(bytes)))}, isJson ${us(time(n, () => isJson(bytes)))}`)
}

// 4: the module posted with every task, and instantiated from the copy a worker receives.
const wabt = await wabtInit()
const mod = wabt.parseWat('echo.wat', readFileSync(join(root, 'test/fixtures/plugins/bench-echo.wat'), 'utf8').replace('(memory (export "memory") 2)', '(import "host" "memory" (memory 2 256)) (export "memory" (memory 0))'), { multi_value: true })
const wasmModule = await WebAssembly.compile(new Uint8Array(mod.toBinary({}).buffer))
mod.destroy()
const worker = new Worker(`
const { parentPort } = require('node:worker_threads')
const memory = new WebAssembly.Memory({ initial: 2, maximum: 256 })
let cached, busy = 0
parentPort.on('message', (m) => {
  const t0 = process.hrtime.bigint()
  if (m.instantiate) {
    if (m.cached) cached ??= m.module
    new WebAssembly.Instance(m.cached ? cached : m.module, { host: { memory } })
  }
  busy += Number(process.hrtime.bigint() - t0)
  parentPort.postMessage(busy)
})`, { eval: true })
async function roundTrips (make: (i: number) => unknown, n = 5000): Promise<{ roundTripUs: number, workerUs: number }> {
  let i = 0
  let last = 0
  const t0 = performance.now()
  await new Promise<void>(resolve => {
    const onMessage = (busy: number): void => { last = busy; if (++i === n) { worker.off('message', onMessage); resolve() } else worker.postMessage(make(i)) }
    worker.on('message', onMessage)
    worker.postMessage(make(0))
  })
  return { roundTripUs: (performance.now() - t0) * 1000 / n, workerUs: last / n / 1000 }
}
await roundTrips(() => ({}), 500)
const none = await roundTrips(() => ({}))
const posted = await roundTrips(() => ({ module: wasmModule }))
const received = await roundTrips(() => ({ module: wasmModule, instantiate: true }))
const cachedRun = await roundTrips(() => ({ module: wasmModule, instantiate: true, cached: true }))
console.log('4. a round trip to a worker thread, and instantiating there')
console.log(`   without the module ${us(none.roundTripUs)}; with the module posted ${us(posted.roundTripUs)}`)
console.log(`   instantiate from the module received with the task ${us(received.workerUs)}; from one kept by the worker ${us(cachedRun.workerUs)}`)
await worker.terminate()

// 5: piscina's `atomics` modes: does setImmediate work (MemoryPool's deferred zeroing) run between tasks?
const dir = mkdtempSync(join(tmpdir(), 'wph-micro-'))
const entry = join(dir, 'entry.js')
writeFileSync(entry, 'let ran = 0\nmodule.exports = () => { setImmediate(() => { ran++ }); return ran }\n')
console.log('5. setImmediate callbacks a piscina worker ran before its 200th task (199 = every time)')
for (const atomics of ['sync', 'async', 'disabled'] as const) {
  const pool = new Piscina({ filename: entry, minThreads: 1, maxThreads: 1, atomics })
  let last = 0
  for (let i = 0; i < 200; i++) {
    last = await pool.run(i) as number
    if (i % 50 === 49) await new Promise(resolve => setTimeout(resolve, 20))
  }
  console.log(`   atomics: '${atomics}': ${last}`)
  await pool.close()
}
rmSync(dir, { recursive: true, force: true })
