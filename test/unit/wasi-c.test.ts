// Real C programs (clang + wasi-libc) against createWasi: what guests actually call, in the
// order libc calls it. Each program prints one line per step, with errno numbers (wasi-libc's
// errno values are WASI's), so the assertions read like a transcript.
import { existsSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cFixture, hasClang } from '../helpers/fixtures'
import { createWasi, Errno, WasiExit } from '../../src/sandbox/wasi'
import type { Preopen, WasiOptions } from '../../src/sandbox/wasi'

// The project's lib setting has no WebAssembly types; only this much of the API is needed.

const clang = hasClang()
if (!clang) {
  // Visible in the test output, not just a silently shorter run.
  console.warn('wasi-c.test: clang-14 or wasi-libc missing: C program tests are skipped')
}
const describeC = clang ? describe : describe.skip

interface Run { code: number, stdout: string, stderr: string, overflowed: boolean }

/** Instantiates a WASI command, runs _start, and always closes the instance. */
function run (wasm: Uint8Array, options: Partial<WasiOptions> = {}): Run {
  const wasi = createWasi({
    args: ['prog'],
    env: {},
    preopens: [],
    stdin: new Uint8Array(0),
    stdoutLimit: 1 << 20,
    stderrLimit: 4096,
    deadline: Date.now() + 10_000,
    ...options
  })
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(wasm)), { wasi_snapshot_preview1: wasi.imports })
    wasi.bind(instance.exports.memory as { buffer: ArrayBuffer })
    let code = 0
    try {
      (instance.exports._start as () => void)()
    } catch (err) {
      if (!(err instanceof WasiExit)) throw err
      code = err.code
    }
    const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8')
    return { code, stdout: text(wasi.stdout()), stderr: text(wasi.stderr()), overflowed: wasi.stdoutOverflowed }
  } finally {
    wasi.close()
  }
}

let base: string
let data: string
let canary: string
const CANARY = 'CANARY-6f1d2c-must-never-leak'

beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), 'wasi-c-'))
  data = join(base, 'data')
  mkdirSync(data)
  canary = join(base, 'canary.txt')
  writeFileSync(canary, CANARY)
})

afterEach(() => {
  expect(readFileSync(canary, 'utf8')).toBe(CANARY)
  rmSync(base, { recursive: true, force: true })
})

const rw = (): Preopen => ({ guestPath: '/data', hostPath: data, readOnly: false })

describeC('C programs', () => {
  test('stdio, args, env, exit code', () => {
    const wasm = cFixture('wasi-stdio')
    const r = run(wasm, {
      args: ['stdio', '7', 'two words'],
      env: { MODE: 'fast' },
      stdin: Buffer.from('hello from the body')
    })
    expect(r.code).toBe(7)
    expect(r.stdout).toBe([
      'argc=3', 'argv[0]=stdio', 'argv[1]=7', 'argv[2]=two words',
      'MODE=fast', 'HOME=(unset)',
      'stdin<hello from the body>', 'stdin_bytes=19 eof=1', ''
    ].join('\n'))
    expect(r.stderr).toBe('to stderr\n')
  })
})

describeC('C programs: files', () => {
  test('create, read, write, seek, append, rename, mkdir, readdir, timestamps, unlink, rmdir', () => {
    const r = run(cFixture('wasi-files'), { preopens: [rw()] })
    expect(r.stdout).not.toContain('FAIL')
    expect(r.code).toBe(0)
    expect(readFileSync(join(data, 'b.txt'), 'utf8')).toBe('HELLO')
    expect(readdirSync(join(data, 'many'))).toHaveLength(150)
    expect(statSync(join(data, 'b.txt')).mtimeMs).toBeGreaterThan(Date.now() - 60_000)
  })
})

/** Plants the operator's symlinks: some stay inside /data, some lead out of it. */
function plant (): void {
  const real = realpathSync(data)
  writeFileSync(join(data, 'inside.txt'), 'inside')
  mkdirSync(join(data, 'sub'))
  writeFileSync(join(data, 'sub', 'deep.txt'), 'deep')
  symlinkSync('inside.txt', join(data, 'link-in'))
  symlinkSync('sub', join(data, 'link-in-dir'))
  symlinkSync('../inside.txt', join(data, 'sub', 'link-parent'))
  symlinkSync(join(real, 'inside.txt'), join(data, 'abs-in'))
  symlinkSync('../canary.txt', join(data, 'link-out'))
  symlinkSync(realpathSync(canary), join(data, 'abs-out'))
  symlinkSync('..', join(data, 'dir-out'))
  symlinkSync(realpathSync(base), join(data, 'abs-dir-out'))
  symlinkSync('../../canary.txt', join(data, 'sub', 'link-out-rel'))
  symlinkSync('loop2', join(data, 'loop1'))
  symlinkSync('loop1', join(data, 'loop2'))
}

