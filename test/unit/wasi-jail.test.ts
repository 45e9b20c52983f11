// The security boundary, called directly: every path function against every way out, in both
// resolution modes (/proc fd paths and real paths); read-only volumes; byte quotas.
import { constants, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createWasi, Errno } from '../../src/sandbox/wasi'
import type { Preopen, Wasi, WasiImports } from '../../src/sandbox/wasi'
import { Fstflags, Lookupflags, Oflags, Rights } from '../../src/sandbox/wasi/constants'
import { HostFds } from '../../src/sandbox/wasi/host-fds'
import { Jail, PathDirNode, procFdWorks, visibleLinkText } from '../../src/sandbox/wasi/jail'
import { createQuotaBlock, ENTRY_BYTES, measureUsage, Quota, retireQuotaBlock } from '../../src/sandbox/wasi/volume'
import { WasiError } from '../../src/sandbox/wasi/errors'
import { measureVolume } from '../../src/sandbox/wasi/volume-usage'

const ALL = (1n << 30n) - 1n
/** What libcs ask for when they open a directory: everything but FD_WRITE (EISDIR, as wasmtime). */
const DIR = ALL & ~Rights.FD_WRITE
const FOLLOW = Lookupflags.SYMLINK_FOLLOW
const CANARY = 'CANARY-jail-9b7e'

/** Just enough of a guest: memory with strings in it, and the imports. */
class Guest {
  readonly memory = new WebAssembly.Memory({ initial: 2 })
  readonly wasi: Wasi
  readonly w: WasiImports
  #top = 1024

  constructor (preopens: Preopen[]) {
    this.wasi = createWasi({ args: [], env: {}, preopens, stdin: new Uint8Array(), stdoutLimit: 4096, stderrLimit: 64, deadline: Date.now() + 5000 })
    this.wasi.bind(this.memory)
    this.w = this.wasi.imports
  }

  alloc (n: number): number {
    const p = this.#top
    this.#top += Math.ceil(n / 8) * 8 + 8
    return p
  }

  s (text: string): [number, number] {
    const b = Buffer.from(text)
    const p = this.alloc(b.byteLength)
    new Uint8Array(this.memory.buffer).set(b, p)
    return [p, b.byteLength]
  }

  u32 (p: number): number { return new DataView(this.memory.buffer).getUint32(p, true) }

  open (path: string, oflags = 0, base = ALL, dir = 3, lookup = FOLLOW): { errno: number, fd: number } {
    const out = this.alloc(4)
    const errno = this.w.path_open(dir, lookup, ...this.s(path), oflags, base, ALL, 0, out)
    return { errno, fd: this.u32(out) }
  }

  write (fd: number, text: string): number {
    const [p, l] = this.s(text)
    const iov = this.alloc(8)
    const dv = new DataView(this.memory.buffer)
    dv.setUint32(iov, p, true)
    dv.setUint32(iov + 4, l, true)
    return this.w.fd_write(fd, iov, 1, this.alloc(4))
  }

  read (fd: number): string {
    const buf = this.alloc(256)
    const iov = this.alloc(8)
    const dv = new DataView(this.memory.buffer)
    dv.setUint32(iov, buf, true)
    dv.setUint32(iov + 4, 256, true)
    const n = this.alloc(4)
    this.w.fd_read(fd, iov, 1, n)
    return Buffer.from(new Uint8Array(this.memory.buffer, buf, this.u32(n))).toString()
  }
}

let base: string
let data: string
let canary: string
const guests: Guest[] = []
const guest = (preopens: Preopen[]): Guest => {
  const g = new Guest(preopens)
  guests.push(g)
  return g
}

beforeEach(() => {
  base = realpathSync(mkdtempSync(join(tmpdir(), 'wasi-jail-')))
  data = join(base, 'data')
  mkdirSync(join(data, 'sub', 'deeper'), { recursive: true })
  canary = join(base, 'canary.txt')
  writeFileSync(canary, CANARY)
  writeFileSync(join(data, 'inside.txt'), 'inside')
  mkdirSync(join(base, 'outdir'))
  writeFileSync(join(base, 'outdir', 'secret'), CANARY)
  symlinkSync('../canary.txt', join(data, 'link-out'))
  symlinkSync(canary, join(data, 'abs-out'))
  symlinkSync('..', join(data, 'dir-out'))
  symlinkSync(join(base, 'outdir'), join(data, 'abs-dir-out'))
  symlinkSync('../../canary.txt', join(data, 'sub', 'link-out-rel'))
  symlinkSync('../../../outdir', join(data, 'sub', 'deeper', 'up3'))
  symlinkSync('inside.txt', join(data, 'link-in'))
  symlinkSync(join(data, 'sub'), join(data, 'abs-in-dir'))
  symlinkSync('nowhere/../../canary.txt', join(data, 'dangling-out'))
})

