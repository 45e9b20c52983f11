// Host resources: every host fd is reported and closed however the call ends (close after a
// trap, a failed creation, a terminated worker), and sleeps never outlive the deadline or a
// worker termination.
import { closeSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import ts from 'typescript'
import { cSource, hasClang } from '../helpers/fixtures'
import { createWasi, Errno } from '../../src/sandbox/wasi'
import type { Wasi, WasiOptions } from '../../src/sandbox/wasi'
import { Lookupflags, Oflags } from '../../src/sandbox/wasi/constants'
import { MAX_FDS } from '../../src/sandbox/wasi/fd-table'

const ALL = (1n << 30n) - 1n
const hasProc = readdirSafe('/proc/self/fd') !== null
const linuxOnly = hasProc ? test : test.skip

function readdirSafe (path: string): string[] | null {
  try {
    return readdirSync(path)
  } catch {
    return null
  }
}

/** Open host fds of this process, and those that point under `dir`. */
function hostFds (dir?: string): { count: number, under: string[] } {
  const fds = readdirSafe('/proc/self/fd') ?? []
  const under: string[] = []
  for (const fd of fds) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`)
      if (dir !== undefined && target.startsWith(dir)) under.push(target)
    } catch {
      // The fd readdir itself used, closed by now.
    }
  }
  return { count: fds.length, under }
}

let dir: string

beforeEach(() => {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'wasi-life-')))
})

afterEach(() => {
  rmSync(dir, { recursive: true, force: true })
})

function make (extra: Partial<WasiOptions> = {}): { wasi: Wasi, memory: WebAssembly.Memory } {
  const memory = new WebAssembly.Memory({ initial: 1 })
  const wasi = createWasi({
    args: [],
    env: {},
    preopens: [{ guestPath: '/data', hostPath: dir, readOnly: false }],
    stdin: new Uint8Array(),
    stdoutLimit: 1024,
    stderrLimit: 1024,
    deadline: Date.now() + 5000,
    ...extra
  })
  wasi.bind(memory)
  return { wasi, memory }
}

function open (wasi: Wasi, memory: WebAssembly.Memory, path: string, oflags = Oflags.CREAT): { errno: number, fd: number } {
  const bytes = Buffer.from(path)
  new Uint8Array(memory.buffer).set(bytes, 1024)
  const errno = wasi.imports.path_open(3, Lookupflags.SYMLINK_FOLLOW, 1024, bytes.byteLength, oflags, ALL, ALL, 0, 512)
  return { errno, fd: new DataView(memory.buffer).getUint32(512, true) }
}

describe('host fds', () => {
  linuxOnly('after 100 open files, close() leaves the process fd count as before', () => {
    const before = hostFds(dir)
    const events: Array<[number, boolean]> = []
    const { wasi, memory } = make({ onHostFd: (fd, isOpen) => events.push([fd, isOpen]) })
    for (let i = 0; i < 100; i++) {
      const { errno } = open(wasi, memory, `dir${i % 3}-file-${i}`)
      expect(errno).toBe(0)
    }
    expect(hostFds(dir).count).toBeGreaterThanOrEqual(before.count + 101)
    wasi.close()
    const after = hostFds(dir)
    expect(after.count).toBe(before.count)
    expect(after.under).toEqual([])
    // Every fd reported open was reported closed, and stdio never appears.
    const open_ = new Set<number>()
    for (const [fd, isOpen] of events) {
      expect(fd).toBeGreaterThan(2)
      if (isOpen) open_.add(fd)
      else expect(open_.delete(fd)).toBe(true)
    }
    expect(open_.size).toBe(0)
    expect(events.filter(([, o]) => o)).toHaveLength(101) // the preopen + 100 files
  })

  test('close() is idempotent; afterwards the guest\'s fds are gone', () => {
    const { wasi, memory } = make()
    const { fd } = open(wasi, memory, 'f')
    wasi.close()
    wasi.close()
    expect(wasi.imports.fd_close(fd)).toBe(Errno.BADF)
    expect(open(wasi, memory, 'g').errno).toBe(Errno.BADF)
    expect(wasi.imports.fd_write(1, 0, 0, 16)).toBe(Errno.BADF)
  })

  linuxOnly('the walk\'s transient directory fds are released, also when resolution fails', () => {
    mkdirSync(join(dir, 'a', 'b', 'c'), { recursive: true })
    const events: Array<[number, boolean]> = []
    const { wasi, memory } = make({ onHostFd: (fd, o) => events.push([fd, o]) })
    const base = hostFds(dir).under.length
    expect(open(wasi, memory, 'a/b/c/f').errno).toBe(0)
    expect(open(wasi, memory, 'a/b/c/../../../../x').errno).toBe(Errno.NOTCAPABLE)
    expect(open(wasi, memory, 'a/b/missing/x').errno).toBe(Errno.NOENT)
    // One file stays open; every directory of the walks was closed again.
    expect(hostFds(dir).under.length).toBe(base + 1)
    expect(events.filter(([, o]) => o).length - events.filter(([, o]) => !o).length).toBe(2)
    wasi.close()
  })

  test('a guest holds at most MAX_FDS fds: EMFILE, and nothing is created', () => {
    const { wasi, memory } = make()
    try {
      for (let i = 3 + 1; i < MAX_FDS; i++) expect(open(wasi, memory, `f${i}`).errno).toBe(0)
      expect(open(wasi, memory, 'one-too-many').errno).toBe(Errno.MFILE)
      expect(readdirSync(dir)).not.toContain('one-too-many')
    } finally {
      wasi.close()
    }
  })

  linuxOnly('a failed createWasi closes what it had opened', () => {
    const before = hostFds(dir)
    const events: Array<[number, boolean]> = []
    expect(() => createWasi({
      args: [],
      env: {},
      preopens: [
        { guestPath: '/a', hostPath: dir, readOnly: false },
        { guestPath: '/b', hostPath: join(dir, 'missing'), readOnly: false }
      ],
      stdin: new Uint8Array(),
      stdoutLimit: 1,
      stderrLimit: 1,
      deadline: 0,
      onHostFd: (fd, o) => events.push([fd, o])
    })).toThrow()
    expect(hostFds(dir)).toEqual(before)
    expect(events.map(([, o]) => o)).toEqual([true, false])
  })

  test('a throwing onHostFd fails the open with EIO and leaks nothing', () => {
    let calls = 0
    const { wasi, memory } = make({
      onHostFd: (_fd, isOpen) => {
        if (isOpen && ++calls > 1) throw new Error('shared table full')
      }
    })
    try {
      expect(open(wasi, memory, 'f').errno).toBe(Errno.IO)
      expect(hostFds(dir).under).toEqual([dir]) // the preopen only
    } finally {
      wasi.close()
    }
  })

  const withClang = hasClang() ? linuxOnly : test.skip
  withClang('a guest that traps with files open: close() in finally closes them all', () => {
    const wasm = cSource(`
#include <fcntl.h>
#include <stdio.h>
int main(void) {
  for (int i = 0; i < 20; i++) {
    char name[32];
    snprintf(name, sizeof name, "/data/t%d", i);
    if (open(name, O_WRONLY | O_CREAT, 0644) < 0) return 1;
  }
  __builtin_trap();
}
`)
    const before = hostFds(dir)
    const { wasi } = make()
    try {
      const instance = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(wasm)), { wasi_snapshot_preview1: wasi.imports })
      wasi.bind(instance.exports.memory as WebAssembly.Memory)
      expect(() => (instance.exports._start as () => void)()).toThrow(/unreachable/)
      expect(hostFds(dir).under).toHaveLength(21)
    } finally {
      wasi.close()
    }
    expect(hostFds(dir)).toEqual(before)
  })
})

// The worker gets the WASI sources transpiled to CommonJS: jest does not transform worker
// code, and this test must not depend on a build of the whole project.
let compiled: string | undefined
function compileWasi (): string {
  if (compiled !== undefined) return compiled
  const src = join(__dirname, '..', '..', 'src', 'sandbox', 'wasi')
  const out = mkdtempSync(join(tmpdir(), 'wasi-js-'))
  for (const file of readdirSync(src).filter((f) => f.endsWith('.ts'))) {
    const js = ts.transpileModule(readFileSync(join(src, file), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true }
    })
    writeFileSync(join(out, file.replace(/\.ts$/, '.js')), js.outputText)
  }
  compiled = out
  return out
}

afterAll(() => {
  if (compiled !== undefined) rmSync(compiled, { recursive: true, force: true })
})

// Opens files through the WASI, mirrors its host fds into shared memory the way the
// integrating worker should, then sleeps in poll_oneoff for a minute.
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads')
const { createWasi } = require(workerData.lib + '/index.js')
const mirror = new Int32Array(workerData.mirror)
const wasi = createWasi({
  args: [], env: {}, stdin: new Uint8Array(), stdoutLimit: 1024, stderrLimit: 1024,
  preopens: [{ guestPath: '/data', hostPath: workerData.dir, readOnly: false }],
  deadline: Date.now() + 60000,
  onHostFd (fd, open) {
    if (open) { for (let i = 0; i < mirror.length; i++) if (Atomics.compareExchange(mirror, i, 0, fd) === 0) return }
    else { for (let i = 0; i < mirror.length; i++) if (Atomics.compareExchange(mirror, i, fd, 0) === fd) return }
  }
})
const memory = new WebAssembly.Memory({ initial: 1 })
wasi.bind(memory)
const dv = new DataView(memory.buffer)
for (let i = 0; i < 5; i++) {
  const name = Buffer.from('held-' + i)
  new Uint8Array(memory.buffer).set(name, 1024)
  const e = wasi.imports.path_open(3, 1, 1024, name.length, 1, (1n << 30n) - 1n, (1n << 30n) - 1n, 0, 512)
  if (e !== 0) throw new Error('path_open ' + e)
}
// One relative monotonic clock subscription of 60 s.
dv.setBigUint64(2048, 1n, true)
dv.setUint8(2056, 0)
dv.setUint32(2064, 1, true)
dv.setBigUint64(2072, 60000000000n, true)
dv.setUint16(2088, 0, true)
parentPort.postMessage('sleeping')
wasi.imports.poll_oneoff(2048, 4096, 1, 4200)
parentPort.postMessage('woke')
`

/** Starts the worker, waits until it sleeps, terminates it; returns what it held and the time. */
async function terminateSleeper (trackUnmanagedFds: boolean): Promise<{ ms: number, held: number, recorded: number[] }> {
  const lib = compileWasi()
  const mirror = new SharedArrayBuffer(4 * 64)
  const worker = new Worker(workerSource, { eval: true, workerData: { lib, dir, mirror }, trackUnmanagedFds })
  const messages: string[] = []
  await new Promise<void>((resolve, reject) => {
    worker.on('message', (m: string) => {
      messages.push(m)
      if (m === 'sleeping') resolve()
    })
    worker.on('error', reject)
  })
  // Let it get into Atomics.wait.
  await new Promise((resolve) => setTimeout(resolve, 50))
  const held = hostFds(dir).under.length
  const started = performance.now()
  await worker.terminate()
  const ms = performance.now() - started
  expect(messages).toEqual(['sleeping'])
  return { ms, held, recorded: Array.from(new Int32Array(mirror)).filter((fd) => fd !== 0) }
}

describe('worker termination', () => {
  // Node closes fds a worker opened through fs.open* when it exits, unless the Worker was
  // created with trackUnmanagedFds: false (piscina's default is true). Every host fd of this
  // WASI goes through fs.openSync, so the default already covers a terminated call; the
  // onHostFd mirror is what covers the other setting.
  linuxOnly('a worker asleep in poll_oneoff terminates at once, and Node closes what it held', async () => {
    const r = await terminateSleeper(true)
    expect(r.held).toBe(6) // the preopen and 5 files
    expect(r.ms).toBeLessThan(100) // measured: 10-25 ms
    expect(hostFds(dir).under).toEqual([])
    // The mirror still lists them: closing those numbers now would close someone else's fds.
    expect(r.recorded).toHaveLength(6)
  })

  linuxOnly('with trackUnmanagedFds: false the fds leak, and the onHostFd mirror is how to close them', async () => {
    const r = await terminateSleeper(false)
    expect(r.ms).toBeLessThan(100)
    expect(r.recorded).toHaveLength(6)
    expect(hostFds(dir).under).toHaveLength(6)
    for (const fd of r.recorded) closeSync(fd)
    expect(hostFds(dir).under).toEqual([])
  })
})
