// The same boundary where /proc is missing (macOS laptops, odd sandboxes): the jail then names
// directories by real path. procFdWorks is forced to false so this runs everywhere.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cFixture, hasClang } from '../helpers/fixtures'
import { createWasi, Errno, WasiExit } from '../../src/sandbox/wasi'
import type { Wasi } from '../../src/sandbox/wasi'
import { Lookupflags, Oflags, Rights } from '../../src/sandbox/wasi/constants'

jest.mock('../../src/sandbox/wasi/jail', () => ({
  ...jest.requireActual<typeof import('../../src/sandbox/wasi/jail')>('../../src/sandbox/wasi/jail'),
  procFdWorks: () => false
}))

const ALL = (1n << 30n) - 1n
const CANARY = 'CANARY-fallback-41c0'

let base: string
let data: string
let canary: string

beforeEach(() => {
  base = realpathSync(mkdtempSync(join(tmpdir(), 'wasi-fb-')))
  data = join(base, 'data')
  mkdirSync(join(data, 'sub'), { recursive: true })
  canary = join(base, 'canary.txt')
  writeFileSync(canary, CANARY)
  writeFileSync(join(data, 'inside.txt'), 'inside')
  writeFileSync(join(data, 'sub', 'deep.txt'), 'deep')
  symlinkSync('inside.txt', join(data, 'link-in'))
  symlinkSync('sub', join(data, 'link-in-dir'))
  symlinkSync('../inside.txt', join(data, 'sub', 'link-parent'))
  symlinkSync(join(data, 'inside.txt'), join(data, 'abs-in'))
  symlinkSync('../canary.txt', join(data, 'link-out'))
  symlinkSync(canary, join(data, 'abs-out'))
  symlinkSync('..', join(data, 'dir-out'))
  symlinkSync(base, join(data, 'abs-dir-out'))
  symlinkSync('../../canary.txt', join(data, 'sub', 'link-out-rel'))
  symlinkSync('loop2', join(data, 'loop1'))
  symlinkSync('loop1', join(data, 'loop2'))
})

afterEach(() => {
  expect(readFileSync(canary, 'utf8')).toBe(CANARY)
  expect(readdirSync(base).sort()).toEqual(['canary.txt', 'data'])
  rmSync(base, { recursive: true, force: true })
})

function make (events: Array<[number, boolean]> = [], hostPath = data): Wasi {
  return createWasi({
    args: ['prog'],
    env: {},
    preopens: [{ guestPath: '/data', hostPath, readOnly: false }],
    stdin: new Uint8Array(),
    stdoutLimit: 1 << 16,
    stderrLimit: 1024,
    deadline: Date.now() + 5000,
    onHostFd: (fd, open) => events.push([fd, open])
  })
}

test('real-path mode: no transient fds, escapes refused, inside links followed', () => {
  const events: Array<[number, boolean]> = []
  const wasi = make(events)
  const memory = new WebAssembly.Memory({ initial: 1 })
  wasi.bind(memory)
  const open = (path: string, oflags = 0, dir = 3, base = ALL): { errno: number, fd: number } => {
    const b = Buffer.from(path)
    new Uint8Array(memory.buffer).set(b, 1024)
    const errno = wasi.imports.path_open(dir, Lookupflags.SYMLINK_FOLLOW, 1024, b.byteLength, oflags, base, ALL, 0, 512)
    return { errno, fd: new DataView(memory.buffer).getUint32(512, true) }
  }
  try {
    expect(open('link-in-dir/deep.txt').errno).toBe(0)
    // Only the preopen and the file: the walk opened no directory fds.
    expect(events).toHaveLength(2)
    for (const p of ['../canary.txt', 'link-out', 'abs-out', 'dir-out/canary.txt', 'abs-dir-out/canary.txt', 'sub/link-out-rel', 'link-in-dir/../../canary.txt']) {
      expect([p, open(p).errno]).toEqual([p, Errno.NOTCAPABLE])
      expect([p, open(p, Oflags.CREAT | Oflags.TRUNC).errno]).toEqual([p, Errno.NOTCAPABLE])
    }
    expect(open('loop1').errno).toBe(Errno.LOOP)
    for (const p of ['link-in', 'sub/link-parent', 'abs-in']) expect([p, open(p).errno]).toEqual([p, 0])
    const sub = open('sub', Oflags.DIRECTORY, 3, ALL & ~Rights.FD_WRITE) // FD_WRITE on a directory: EISDIR
    expect(sub.errno).toBe(0)
    expect(open('../inside.txt', 0, sub.fd).errno).toBe(Errno.NOTCAPABLE)
    expect(open('deep.txt', 0, sub.fd).errno).toBe(0)
  } finally {
    wasi.close()
  }
})

const describeC = hasClang() ? describe : describe.skip
describeC('real-path mode with C programs', () => {
  function run (name: string, hostPath = data): string {
    const wasi = make([], hostPath)
    try {
      const instance = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(cFixture(name))), { wasi_snapshot_preview1: wasi.imports })
      wasi.bind(instance.exports.memory as WebAssembly.Memory)
      try {
        (instance.exports._start as () => void)()
      } catch (err) {
        if (!(err instanceof WasiExit)) throw err
        if (err.code !== 0) return `exit ${err.code}\n${Buffer.from(wasi.stdout()).toString()}`
      }
      return Buffer.from(wasi.stdout()).toString()
    } finally {
      wasi.close()
    }
  }

  test('the escape transcript refuses every way out', () => {
    const out = run('wasi-escape')
    expect(out).not.toContain('CANARY')
    // Every attempt that reads outside or changes something outside is refused.
    const allowed = new Set(['lstat link-out', 'readlink link-in', 'readlink abs-in', '/data/link-in',
      '/data/link-in-dir/deep.txt', '/data/sub/link-parent', '/data/abs-in', 'link inside',
      // Symlinks get names and places like files, and guests make ones that stay inside.
      'link link-out (symlink itself)', 'rename hl1 (symlink)', 'symlink ../inside.txt in sub',
      '/data/sub/mine-in', 'rename sub/mine-in up'])
    // Refusals that are not about leaving: the name leads nowhere, or the rename is not possible.
    const other = new Map([['/data/sub/moved', Errno.NOENT], ['/data/mine', Errno.NOENT], ['rename sub onto dir-out', Errno.NOTDIR]])
    for (const line of out.trimEnd().split('\n')) {
      const name = line.slice(0, line.lastIndexOf(': '))
      if (allowed.has(name)) expect(line).not.toContain('errno=')
      else if (other.has(name)) expect(line).toBe(`${name}: errno=${other.get(name) ?? -1}`)
      else expect(line).toMatch(new RegExp(`errno=(${Errno.NOTCAPABLE}|${Errno.PERM}|${Errno.LOOP})$`))
    }
  })

  test('the files program passes', () => {
    const clean = mkdtempSync(join(tmpdir(), 'wasi-fb-files-'))
    try {
      const out = run('wasi-files', clean)
      expect(out).not.toContain('FAIL')
      expect(out).toContain('ok readdir many')
    } finally {
      rmSync(clean, { recursive: true, force: true })
    }
  })
})