afterEach(() => {
  for (const g of guests.splice(0)) g.wasi.close()
  expect(readFileSync(canary, 'utf8')).toBe(CANARY)
  expect(readFileSync(join(base, 'outdir', 'secret'), 'utf8')).toBe(CANARY)
  expect(readdirSync(base).sort()).toEqual(['canary.txt', 'data', 'outdir'])
  expect(readdirSync(join(base, 'outdir'))).toEqual(['secret'])
  rmSync(base, { recursive: true, force: true })
})

const rw = (): Preopen => ({ guestPath: '/data', hostPath: data, readOnly: false })

// Paths that lead out of /data, and what they must answer.
const escapes: Array<[string, number]> = [
  ['..', Errno.NOTCAPABLE],
  ['../canary.txt', Errno.NOTCAPABLE],
  ['sub/../../canary.txt', Errno.NOTCAPABLE],
  ['sub/deeper/../../..', Errno.NOTCAPABLE],
  ['./../data/inside.txt', Errno.NOTCAPABLE],
  ['/etc/passwd', Errno.NOTCAPABLE],
  ['/proc/self/environ', Errno.NOTCAPABLE],
  ['link-out', Errno.NOTCAPABLE],
  ['abs-out', Errno.NOTCAPABLE],
  ['dir-out/canary.txt', Errno.NOTCAPABLE],
  ['dir-out/outdir/secret', Errno.NOTCAPABLE],
  ['abs-dir-out/secret', Errno.NOTCAPABLE],
  ['sub/link-out-rel', Errno.NOTCAPABLE],
  ['sub/deeper/up3/secret', Errno.NOTCAPABLE],
  ['link-in/../canary.txt', Errno.NOTDIR],
  // `nowhere` does not exist: the walk stops there, before its `..` could matter.
  ['dangling-out', Errno.NOENT],
  ['abs-in-dir/../../canary.txt', Errno.NOTCAPABLE]
]

describe.each(escapes)('escape %s', (path, errno) => {
  // Final components that are themselves the escaping symlink are refused by following
  // calls; non-following calls act on the link itself, which is inside (checked below).
  const lastIsLink = ['link-out', 'abs-out', 'sub/link-out-rel', 'dangling-out'].includes(path)

  test('path_open (follow), for reading and for writing', () => {
    const g = guest([rw()])
    expect(g.open(path).errno).toBe(errno)
    expect(g.open(path, Oflags.CREAT | Oflags.TRUNC).errno).toBe(errno)
  })

  test('path_filestat_get / set_times (follow)', () => {
    const g = guest([rw()])
    expect(g.w.path_filestat_get(3, FOLLOW, ...g.s(path), g.alloc(64))).toBe(errno)
    expect(g.w.path_filestat_set_times(3, FOLLOW, ...g.s(path), 0n, 0n, Fstflags.MTIM_NOW)).toBe(errno)
  })

  test('path_create_directory, path_link from/to, path_rename from/to', () => {
    const g = guest([rw()])
    const target = `${path}/new`
    if (!lastIsLink) {
      expect(g.w.path_create_directory(3, ...g.s(target))).not.toBe(0)
      expect(g.w.path_rename(3, ...g.s(path), 3, ...g.s('moved'))).not.toBe(0)
      expect(g.w.path_unlink_file(3, ...g.s(path))).not.toBe(0)
      expect(g.w.path_remove_directory(3, ...g.s(path))).not.toBe(0)
    }
    expect(g.w.path_link(3, FOLLOW, ...g.s(path), 3, ...g.s('hl'))).not.toBe(0)
    expect(g.w.path_link(3, 0, ...g.s('inside.txt'), 3, ...g.s(target))).not.toBe(0)
    expect(g.w.path_rename(3, ...g.s('inside.txt'), 3, ...g.s(target))).not.toBe(0)
    expect(existsSync(join(data, 'hl'))).toBe(false)
    expect(existsSync(join(data, 'moved'))).toBe(false)
    expect(readFileSync(join(data, 'inside.txt'), 'utf8')).toBe('inside')
  })
})