describeC('C programs: escapes', () => {
  test('no path, symlink, link or rename leaves /data', () => {
    plant()
    const r = run(cFixture('wasi-escape'), { preopens: [rw()] })
    expect(r.code).toBe(0)
    expect(r.stdout + r.stderr).not.toContain('CANARY')
    const NOTCAP = `errno=${Errno.NOTCAPABLE}`
    const PERM = `errno=${Errno.PERM}`
    const LOOP = `errno=${Errno.LOOP}`
    expect(r.stdout.trimEnd().split('\n')).toEqual([
      `/data/../canary.txt: ${NOTCAP}`,
      `/data/sub/../../canary.txt: ${NOTCAP}`,
      `/data/link-out: ${NOTCAP}`,
      `/data/abs-out: ${NOTCAP}`,
      `/data/dir-out/canary.txt: ${NOTCAP}`,
      `/data/abs-dir-out/canary.txt: ${NOTCAP}`,
      `/data/sub/link-out-rel: ${NOTCAP}`,
      `/data/link-in-dir/../../canary.txt: ${NOTCAP}`,
      `/data/loop1: ${LOOP}`,
      `/canary.txt: ${NOTCAP}`,
      `../canary.txt: ${NOTCAP}`,
      `wasi ../canary.txt: ${NOTCAP}`,
      `wasi absolute: ${NOTCAP}`,
      `wasi ..: ${NOTCAP}`,
      `wasi sub/../..: ${NOTCAP}`,
      `wasi link-out nofollow: ${LOOP}`,
      `stat dir-out/canary.txt: ${NOTCAP}`,
      'lstat link-out: ok ',
      `opendir dir-out: ${NOTCAP}`,
      `readlink link-out: ${NOTCAP}`,
      `readlink abs-out: ${NOTCAP}`,
      'readlink link-in: inside.txt',
      'readlink abs-in: inside.txt',
      '/data/link-in: ok inside',
      '/data/link-in-dir/deep.txt: ok deep',
      '/data/sub/link-parent: ok inside',
      '/data/abs-in: ok inside',
      `/data/dir-out/canary.txt: ${NOTCAP}`,
      `/data/link-out: ${NOTCAP}`,
      `/data/../created-outside.txt: ${NOTCAP}`,
      `/data/dir-out/created-outside.txt: ${NOTCAP}`,
      `mkdir ../newdir: ${NOTCAP}`,
      `unlink dir-out/canary.txt: ${NOTCAP}`,
      `truncate link-out: ${NOTCAP}`,
      // A symlink gets new names and places like a file (as wasmtime); followed, it is judged
      // again where it is.
      'link link-out (symlink itself): ok ',
      `/data/hl1: ${NOTCAP}`,
      `linkat follow link-out: ${NOTCAP}`,
      `link dir-out/canary.txt: ${NOTCAP}`,
      `link inside.txt to ../: ${NOTCAP}`,
      `rename inside.txt to ../: ${NOTCAP}`,
      `rename dir-out/canary.txt in: ${NOTCAP}`,
      'rename hl1 (symlink): ok ',
      `/data/sub/moved: errno=${Errno.NOENT}`,
      `rename sub onto dir-out: errno=${Errno.NOTDIR}`,
      `symlink: ${PERM}`,
      `symlink absolute: ${PERM}`,
      `symlink /etc/passwd: ${PERM}`,
      `symlink ..: ${PERM}`,
      `symlink sub/../../canary.txt: ${PERM}`,
      `symlink ../../canary.txt in sub: ${PERM}`,
      `symlink in dir-out: ${NOTCAP}`,
      `/data/mine: errno=${Errno.NOENT}`,
      'symlink ../inside.txt in sub: ok ',
      '/data/sub/mine-in: ok inside',
      'rename sub/mine-in up: ok ',
      `/data/mine-up: ${NOTCAP}`,
      `set_times link-out: ${NOTCAP}`,
      `set_times dir-out/canary.txt: ${NOTCAP}`,
      'link inside: ok'
    ])
    // Nothing appeared beside the preopen, nothing moved inside it.
    expect(readdirSync(base).sort()).toEqual(['canary.txt', 'data'])
    expect(existsSync(join(data, 'got.txt'))).toBe(false)
    expect(existsSync(join(data, 'mine'))).toBe(false)
    expect(existsSync(join(data, 'sub', 'mine'))).toBe(false)
    expect(readFileSync(join(data, 'inside-2.txt'), 'utf8')).toBe('inside')
    expect(statSync(canary).mtimeMs).toBeLessThan(Date.now() + 1)
  })
})