describe('symlinks', () => {
  test('the links themselves are inside: lstat and unlink work, readlink hides outside targets', () => {
    const g = guest([rw()])
    const st = g.alloc(64)
    expect(g.w.path_filestat_get(3, 0, ...g.s('link-out'), st)).toBe(0)
    const buf = g.alloc(256)
    const used = g.alloc(4)
    for (const name of ['link-out', 'abs-out', 'dir-out', 'abs-dir-out', 'sub/link-out-rel', 'dangling-out']) {
      expect([name, g.w.path_readlink(3, ...g.s(name), buf, 256, used)]).toEqual([name, Errno.NOTCAPABLE])
    }
    const text = (name: string): string => {
      expect(g.w.path_readlink(3, ...g.s(name), buf, 256, used)).toBe(0)
      return Buffer.from(new Uint8Array(g.memory.buffer, buf, g.u32(used))).toString()
    }
    expect(text('link-in')).toBe('inside.txt')
    // Absolute targets inside are shown relative: the host path never reaches the guest.
    expect(text('abs-in-dir')).toBe('sub')
    expect(g.w.path_unlink_file(3, ...g.s('link-out'))).toBe(0)
    expect(existsSync(join(data, 'link-out'))).toBe(false)
  })

  test('links that stay inside are followed, relative and absolute, as file and as directory', () => {
    writeFileSync(join(data, 'sub', 'deeper', 'f'), 'deep')
    symlinkSync('../inside.txt', join(data, 'sub', 'up-in'))
    const g = guest([rw()])
    for (const [path, content] of [['link-in', 'inside'], ['abs-in-dir/deeper/f', 'deep'], ['sub/up-in', 'inside'], ['abs-in-dir/../inside.txt', 'inside']] as const) {
      const { errno, fd } = g.open(path)
      expect([path, errno]).toEqual([path, 0])
      expect(g.read(fd)).toBe(content)
    }
    // Not following the final link: O_NOFOLLOW semantics.
    expect(g.open('link-in', 0, ALL, 3, 0).errno).toBe(Errno.LOOP)
  })

  test('symlink chains: ELOOP past the limit, cycles too', () => {
    symlinkSync('c1', join(data, 'c0'))
    for (let i = 1; i < 40; i++) symlinkSync(`c${i + 1}`, join(data, `c${i}`))
    writeFileSync(join(data, 'c40'), 'end')
    symlinkSync('self', join(data, 'self'))
    const g = guest([rw()])
    expect(g.open('c30').errno).toBe(0)
    expect(g.open('c0').errno).toBe(Errno.LOOP)
    expect(g.open('self').errno).toBe(Errno.LOOP)
    expect(g.open('self/x').errno).toBe(Errno.LOOP)
  })

  test('a guest creates symlinks whose relative target stays inside from where they are made', () => {
    writeFileSync(join(data, 'sub', 'deeper', 'f'), 'deep')
    const g = guest([rw()])
    const made: Array<[string, string, string]> = [
      // [target, link, what reading through it gives]
      ['inside.txt', 'mine', 'inside'],
      ['sub/deeper/f', 'mine-deep', 'deep'],
      ['../inside.txt', 'sub/up', 'inside'],
      ['deeper/../../inside.txt', 'sub/up-and-down', 'inside'],
      ['./.././inside.txt', 'sub/dots', 'inside'],
      ['../../inside.txt', 'sub/deeper/up2', 'inside'],
      // Made through a symlinked directory: judged from where it really lands (data/sub).
      ['../inside.txt', 'abs-in-dir/via-abs', 'inside']
    ]
    for (const [target, link, content] of made) {
      expect([link, g.w.path_symlink(...g.s(target), 3, ...g.s(link))]).toEqual([link, 0])
      const { errno, fd } = g.open(link)
      expect([link, errno]).toEqual([link, 0])
      expect(g.read(fd)).toBe(content)
    }
    expect(readlinkSync(join(data, 'sub', 'via-abs'))).toBe('../inside.txt')
    // Dangling, and to a directory.
    expect(g.w.path_symlink(...g.s('not-yet'), 3, ...g.s('later'))).toBe(0)
    expect(g.open('later').errno).toBe(Errno.NOENT)
    expect(g.w.path_symlink(...g.s('sub/deeper'), 3, ...g.s('to-dir'))).toBe(0)
    expect(g.read(g.open('to-dir/f').fd)).toBe('deep')
  })

  test('absolute or escaping symlink targets are EPERM, and nothing is created', () => {
    const g = guest([rw()])
    const refused: Array<[string, string]> = [
      ['/etc/passwd', 'abs'],
      [canary, 'abs-canary'],
      [join(data, 'inside.txt'), 'abs-inside'], // absolute even when it names something inside
      ['/', 'root'],
      ['..', 'up'],
      ['../canary.txt', 'out'],
      ['../data/inside.txt', 'out-and-back'],
      ['sub/../../canary.txt', 'down-and-out'],
      ['a/b/../../../canary.txt', 'nonexistent-then-out'],
      ['../../canary.txt', 'sub/out2'],
      ['../../../outdir/secret', 'sub/deeper/out3'],
      ['../inside.txt', 'abs-in-dir/deeper/../../out-via-abs'] // lands in data itself: '..' leaves
    ]
    for (const [target, link] of refused) {
      expect([target, link, g.w.path_symlink(...g.s(target), 3, ...g.s(link))]).toEqual([target, link, Errno.PERM])
    }
    // Where the link itself would be made outside, the walk refuses first.
    expect(g.w.path_symlink(...g.s('x'), 3, ...g.s('../made-outside'))).toBe(Errno.NOTCAPABLE)
    expect(g.w.path_symlink(...g.s('x'), 3, ...g.s('dir-out/made-outside'))).toBe(Errno.NOTCAPABLE)
    expect(g.w.path_symlink(...g.s('x'), 3, ...g.s('/made-outside'))).toBe(Errno.NOTCAPABLE)
    // A directory fd is its own root, as for `..` in paths (cap-std).
    const { fd } = g.open('sub', Oflags.DIRECTORY, DIR)
    expect(g.w.path_symlink(...g.s('../inside.txt'), fd, ...g.s('up'))).toBe(Errno.PERM)
    expect(g.w.path_symlink(...g.s('deeper'), fd, ...g.s('down'))).toBe(0)
    expect(readdirSync(data).sort()).toEqual(['abs-dir-out', 'abs-in-dir', 'abs-out', 'dangling-out', 'dir-out', 'inside.txt', 'link-in', 'link-out', 'sub'])
    expect(readdirSync(join(data, 'sub')).sort()).toEqual(['deeper', 'down', 'link-out-rel'])
  })

  test('symlinks rename and hard-link like files, and are judged again wherever they land', () => {
    const g = guest([rw()])
    // Made deep, where '../../inside.txt' is inside; moved to the top, where it leads out.
    expect(g.w.path_symlink(...g.s('../../canary.txt'), 3, ...g.s('sub/deeper/up'))).toBe(0)
    expect(g.open('sub/deeper/up').errno).toBe(Errno.NOENT) // data/canary.txt: inside, absent
    expect(g.w.path_rename(3, ...g.s('sub/deeper/up'), 3, ...g.s('up'))).toBe(0)
    expect(g.open('up').errno).toBe(Errno.NOTCAPABLE)
    expect(g.w.path_readlink(3, ...g.s('up'), g.alloc(64), 64, g.alloc(4))).toBe(Errno.NOTCAPABLE)
    expect(g.w.path_filestat_get(3, FOLLOW, ...g.s('up'), g.alloc(64))).toBe(Errno.NOTCAPABLE)
    // A hard link to a planted escaping symlink is one more name for it: refused when followed.
    expect(g.w.path_link(3, 0, ...g.s('link-out'), 3, ...g.s('sub/hl'))).toBe(0)
    expect(g.open('sub/hl').errno).toBe(Errno.NOENT) // '../canary.txt' from sub: data/canary.txt
    expect(g.w.path_link(3, 0, ...g.s('sub/link-out-rel'), 3, ...g.s('hl-top'))).toBe(0)
    expect(g.open('hl-top').errno).toBe(Errno.NOTCAPABLE)
    // A rename may replace a symlink, or put one over a file; following for link(2) links
    // the target.
    expect(g.w.path_rename(3, ...g.s('link-in'), 3, ...g.s('sub/moved'))).toBe(0)
    expect(g.w.path_rename(3, ...g.s('sub/moved'), 3, ...g.s('link-out'))).toBe(0)
    expect(readlinkSync(join(data, 'link-out'))).toBe('inside.txt')
    expect(g.w.path_link(3, FOLLOW, ...g.s('link-out'), 3, ...g.s('hard'))).toBe(0)
    expect(statSync(join(data, 'hard')).nlink).toBe(2)
  })
})

describe('directory fds are their own roots', () => {
  test('`..` cannot climb above an opened directory', () => {
    const g = guest([rw()])
    const { errno, fd } = g.open('sub', Oflags.DIRECTORY, DIR)
    expect(errno).toBe(0)
    expect(g.open('../inside.txt', 0, ALL, fd).errno).toBe(Errno.NOTCAPABLE)
    expect(g.open('deeper/..', 0, DIR, fd).errno).toBe(0)
    expect(g.w.path_create_directory(fd, ...g.s('made'))).toBe(0)
    expect(existsSync(join(data, 'sub', 'made'))).toBe(true)
  })

  // The race-free mode needs Linux procfs; elsewhere real paths are used (documented).
  const withProc = existsSync('/proc/self/fd') ? test : test.skip
  withProc('an opened directory keeps naming the same directory when the host path is swapped', () => {
    writeFileSync(join(data, 'sub', 'f'), 'original')
    const g = guest([rw()])
    const { fd } = g.open('sub', Oflags.DIRECTORY, DIR)
    // Another party moves the directory away and puts an escaping symlink in its place.
    renameSync(join(data, 'sub'), join(data, 'moved'))
    symlinkSync(join(base, 'outdir'), join(data, 'sub'))
    const opened = g.open('f', 0, ALL, fd)
    expect(opened.errno).toBe(0)
    expect(g.read(opened.fd)).toBe('original')
    expect(g.open('secret', 0, ALL, fd).errno).toBe(Errno.NOENT)
  })
})