describeC('C programs: read-only preopen', () => {
  test('every change is refused, reading works, the writable volume beside it works', () => {
    const ro = join(base, 'ro')
    mkdirSync(join(ro, 'sub'), { recursive: true })
    writeFileSync(join(ro, 'file.txt'), 'readonly')
    const before = statSync(join(ro, 'file.txt')).mtimeMs
    const r = run(cFixture('wasi-readonly'), {
      preopens: [rw(), { guestPath: '/ro', hostPath: ro, readOnly: true }]
    })
    const ROFS = `errno=${Errno.ROFS}`
    expect(r.code).toBe(0)
    expect(r.stdout.trimEnd().split('\n')).toEqual([
      'read: ok',
      // The fd was opened without write rights (asking for them was EROFS): the host says
      // ENOTCAPABLE, which wasi-libc's write() reports as EBADF like POSIX.
      `write on read-only fd: errno=${Errno.BADF}`,
      `ftruncate: errno=${Errno.NOTCAPABLE}`,
      `fd set_times: ${ROFS}`,
      `fd allocate: errno=${Errno.NOTCAPABLE}`,
      `open O_RDWR: ${ROFS}`,
      `open O_WRONLY|O_APPEND: ${ROFS}`,
      `open O_TRUNC: ${ROFS}`,
      `open O_CREAT new: ${ROFS}`,
      `fopen w: ${ROFS}`,
      `mkdir: ${ROFS}`,
      `rmdir: ${ROFS}`,
      `unlink: ${ROFS}`,
      `rename: ${ROFS}`,
      `rename to rw volume: ${ROFS}`,
      `link inside: ${ROFS}`,
      `link to rw volume: ${ROFS}`,
      `truncate: ${ROFS}`,
      `path set_times: ${ROFS}`,
      `dir set_times: ${ROFS}`,
      `symlink: ${ROFS}`,
      'rw volume write: ok'
    ])
    expect(readdirSync(ro).sort()).toEqual(['file.txt', 'sub'])
    expect(readFileSync(join(ro, 'file.txt'), 'utf8')).toBe('readonly')
    expect(statSync(join(ro, 'file.txt')).mtimeMs).toBe(before)
    expect(readdirSync(data)).toEqual(['w.txt'])
  })
})

describeC('C programs: quota', () => {
  test('writes stop at the quota with EDQUOT; unlink and truncate give the bytes back', () => {
    writeFileSync(join(data, 'seed'), Buffer.alloc(2000, 1))
    const r = run(cFixture('wasi-quota'), { preopens: [{ ...rw(), quotaBytes: 10_500 }] })
    expect(r.code).toBe(0)
    expect(r.stdout.trimEnd().split('\n')).toEqual([
      // 2000 bytes were there before the call: 8500 left, whole 1000-byte writes only.
      `fill: wrote=8000 errno=${Errno.DQUOT}`,
      `fallocate past quota: ${Errno.DQUOT}`,
      'unlink seed: 0',
      `after unlink: wrote=2000 errno=${Errno.DQUOT}`,
      'truncate: 0',
      `after truncate: wrote=10000 errno=${Errno.DQUOT}`
    ])
    expect(statSync(join(data, 'big')).size).toBe(0)
    expect(statSync(join(data, 'other')).size).toBe(10_000)
  })
})

describeC('C programs: stdio belongs to the guest table', () => {
  test('fd_renumber onto fd 1 sends stdout into a file inside the jail; closing fd 2 is local', () => {
    const r = run(cFixture('wasi-renumber'), { preopens: [rw()] })
    expect(r.code).toBe(0)
    expect(r.stdout).toBe('before\n')
    expect(r.stderr).toBe('')
    expect(readFileSync(join(data, 'out.txt'), 'utf8')).toBe([
      'after renumber r=0',
      `write to closed stderr: -1 errno=${Errno.BADF}`,
      `renumber bad fd: ${Errno.BADF}`,
      ''
    ].join('\n'))
    // The host's own stdout is still usable by the test process.
    expect(process.stdout.writable).toBe(true)
  })
})

describeC('C programs: sleep', () => {
  test('a 100 s sleep returns at the deadline', () => {
    const wasm = cFixture('wasi-sleep') // built (clang) before the clock starts
    const started = Date.now()
    const r = run(wasm, { deadline: started + 300 })
    const elapsed = Date.now() - started
    expect(r.code).toBe(0)
    expect(elapsed).toBeGreaterThanOrEqual(250)
    expect(elapsed).toBeLessThan(3000)
    expect(r.stdout).toMatch(/^slept_ms=\d+\n$/)
  })
})