const modes = existsSync('/proc/self/fd') ? [['/proc fd paths', true], ['real paths', false]] as const : [['real paths', false]] as const
describe.each(modes)('Jail.resolve with %s', (_label, useProc) => {
  test('never lands outside the root, releases every transient fd', () => {
    const fds = new HostFds()
    const jail = new Jail(fds, useProc)
    const rootFd = fds.open(data, constants.O_RDONLY | constants.O_DIRECTORY)
    expect(procFdWorks(rootFd, data)).toBe(useProc || existsSync('/proc/self/fd'))
    const node = useProc ? jail.nodeFor(rootFd, data) : new PathDirNode(data)
    const opened = fds.size
    for (const [path, errno] of escapes) {
      let got = 0
      try {
        jail.resolve(node, path, true).release()
      } catch (err) {
        got = err instanceof WasiError ? err.errno : -1
      }
      expect([path, got]).toEqual([path, errno])
      expect(fds.size).toBe(opened)
    }
    const loc = jail.resolve(node, 'abs-in-dir/deeper/../../link-in', true)
    expect(loc.name).toBe('inside.txt')
    expect(loc.depth).toBe(0)
    expect(readFileSync(loc.hostPath, 'utf8')).toBe('inside')
    loc.release()
    expect(fds.size).toBe(opened)
    fds.closeAll()
  })

  test('visibleLinkText judges link text lexically from the link\'s depth', () => {
    const root = new PathDirNode(data)
    const sub = new PathDirNode(join(data, 'sub'))
    expect(visibleLinkText(sub, 1, root, '../x')).toBe('../x')
    expect(() => visibleLinkText(sub, 1, root, '../../x')).toThrow(WasiError)
    expect(() => visibleLinkText(root, 0, root, 'a/../../x')).toThrow(WasiError)
    expect(visibleLinkText(sub, 1, root, join(data, 'inside.txt'))).toBe('../inside.txt')
    expect(() => visibleLinkText(sub, 1, root, '/etc/passwd')).toThrow(WasiError)
  })
})

describe('read-only preopen', () => {
  test('every change answers EROFS; reads work', () => {
    writeFileSync(join(data, 'sub', 'f'), 'ro')
    const g = guest([{ guestPath: '/ro', hostPath: data, readOnly: true }, { guestPath: '/rw', hostPath: join(base, 'outdir'), readOnly: false }])
    const R = Errno.ROFS
    expect(g.open('inside.txt', 0, Rights.FD_READ).errno).toBe(0)
    // A directory: every right but FD_WRITE is fine; FD_WRITE is EISDIR (as wasmtime).
    expect(g.open('sub', Oflags.DIRECTORY, DIR).errno).toBe(0)
    expect(g.open('sub', Oflags.DIRECTORY).errno).toBe(Errno.ISDIR)
    expect(g.open('inside.txt', 0, Rights.FD_READ | Rights.FD_WRITE).errno).toBe(R)
    expect(g.open('inside.txt', 0, Rights.FD_READ | Rights.FD_FILESTAT_SET_SIZE).errno).toBe(R)
    expect(g.open('inside.txt', Oflags.TRUNC, Rights.FD_READ).errno).toBe(R)
    expect(g.open('new.txt', Oflags.CREAT, Rights.FD_READ).errno).toBe(R)
    expect(g.w.path_create_directory(3, ...g.s('d'))).toBe(R)
    expect(g.w.path_remove_directory(3, ...g.s('sub/deeper'))).toBe(R)
    expect(g.w.path_unlink_file(3, ...g.s('inside.txt'))).toBe(R)
    expect(g.w.path_rename(3, ...g.s('inside.txt'), 3, ...g.s('x'))).toBe(R)
    expect(g.w.path_rename(3, ...g.s('inside.txt'), 4, ...g.s('x'))).toBe(R)
    expect(g.w.path_rename(4, ...g.s('secret'), 3, ...g.s('x'))).toBe(R)
    expect(g.w.path_link(3, 0, ...g.s('inside.txt'), 3, ...g.s('x'))).toBe(R)
    expect(g.w.path_link(3, 0, ...g.s('inside.txt'), 4, ...g.s('x'))).toBe(R)
    expect(g.w.path_symlink(...g.s('inside.txt'), 3, ...g.s('x'))).toBe(R)
    expect(g.w.path_symlink(...g.s('../canary.txt'), 3, ...g.s('x'))).toBe(R)
    expect(g.w.path_filestat_set_times(3, 0, ...g.s('inside.txt'), 0n, 0n, Fstflags.MTIM_NOW)).toBe(R)
    expect(g.w.fd_filestat_set_times(3, 0n, 0n, Fstflags.MTIM_NOW)).toBe(R)
    const { fd } = g.open('inside.txt', 0, Rights.FD_READ | Rights.FD_FILESTAT_SET_TIMES)
    expect(g.write(fd, 'x')).toBe(Errno.NOTCAPABLE)
    expect(g.w.fd_filestat_set_times(fd, 0n, 0n, Fstflags.MTIM_NOW)).toBe(R)
    expect(g.w.fd_filestat_set_size(fd, 0n)).toBe(Errno.NOTCAPABLE)
    expect(g.w.fd_allocate(fd, 0n, 10n)).toBe(Errno.NOTCAPABLE)
    expect(g.read(fd)).toBe('inside')
    expect(existsSync(join(base, 'outdir', 'x'))).toBe(false)
  })
})

/** The bytes of the symlinks planted in /data (their targets' lengths): the quota counts them. */
function plantedLinkBytes (): number {
  let total = 0
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(join(dir, entry.name))
      else if (entry.isSymbolicLink()) total += Buffer.byteLength(readlinkSync(join(dir, entry.name)))
    }
  }
  walk(data)
  return total
}

describe('quota', () => {
  // The planted symlinks are there from the start: each test's figures are on top of them.
  const quota = (bytes: number): Preopen => ({ ...rw(), quotaBytes: bytes + plantedLinkBytes() })

  test('counts what is there at start (hard links once), then every write that grows a file', () => {
    writeFileSync(join(data, 'a'), Buffer.alloc(300))
    linkSync(join(data, 'a'), join(data, 'sub', 'a-again'))
    writeFileSync(join(data, 'sub', 'deeper', 'b'), Buffer.alloc(200))
    expect(measureUsage(data)).toBe(500 + 6 + plantedLinkBytes()) // + inside.txt
    expect(measureUsage(data, 3)).toBe(Infinity)
    const g = guest([quota(1000)])
    const { fd } = g.open('a')
    expect(g.write(fd, 'x'.repeat(300))).toBe(0) // overwrites: no growth
    expect(g.write(fd, 'x'.repeat(494))).toBe(0) // 506 + 494 = 1000
    expect(g.write(fd, 'x')).toBe(Errno.DQUOT)
    expect(statSync(join(data, 'a')).size).toBe(794)
    expect(g.w.fd_filestat_set_size(fd, 795n)).toBe(Errno.DQUOT)
    expect(g.w.fd_allocate(fd, 0n, 1000n)).toBe(Errno.DQUOT)
    expect(g.w.fd_filestat_set_size(fd, 94n)).toBe(0) // frees 700
    const other = g.open('c', Oflags.CREAT)
    expect(g.write(other.fd, 'y'.repeat(700))).toBe(0)
    expect(g.write(other.fd, 'y')).toBe(Errno.DQUOT)
    expect(g.w.fd_close(other.fd)).toBe(0)
    expect(g.w.path_unlink_file(3, ...g.s('c'))).toBe(0) // frees 700 (closed: see 'unlinked but open')
    // A write far past the end counts the hole it would make: the position is still 794.
    expect(g.write(fd, 'z'.repeat(100))).toBe(Errno.DQUOT)
    expect(g.w.fd_seek(fd, 0n, 2, g.alloc(8))).toBe(0)
    expect(g.write(fd, 'z'.repeat(700))).toBe(0)
    expect(statSync(join(data, 'a')).size).toBe(794)
  })

  test('unlinking one of two names frees nothing; O_TRUNC and rename-over free', () => {
    writeFileSync(join(data, 'a'), Buffer.alloc(400))
    linkSync(join(data, 'a'), join(data, 'b'))
    writeFileSync(join(data, 'c'), Buffer.alloc(100))
    const g = guest([quota(1000)]) // used: 400 + 100 + 6
    expect(g.w.path_unlink_file(3, ...g.s('b'))).toBe(0)
    const { fd } = g.open('new', Oflags.CREAT)
    expect(g.write(fd, 'x'.repeat(495))).toBe(Errno.DQUOT)
    expect(g.w.path_rename(3, ...g.s('c'), 3, ...g.s('a'))).toBe(0) // a (400) is replaced
    expect(g.write(fd, 'x'.repeat(495))).toBe(0)
    expect(g.open('a', Oflags.TRUNC).errno).toBe(0)
    expect(g.write(fd, 'x'.repeat(100))).toBe(0)
  })

  test('unlinked but open: the bytes stay charged until the last fd closes', () => {
    const g = guest([quota(1000)]) // used: 6
    const a = g.open('orphan', Oflags.CREAT)
    const again = g.open('orphan')
    expect(g.write(a.fd, 'o'.repeat(900))).toBe(0)
    expect(g.w.path_unlink_file(3, ...g.s('orphan'))).toBe(0)
    const other = g.open('other', Oflags.CREAT)
    expect(g.write(other.fd, 'x'.repeat(100))).toBe(Errno.DQUOT) // 906 still on disk
    expect(g.w.fd_close(a.fd)).toBe(0)
    expect(g.write(other.fd, 'x'.repeat(100))).toBe(Errno.DQUOT) // one fd still open
    expect(g.w.fd_close(again.fd)).toBe(0)
    expect(g.write(other.fd, 'x'.repeat(994))).toBe(0) // the last close freed 900
  })

  test('entries cost ENTRY_BYTES each and are capped; a failed creation costs nothing', () => {
    const names = measureVolume(data).entries
    const g = guest([{ ...rw(), quotaBytes: 100 * ENTRY_BYTES, quotaEntries: names + 2 }])
    expect(g.w.path_create_directory(3, ...g.s('d1'))).toBe(0)
    expect(g.w.path_create_directory(3, ...g.s('d1'))).toBe(Errno.EXIST)
    expect(g.open('f1', Oflags.CREAT).errno).toBe(0)
    expect(g.w.path_create_directory(3, ...g.s('d2'))).toBe(Errno.DQUOT)
    expect(g.open('f2', Oflags.CREAT).errno).toBe(Errno.DQUOT)
    expect(g.open('f1', Oflags.CREAT).errno).toBe(0) // exists: no new name
    expect(g.w.path_remove_directory(3, ...g.s('d1'))).toBe(0)
    expect(g.open('f2', Oflags.CREAT).errno).toBe(0)
    // In bytes: outdir holds `secret`; room for one more entry, not two.
    const bytes = guest([{ guestPath: '/b', hostPath: join(base, 'outdir'), readOnly: false, quotaBytes: CANARY.length + 2 * ENTRY_BYTES, quotaEntries: 100 }])
    expect(bytes.open('one', Oflags.CREAT, ALL, 3).errno).toBe(0)
    expect(bytes.open('two', Oflags.CREAT, ALL, 3).errno).toBe(Errno.DQUOT)
    expect(bytes.w.path_unlink_file(3, ...bytes.s('one'))).toBe(0)
  })

  test('two instances sharing a quota block draw on one account', () => {
    const block = createQuotaBlock({ bytes: 0, entries: 0 })
    const shared = { ...rw(), quotaBytes: 1000, quotaState: block }
    const a = guest([shared])
    const b = guest([shared])
    expect(a.write(a.open('fa', Oflags.CREAT).fd, 'a'.repeat(600))).toBe(0)
    expect(b.write(b.open('fb', Oflags.CREAT).fd, 'b'.repeat(600))).toBe(Errno.DQUOT)
    const fb = b.open('fb').fd
    expect(b.write(fb, 'b'.repeat(400))).toBe(0)
    retireQuotaBlock(block) // the volume was deleted while both ran
    expect(b.write(fb, 'x')).toBe(Errno.ROFS)
    expect(a.open('fa').errno).toBe(Errno.ROFS)
    expect(b.w.path_create_directory(3, ...b.s('late'))).toBe(Errno.ROFS)
  })

  test('a symlink counts its target\'s length: creating one needs room, removing or replacing it frees it', () => {
    const g = guest([quota(6 + 20)]) // used: inside.txt
    expect(g.w.path_symlink(...g.s('0123456789'), 3, ...g.s('a'))).toBe(0)
    expect(g.w.path_symlink(...g.s('0123456789'), 3, ...g.s('b'))).toBe(0)
    expect(g.w.path_symlink(...g.s('x'), 3, ...g.s('c'))).toBe(Errno.DQUOT)
    expect(existsSync(join(data, 'c'))).toBe(false)
    expect(measureUsage(data)).toBe(6 + 20 + plantedLinkBytes() - 20)
    expect(g.w.path_unlink_file(3, ...g.s('a'))).toBe(0)
    expect(g.w.path_symlink(...g.s('abcde'), 3, ...g.s('c'))).toBe(0)
    expect(g.w.path_rename(3, ...g.s('c'), 3, ...g.s('b'))).toBe(0) // b (10) is replaced
    expect(g.write(g.open('f', Oflags.CREAT).fd, 'y'.repeat(15))).toBe(0)
    expect(g.write(g.open('f').fd, 'y'.repeat(16))).toBe(Errno.DQUOT)
  })

  test('a tree too large to measure counts as full', () => {
    const q = new Quota(1 << 30, Infinity)
    expect(() => q.check(1)).toThrow(WasiError)
    expect(() => q.check(0)).not.toThrow()
  })

  test('rename between volumes moves the bytes; a directory across quotas is EXDEV', () => {
    const other = realpathSync(mkdtempSync(join(tmpdir(), 'wasi-jail-other-')))
    try {
      writeFileSync(join(data, 'big'), Buffer.alloc(600))
      writeFileSync(join(data, 'big2'), Buffer.alloc(600))
      mkdirSync(join(data, 'dir'))
      const g = guest([quota(1300), { guestPath: '/other', hostPath: other, readOnly: false, quotaBytes: 700 }])
      expect(g.w.path_rename(3, ...g.s('big'), 4, ...g.s('big'))).toBe(0)
      expect(g.w.path_rename(3, ...g.s('big2'), 4, ...g.s('big2'))).toBe(Errno.DQUOT)
      expect(g.w.path_rename(3, ...g.s('dir'), 4, ...g.s('dir'))).toBe(Errno.XDEV)
      expect(readdirSync(other)).toEqual(['big'])
      // /data gave the 600 bytes back: 1300 - 606 (big2 + inside.txt) leaves room for 694.
      expect(g.write(g.open('more', Oflags.CREAT).fd, 'm'.repeat(694))).toBe(0)
    } finally {
      rmSync(other, { recursive: true, force: true })
    }
  })
})
