// Each preview1 function called directly on a memory we control, against a temp directory:
// errno values, struct layouts, edge cases libc never exercises.
import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createWasi, Errno, WasiExit } from '../../src/sandbox/wasi'
import type { Wasi, WasiImports, WasiOptions } from '../../src/sandbox/wasi'
import { Clockid, Eventtype, Fdflags, FILE_RIGHTS, Filetype, Fstflags, Lookupflags, Oflags, Rights, SINK_RIGHTS, STDIN_RIGHTS, Whence } from '../../src/sandbox/wasi/constants'

// The project's lib setting has no WebAssembly types; this is all the tests use.

const ALL = (1n << 30n) - 1n
/** What libcs ask for when they open a directory: everything but FD_WRITE (EISDIR, as wasmtime). */
const DIR = ALL & ~Rights.FD_WRITE

/** A guest we drive by hand: a memory, a bump allocator, and the imports. */
class Guest {
  readonly memory = new WebAssembly.Memory({ initial: 4 })
  readonly wasi: Wasi
  readonly w: WasiImports
  #top = 1024

  constructor (options: Partial<WasiOptions> = {}) {
    this.wasi = createWasi({
      args: [],
      env: {},
      preopens: [],
      stdin: new Uint8Array(0),
      stdoutLimit: 1 << 16,
      stderrLimit: 64,
      deadline: Date.now() + 10_000,
      ...options
    })
    this.wasi.bind(this.memory)
    this.w = this.wasi.imports
  }

  get size (): number { return this.memory.buffer.byteLength }
  get dv (): DataView { return new DataView(this.memory.buffer) }

  alloc (size: number, fill = 0): number {
    const ptr = this.#top
    this.#top += Math.ceil(size / 8) * 8 + 8
    new Uint8Array(this.memory.buffer).fill(fill, ptr, ptr + size)
    return ptr
  }

  bytes (data: Uint8Array | string): [number, number] {
    const b = typeof data === 'string' ? Buffer.from(data) : data
    const ptr = this.alloc(b.byteLength)
    new Uint8Array(this.memory.buffer).set(b, ptr)
    return [ptr, b.byteLength]
  }

  /** An iovec array over the given buffers (a number allocates an empty buffer of that size). */
  iovs (...bufs: Array<string | number>): [number, number, number[]] {
    const ptrs = bufs.map((b) => (typeof b === 'number' ? this.alloc(b) : this.bytes(b)[0]))
    const arr = this.alloc(8 * bufs.length)
    bufs.forEach((b, i) => {
      this.dv.setUint32(arr + i * 8, ptrs[i] ?? 0, true)
      this.dv.setUint32(arr + i * 8 + 4, typeof b === 'number' ? b : Buffer.byteLength(b), true)
    })
    return [arr, bufs.length, ptrs]
  }

  u8 (p: number): number { return this.dv.getUint8(p) }
  u16 (p: number): number { return this.dv.getUint16(p, true) }
  u32 (p: number): number { return this.dv.getUint32(p, true) }
  u64 (p: number): bigint { return this.dv.getBigUint64(p, true) }
  text (p: number, len: number): string { return Buffer.from(new Uint8Array(this.memory.buffer, p, len)).toString() }

  open (path: string, o: { dir?: number, oflags?: number, base?: bigint, fdflags?: number, lookup?: number } = {}): { errno: number, fd: number } {
    const [p, l] = this.bytes(path)
    const out = this.alloc(4, 0xff)
    const errno = this.w.path_open(o.dir ?? 3, o.lookup ?? Lookupflags.SYMLINK_FOLLOW, p, l, o.oflags ?? 0, o.base ?? ALL, ALL, o.fdflags ?? 0, out)
    return { errno, fd: this.u32(out) }
  }

  write (fd: number, ...chunks: string[]): { errno: number, n: number } {
    const [iovs, count] = this.iovs(...chunks)
    const out = this.alloc(4)
    const errno = this.w.fd_write(fd, iovs, count, out)
    return { errno, n: this.u32(out) }
  }

  read (fd: number, max = 256): { errno: number, text: string } {
    const [iovs, count, [buf]] = this.iovs(max)
    const out = this.alloc(4)
    const errno = this.w.fd_read(fd, iovs, count, out)
    return { errno, text: this.text(buf ?? 0, this.u32(out)) }
  }

  seek (fd: number, offset: bigint, whence: number): { errno: number, pos: bigint } {
    const out = this.alloc(8)
    const errno = this.w.fd_seek(fd, offset, whence, out)
    return { errno, pos: this.u64(out) }
  }

  path (fn: (p: number, l: number) => number, path: string): number {
    const [p, l] = this.bytes(path)
    return fn(p, l)
  }
}

let dir: string
const guests: Guest[] = []
function guest (options: Partial<WasiOptions> = {}): Guest {
  const g = new Guest(options)
  guests.push(g)
  return g
}
const withData = (extra: Partial<WasiOptions> = {}): Guest =>
  guest({ preopens: [{ guestPath: '/data', hostPath: dir, readOnly: false }], ...extra })

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'wasi-sys-'))
})

afterEach(() => {
  for (const g of guests.splice(0)) g.wasi.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('stdio', () => {
  test('fdstat of 0, 1, 2: in-memory streams with fixed rights, written whole', () => {
    const g = guest()
    const st = g.alloc(24, 0xaa)
    expect(g.w.fd_fdstat_get(0, st)).toBe(Errno.SUCCESS)
    expect(g.u8(st)).toBe(Filetype.UNKNOWN)
    expect(g.u8(st + 1)).toBe(0) // padding zeroed
    expect(g.u16(st + 2)).toBe(0)
    expect(g.u32(st + 4)).toBe(0)
    expect(g.u64(st + 8)).toBe(STDIN_RIGHTS)
    expect(g.u64(st + 16)).toBe(0n)
    expect(g.w.fd_fdstat_get(1, st)).toBe(Errno.SUCCESS)
    expect(g.u64(st + 8)).toBe(SINK_RIGHTS)
    expect(g.w.fd_fdstat_get(3, st)).toBe(Errno.BADF)
  })

  test('stdin: reads across iovecs, then EOF (0 bytes), never blocks', () => {
    const g = guest({ stdin: Buffer.from('abcdefgh') })
    const [iovs, count, [a, b]] = g.iovs(3, 4)
    const n = g.alloc(4)
    expect(g.w.fd_read(0, iovs, count, n)).toBe(Errno.SUCCESS)
    expect(g.u32(n)).toBe(7)
    expect(g.text(a ?? 0, 3) + g.text(b ?? 0, 4)).toBe('abcdefg')
    expect(g.read(0)).toEqual({ errno: 0, text: 'h' })
    expect(g.read(0)).toEqual({ errno: 0, text: '' })
    expect(g.read(0)).toEqual({ errno: 0, text: '' })
  })

  test('stdout: gathers iovecs; a write past the limit is EFBIG, keeps nothing, sets overflowed', () => {
    const g = guest({ stdoutLimit: 10 })
    expect(g.write(1, 'hello', ' ')).toEqual({ errno: 0, n: 6 })
    expect(g.wasi.stdoutOverflowed).toBe(false)
    expect(g.write(1, 'world').errno).toBe(Errno.FBIG)
    expect(g.wasi.stdoutOverflowed).toBe(true)
    expect(g.write(1, 'abcd')).toEqual({ errno: 0, n: 4 })
    expect(Buffer.from(g.wasi.stdout()).toString()).toBe('hello abcd')
    expect(g.write(1, 'x').errno).toBe(Errno.FBIG)
  })

  test('stderr keeps the last bytes and never fails', () => {
    const g = guest({ stderrLimit: 8 })
    expect(g.write(2, 'first line\n')).toEqual({ errno: 0, n: 11 })
    expect(g.write(2, 'abc', 'def')).toEqual({ errno: 0, n: 6 })
    expect(Buffer.from(g.wasi.stderr()).toString()).toBe('e\nabcdef')
    g.write(2, 'x'.repeat(100), 'END')
    expect(Buffer.from(g.wasi.stderr()).toString()).toBe('xxxxxEND')
  })

  test('wrong-direction and unsupported operations', () => {
    const g = guest()
    expect(g.write(0, 'x').errno).toBe(Errno.BADF)
    expect(g.read(1).errno).toBe(Errno.BADF)
    expect(g.seek(0, 0n, Whence.SET).errno).toBe(Errno.SPIPE)
    expect(g.w.fd_tell(1, g.alloc(8))).toBe(Errno.SPIPE)
    expect(g.w.fd_sync(1)).toBe(Errno.INVAL)
    expect(g.w.fd_readdir(1, g.alloc(64), 64, 0n, g.alloc(4))).toBe(Errno.NOTDIR)
    expect(g.w.fd_filestat_set_size(1, 0n)).toBe(Errno.INVAL)
    expect(g.w.fd_prestat_get(1, g.alloc(8))).toBe(Errno.BADF)
    const st = g.alloc(64, 0xaa)
    expect(g.w.fd_filestat_get(1, st)).toBe(Errno.SUCCESS)
    expect(g.u8(st + 16)).toBe(Filetype.UNKNOWN)
    expect(g.u64(st + 32)).toBe(0n)
  })

  test('fd_close(1) closes the guest\'s fd 1 only', () => {
    const g = guest()
    g.write(1, 'kept')
    expect(g.w.fd_close(1)).toBe(Errno.SUCCESS)
    expect(g.write(1, 'lost').errno).toBe(Errno.BADF)
    expect(g.w.fd_close(1)).toBe(Errno.BADF)
    expect(g.write(2, 'err').errno).toBe(Errno.SUCCESS)
    expect(Buffer.from(g.wasi.stdout()).toString()).toBe('kept')
  })
})

describe('preopens', () => {
  test('start at fd 3 in order; prestat tag dir and the guest path; EBADF past the last', () => {
    mkdirSync(join(dir, 'b'))
    const g = guest({
      preopens: [
        { guestPath: '/data', hostPath: dir, readOnly: false },
        { guestPath: '/fixtures', hostPath: join(dir, 'b'), readOnly: true }
      ]
    })
    const ps = g.alloc(8, 0xaa)
    expect(g.w.fd_prestat_get(3, ps)).toBe(Errno.SUCCESS)
    expect([g.u8(ps), g.u8(ps + 1), g.u16(ps + 2), g.u32(ps + 4)]).toEqual([0, 0, 0, 5])
    const name = g.alloc(16)
    expect(g.w.fd_prestat_dir_name(3, name, 5)).toBe(Errno.SUCCESS)
    expect(g.text(name, 5)).toBe('/data')
    expect(g.w.fd_prestat_get(4, ps)).toBe(Errno.SUCCESS)
    expect(g.u32(ps + 4)).toBe(9)
    expect(g.w.fd_prestat_dir_name(4, name, 9)).toBe(Errno.SUCCESS)
    expect(g.text(name, 9)).toBe('/fixtures')
    expect(g.w.fd_prestat_dir_name(4, name, 3)).toBe(Errno.NAMETOOLONG)
    expect(g.w.fd_prestat_get(5, ps)).toBe(Errno.BADF)
    const st = g.alloc(24)
    expect(g.w.fd_fdstat_get(3, st)).toBe(Errno.SUCCESS)
    expect(g.u8(st)).toBe(Filetype.DIRECTORY)
    expect(g.u64(st + 8) & Rights.PATH_OPEN).toBe(Rights.PATH_OPEN)
    expect(g.u64(st + 16) & FILE_RIGHTS).toBe(FILE_RIGHTS)
  })

  test('an opened directory is not a preopen', () => {
    mkdirSync(join(dir, 'sub'))
    const g = withData()
    const { errno, fd } = g.open('sub', { oflags: Oflags.DIRECTORY, base: DIR })
    expect(errno).toBe(0)
    expect(g.w.fd_prestat_get(fd, g.alloc(8))).toBe(Errno.BADF)
  })
})

describe('files', () => {
  test('create, write, read back, seek (SET/CUR/END), tell', () => {
    const g = withData()
    const { errno, fd } = g.open('f.txt', { oflags: Oflags.CREAT })
    expect(errno).toBe(0)
    expect(fd).toBe(4)
    expect(g.write(fd, 'hello ', 'world')).toEqual({ errno: 0, n: 11 })
    expect(readFileSync(join(dir, 'f.txt'), 'utf8')).toBe('hello world')
    expect(g.seek(fd, 0n, Whence.SET)).toEqual({ errno: 0, pos: 0n })
    expect(g.read(fd, 5)).toEqual({ errno: 0, text: 'hello' })
    expect(g.seek(fd, 1n, Whence.CUR)).toEqual({ errno: 0, pos: 6n })
    expect(g.read(fd)).toEqual({ errno: 0, text: 'world' })
    expect(g.read(fd)).toEqual({ errno: 0, text: '' })
    expect(g.seek(fd, -5n, Whence.END)).toEqual({ errno: 0, pos: 6n })
    const tell = g.alloc(8)
    expect(g.w.fd_tell(fd, tell)).toBe(0)
    expect(g.u64(tell)).toBe(6n)
    expect(g.seek(fd, -1n, Whence.SET).errno).toBe(Errno.INVAL)
    expect(g.seek(fd, 0n, 3).errno).toBe(Errno.INVAL)
    expect(g.seek(fd, 1n << 60n, Whence.SET).errno).toBe(Errno.FBIG)
  })

  test('pread/pwrite do not move the position', () => {
    writeFileSync(join(dir, 'f'), '0123456789')
    const g = withData()
    const { fd } = g.open('f')
    g.seek(fd, 2n, Whence.SET)
    const [iovs, count, [buf]] = g.iovs(3)
    const n = g.alloc(4)
    expect(g.w.fd_pread(fd, iovs, count, 5n, n)).toBe(0)
    expect(g.text(buf ?? 0, g.u32(n))).toBe('567')
    const [wiovs, wcount] = g.iovs('AB')
    expect(g.w.fd_pwrite(fd, wiovs, wcount, 8n, n)).toBe(0)
    expect(g.u32(n)).toBe(2)
    expect(g.read(fd, 3).text).toBe('234')
    expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('01234567AB')
    expect(g.w.fd_pwrite(fd, wiovs, wcount, 12n, n)).toBe(0)
    expect(readFileSync(join(dir, 'f')).subarray(10)).toEqual(Buffer.from([0, 0, 65, 66]))
  })

  test('APPEND from path_open and from fd_fdstat_set_flags', () => {
    writeFileSync(join(dir, 'log'), 'a')
    const g = withData()
    const { fd } = g.open('log', { fdflags: Fdflags.APPEND })
    g.seek(fd, 0n, Whence.SET)
    g.write(fd, 'b')
    expect(readFileSync(join(dir, 'log'), 'utf8')).toBe('ab')
    const st = g.alloc(24)
    g.w.fd_fdstat_get(fd, st)
    expect(g.u16(st + 2)).toBe(Fdflags.APPEND)
    const { fd: fd2 } = g.open('log')
    expect(g.w.fd_fdstat_set_flags(fd2, Fdflags.APPEND)).toBe(0)
    g.write(fd2, 'c')
    expect(readFileSync(join(dir, 'log'), 'utf8')).toBe('abc')
    expect(g.w.fd_fdstat_set_flags(fd2, 0)).toBe(0)
    g.seek(fd2, 0n, Whence.SET)
    g.write(fd2, 'X')
    expect(readFileSync(join(dir, 'log'), 'utf8')).toBe('Xbc')
    expect(g.w.fd_fdstat_set_flags(fd2, 0x20)).toBe(Errno.INVAL)
  })

  test('fd_filestat_get: layout, type, size and ns timestamps match the host', () => {
    writeFileSync(join(dir, 'f'), 'x'.repeat(1234))
    const g = withData()
    const { fd } = g.open('f')
    const st = g.alloc(64, 0xaa)
    expect(g.w.fd_filestat_get(fd, st)).toBe(0)
    const host = statSync(join(dir, 'f'), { bigint: true })
    expect(g.u64(st)).toBe(host.dev)
    expect(g.u64(st + 8)).toBe(host.ino)
    expect(g.u8(st + 16)).toBe(Filetype.REGULAR_FILE)
    expect(g.u8(st + 17)).toBe(0)
    expect(g.u64(st + 24)).toBe(1n)
    expect(g.u64(st + 32)).toBe(1234n)
    expect(g.u64(st + 40)).toBe(host.atimeNs)
    expect(g.u64(st + 48)).toBe(host.mtimeNs)
    expect(g.u64(st + 56)).toBe(host.ctimeNs)
  })

  test('set_size, allocate (grows only), set_times with ATIM/MTIM/NOW flags', () => {
    writeFileSync(join(dir, 'f'), '0123456789')
    const g = withData()
    const { fd } = g.open('f')
    expect(g.w.fd_filestat_set_size(fd, 4n)).toBe(0)
    expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('0123')
    expect(g.w.fd_allocate(fd, 0n, 2n)).toBe(0)
    expect(statSync(join(dir, 'f')).size).toBe(4)
    expect(g.w.fd_allocate(fd, 4n, 4n)).toBe(0)
    expect(statSync(join(dir, 'f')).size).toBe(8)
    const a = 1_000_000_000_123_456_000n
    const m = 1_200_000_000_654_321_000n
    expect(g.w.fd_filestat_set_times(fd, a, m, Fstflags.ATIM | Fstflags.MTIM)).toBe(0)
    let host = statSync(join(dir, 'f'), { bigint: true })
    // Node's utimes takes seconds as a double: sub-microsecond digits may round.
    expect(Number(host.atimeNs - a)).toBeLessThan(1000)
    expect(Number(host.mtimeNs - m)).toBeLessThan(1000)
    expect(g.w.fd_filestat_set_times(fd, 0n, 0n, Fstflags.MTIM_NOW)).toBe(0)
    host = statSync(join(dir, 'f'), { bigint: true })
    expect(Number(host.atimeNs - a)).toBeLessThan(1000) // kept
    expect(Number(host.mtimeNs / 1_000_000n)).toBeGreaterThan(Date.now() - 60_000)
    expect(g.w.fd_filestat_set_times(fd, 0n, 0n, Fstflags.ATIM | Fstflags.ATIM_NOW)).toBe(Errno.INVAL)
    expect(g.w.fd_filestat_set_times(fd, 0n, 0n, Fstflags.MTIM | Fstflags.MTIM_NOW)).toBe(Errno.INVAL)
    expect(g.w.fd_filestat_set_times(fd, 0n, 0n, 0x10)).toBe(Errno.INVAL)
  })

  test('a time set to the nanosecond reads back exactly, by fd and by path; the time not set stays put', () => {
    writeFileSync(join(dir, 'f'), 'x')
    symlinkSync('f', join(dir, 'l'))
    const g = withData()
    const { fd } = g.open('f')
    const st = g.alloc(64)
    const times = (): [bigint, bigint] => [g.u64(st + 40), g.u64(st + 48)]
    expect(g.w.fd_filestat_get(fd, st)).toBe(0)
    const [a0, m0] = times()
    // A double holds a present-day time in seconds only to ~0.24 µs: 100 ns would round.
    expect(g.w.fd_filestat_set_times(fd, 0n, m0 - 100n, Fstflags.MTIM)).toBe(0)
    expect(g.w.fd_filestat_get(fd, st)).toBe(0)
    expect(times()).toEqual([a0, m0 - 100n])
    const get = (path: string, flags: number): number => g.path((p, l) => g.w.path_filestat_get(3, flags, p, l, st), path)
    expect(get('f', 0)).toBe(0)
    expect(times()).toEqual([a0, m0 - 100n])
    const t = 1_700_000_000_123_456_789n
    expect(g.path((p, l) => g.w.path_filestat_set_times(3, 0, p, l, t, t + 1n, Fstflags.ATIM | Fstflags.MTIM), 'f')).toBe(0)
    expect(get('f', 0)).toBe(0)
    expect(times()).toEqual([t, t + 1n])
    // The link itself (not following), then the file through it.
    expect(get('l', 0)).toBe(0)
    const linkM = g.u64(st + 48)
    expect(g.path((p, l) => g.w.path_filestat_set_times(3, 0, p, l, 0n, linkM - 200n, Fstflags.MTIM), 'l')).toBe(0)
    expect(get('l', 0)).toBe(0)
    expect(g.u64(st + 48)).toBe(linkM - 200n)
    expect(get('l', Lookupflags.SYMLINK_FOLLOW)).toBe(0)
    expect(times()).toEqual([t, t + 1n])
    expect(g.path((p, l) => g.w.path_filestat_set_times(3, Lookupflags.SYMLINK_FOLLOW, p, l, 0n, t + 7n, Fstflags.MTIM), 'l')).toBe(0)
    expect(get('f', 0)).toBe(0)
    expect(times()).toEqual([t, t + 7n])
    // The host holds the nearest time Node can set; what changes the file shows through.
    const host = statSync(join(dir, 'f'), { bigint: true })
    expect(Number(host.mtimeNs - (t + 7n))).toBeLessThan(1000)
    expect(g.write(fd, 'more').errno).toBe(0)
    expect(g.w.fd_filestat_get(fd, st)).toBe(0)
    expect(g.u64(st + 48)).toBe(statSync(join(dir, 'f'), { bigint: true }).mtimeNs)
  })

  test('advise, sync, datasync', () => {
    writeFileSync(join(dir, 'f'), 'x')
    const g = withData()
    const { fd } = g.open('f')
    expect(g.w.fd_advise(fd, 0n, 1n, 3)).toBe(0)
    expect(g.w.fd_advise(fd, 0n, 1n, 6)).toBe(Errno.INVAL)
    expect(g.w.fd_sync(fd)).toBe(0)
    expect(g.w.fd_datasync(fd)).toBe(0)
    expect(g.w.fd_sync(3)).toBe(0)
  })

  test('rights: path_open grants at most what was asked; set_rights only drops', () => {
    writeFileSync(join(dir, 'f'), 'x')
    const g = withData()
    const { fd } = g.open('f', { base: Rights.FD_READ | Rights.FD_SEEK | Rights.PATH_OPEN })
    const st = g.alloc(24)
    g.w.fd_fdstat_get(fd, st)
    // PATH_OPEN is a directory right: a file does not get it.
    expect(g.u64(st + 8)).toBe(Rights.FD_READ | Rights.FD_SEEK)
    expect(g.u64(st + 16)).toBe(0n)
    expect(g.write(fd, 'y').errno).toBe(Errno.NOTCAPABLE)
    expect(g.w.fd_tell(fd, g.alloc(8))).toBe(Errno.NOTCAPABLE)
    // seek(0, CUR) is a tell: FD_SEEK or FD_TELL will do.
    expect(g.seek(fd, 0n, Whence.CUR).errno).toBe(0)
    expect(g.w.fd_fdstat_set_rights(fd, Rights.FD_READ | Rights.FD_TELL, 0n)).toBe(Errno.NOTCAPABLE)
    expect(g.w.fd_fdstat_set_rights(fd, Rights.FD_READ, 0n)).toBe(0)
    expect(g.seek(fd, 0n, Whence.SET).errno).toBe(Errno.NOTCAPABLE)
    expect(g.seek(fd, 0n, Whence.CUR).errno).toBe(Errno.NOTCAPABLE)
    expect(g.w.fd_fdstat_set_rights(fd, Rights.FD_READ | Rights.FD_WRITE, 0n)).toBe(Errno.NOTCAPABLE)
    expect(g.read(fd).text).toBe('x')
    expect(g.w.fd_filestat_get(fd, g.alloc(64))).toBe(Errno.NOTCAPABLE)
  })

  test('path_open errors', () => {
    writeFileSync(join(dir, 'f'), 'x')
    mkdirSync(join(dir, 'd'))
    const g = withData()
    expect(g.open('missing').errno).toBe(Errno.NOENT)
    expect(g.open('f', { oflags: Oflags.CREAT | Oflags.EXCL }).errno).toBe(Errno.EXIST)
    expect(g.open('f', { oflags: Oflags.DIRECTORY }).errno).toBe(Errno.NOTDIR)
    expect(g.open('f/').errno).toBe(Errno.NOTDIR)
    // FD_WRITE on a directory is EISDIR (as wasmtime, and open(2) with O_RDWR); the other
    // write rights mean nothing to it; flags that would write to it are EISDIR too.
    expect(g.open('d', { base: Rights.FD_READ | Rights.FD_WRITE }).errno).toBe(Errno.ISDIR)
    expect(g.open('d', { oflags: Oflags.DIRECTORY, base: Rights.FD_READ | Rights.FD_WRITE }).errno).toBe(Errno.ISDIR)
    expect(g.open('d', { base: DIR }).errno).toBe(0)
    expect(g.open('d', { oflags: Oflags.DIRECTORY, base: 0n }).errno).toBe(0)
    expect(g.open('d', { fdflags: Fdflags.APPEND }).errno).toBe(Errno.ISDIR)
    expect(g.open('d', { oflags: Oflags.TRUNC }).errno).toBe(Errno.ISDIR)
    expect(g.open('d', { oflags: Oflags.CREAT }).errno).toBe(Errno.ISDIR)
    expect(g.open('').errno).toBe(Errno.NOENT)
    expect(g.open('a\0b').errno).toBe(Errno.INVAL)
    expect(g.open('f', { dir: 9 }).errno).toBe(Errno.BADF)
    expect(g.open('f', { dir: 1 }).errno).toBe(Errno.NOTDIR)
    expect(g.open('f', { oflags: 0x10 }).errno).toBe(Errno.INVAL)
    expect(g.open('new', { oflags: Oflags.CREAT | Oflags.DIRECTORY }).errno).toBe(Errno.INVAL)
    const { fd } = g.open('f')
    expect(g.open('x', { dir: fd }).errno).toBe(Errno.NOTDIR)
    expect(g.open('x'.repeat(5000)).errno).toBe(Errno.NAMETOOLONG)
    const [p, l] = g.bytes(new Uint8Array([0xff, 0xfe]))
    expect(g.w.path_open(3, 0, p, l, 0, ALL, ALL, 0, g.alloc(4))).toBe(Errno.ILSEQ)
  })

  test('O_TRUNC empties, a directory opens and reads as a directory', () => {
    writeFileSync(join(dir, 'f'), 'content')
    mkdirSync(join(dir, 'd'))
    const g = withData()
    expect(g.open('f', { oflags: Oflags.TRUNC }).errno).toBe(0)
    expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('')
    const { errno, fd } = g.open('d', { base: DIR })
    expect(errno).toBe(0)
    const st = g.alloc(24)
    g.w.fd_fdstat_get(fd, st)
    expect(g.u8(st)).toBe(Filetype.DIRECTORY)
    expect(g.read(fd).errno).toBe(Errno.ISDIR)
    expect(g.write(fd, 'x').errno).toBe(Errno.ISDIR)
  })
})

/** Decodes fd_readdir output: whole entries and whether the last one was cut. */
function dirents (g: Guest, buf: number, used: number): { entries: Array<{ next: bigint, ino: bigint, type: number, name: string }>, cut: boolean } {
  const entries: Array<{ next: bigint, ino: bigint, type: number, name: string }> = []
  let at = 0
  while (at + 24 <= used) {
    const namlen = g.u32(buf + at + 16)
    if (at + 24 + namlen > used) return { entries, cut: true }
    entries.push({ next: g.u64(buf + at), ino: g.u64(buf + at + 8), type: g.u8(buf + at + 20), name: g.text(buf + at + 24, namlen) })
    at += 24 + namlen
  }
  return { entries, cut: at !== used }
}

describe('fd_readdir', () => {
  beforeEach(() => {
    writeFileSync(join(dir, 'b-file'), 'x')
    mkdirSync(join(dir, 'a-dir'))
    symlinkSync('b-file', join(dir, 'c-link'))
  })

  test('dirent layout: d_next is the cookie of the next entry, types from lstat, . and .. first', () => {
    const g = withData()
    const buf = g.alloc(1024)
    const used = g.alloc(4)
    expect(g.w.fd_readdir(3, buf, 1024, 0n, used)).toBe(0)
    const { entries, cut } = dirents(g, buf, g.u32(used))
    expect(cut).toBe(false)
    // `..` reports the directory's own inode, as wasmtime: a preopen's parent is not the
    // guest's to know.
    const self = statSync(dir, { bigint: true }).ino
    expect(entries).toEqual([
      { next: 1n, ino: self, type: Filetype.DIRECTORY, name: '.' },
      { next: 2n, ino: self, type: Filetype.DIRECTORY, name: '..' },
      { next: 3n, ino: statSync(join(dir, 'a-dir'), { bigint: true }).ino, type: Filetype.DIRECTORY, name: 'a-dir' },
      { next: 4n, ino: statSync(join(dir, 'b-file'), { bigint: true }).ino, type: Filetype.REGULAR_FILE, name: 'b-file' },
      { next: 5n, ino: expect.any(BigInt), type: Filetype.SYMBOLIC_LINK, name: 'c-link' }
    ])
    expect(g.u32(used)).toBe(5 * 24 + 1 + 2 + 5 + 6 + 6)
    // An opened subdirectory: `.` is itself, with the inode fd_filestat_get gives.
    const sub = g.open('a-dir', { oflags: Oflags.DIRECTORY, base: DIR })
    expect(g.w.fd_readdir(sub.fd, buf, 1024, 0n, used)).toBe(0)
    const st = g.alloc(64)
    expect(g.w.fd_filestat_get(sub.fd, st)).toBe(0)
    expect(dirents(g, buf, g.u32(used)).entries).toEqual([
      { next: 1n, ino: g.u64(st + 8), type: Filetype.DIRECTORY, name: '.' },
      { next: 2n, ino: g.u64(st + 8), type: Filetype.DIRECTORY, name: '..' }
    ])
  })

  test('cookies resume; a small buffer is filled exactly and the caller retries bigger', () => {
    const g = withData()
    const used = g.alloc(4)
    const buf = g.alloc(1024, 0xee)
    expect(g.w.fd_readdir(3, buf, 1024, 3n, used)).toBe(0)
    expect(dirents(g, buf, g.u32(used)).entries.map((e) => e.name)).toEqual(['b-file', 'c-link'])
    // 24 + 1 (".") + 24 + 2 ("..") + 24 + 5 ("a-dir") + 10 bytes of the fourth entry's header.
    new Uint8Array(g.memory.buffer).fill(0xee, buf, buf + 1024)
    expect(g.w.fd_readdir(3, buf, 90, 0n, used)).toBe(0)
    expect(g.u32(used)).toBe(90)
    expect(g.u8(buf + 90)).toBe(0xee) // not a byte past the buffer
    const r = dirents(g, buf, 90)
    expect(r.entries.map((e) => e.name)).toEqual(['.', '..', 'a-dir'])
    expect(r.cut).toBe(true)
    expect(g.w.fd_readdir(3, buf, 1024, 3n, used)).toBe(0)
    expect(dirents(g, buf, g.u32(used)).entries[0]?.name).toBe('b-file')
    expect(g.w.fd_readdir(3, buf, 1024, 5n, used)).toBe(0)
    expect(g.u32(used)).toBe(0)
    expect(g.w.fd_readdir(3, buf, 1024, 99n, used)).toBe(0)
    expect(g.u32(used)).toBe(0)
    expect(g.w.fd_readdir(3, buf, 0, 0n, used)).toBe(0)
    expect(g.u32(used)).toBe(0)
  })

  test('on a file: ENOTDIR; buffer out of bounds: EFAULT', () => {
    const g = withData()
    const { fd } = g.open('b-file')
    expect(g.w.fd_readdir(fd, g.alloc(64), 64, 0n, g.alloc(4))).toBe(Errno.NOTDIR)
    expect(g.w.fd_readdir(3, g.size - 10, 64, 0n, g.alloc(4))).toBe(Errno.FAULT)
  })
})

describe('fd_renumber', () => {
  test('a file onto fd 1: stdout writes go to the file, the captured stdout keeps what it had', () => {
    const g = withData()
    g.write(1, 'to stdout\n')
    const { fd } = g.open('out', { oflags: Oflags.CREAT })
    expect(g.w.fd_renumber(fd, 1)).toBe(0)
    expect(g.write(1, 'to file\n').errno).toBe(0)
    expect(g.write(fd, 'x').errno).toBe(Errno.BADF)
    expect(readFileSync(join(dir, 'out'), 'utf8')).toBe('to file\n')
    expect(Buffer.from(g.wasi.stdout()).toString()).toBe('to stdout\n')
    expect(g.w.fd_renumber(1, 1)).toBe(0)
    expect(g.w.fd_renumber(1, 42)).toBe(Errno.BADF)
    expect(g.w.fd_renumber(42, 1)).toBe(Errno.BADF)
  })

  test('a preopen can be renumbered; its prestat follows it', () => {
    const g = withData()
    const { fd } = g.open('f', { oflags: Oflags.CREAT })
    expect(g.w.fd_renumber(3, fd)).toBe(0)
    const ps = g.alloc(8)
    expect(g.w.fd_prestat_get(3, ps)).toBe(Errno.BADF)
    expect(g.w.fd_prestat_get(fd, ps)).toBe(0)
    expect(g.open('f', { dir: fd }).errno).toBe(0)
  })
})

describe('path functions', () => {
  test('create_directory, remove_directory, unlink_file: results and errnos', () => {
    writeFileSync(join(dir, 'f'), 'x')
    const g = withData()
    const mk = (p: string): number => g.path((a, b) => g.w.path_create_directory(3, a, b), p)
    const rm = (p: string): number => g.path((a, b) => g.w.path_remove_directory(3, a, b), p)
    const un = (p: string): number => g.path((a, b) => g.w.path_unlink_file(3, a, b), p)
    expect(mk('d')).toBe(0)
    expect(mk('e/')).toBe(0)
    expect(mk('d')).toBe(Errno.EXIST)
    expect(mk('.')).toBe(Errno.EXIST)
    expect(mk('missing/x')).toBe(Errno.NOENT)
    writeFileSync(join(dir, 'd', 'inner'), 'x')
    expect(rm('d')).toBe(Errno.NOTEMPTY)
    expect(rm('f')).toBe(Errno.NOTDIR)
    expect(rm('.')).toBe(Errno.INVAL)
    expect(un('d')).toBe(Errno.ISDIR)
    expect(un('f/')).toBe(Errno.NOTDIR)
    expect(un('d/inner')).toBe(0)
    expect(un('d/inner')).toBe(Errno.NOENT)
    expect(rm('d/')).toBe(0)
    expect(rm('e')).toBe(0)
    expect(un('f')).toBe(0)
    expect(g.path((a, b) => g.w.path_create_directory(1, a, b), 'x')).toBe(Errno.NOTDIR)
  })

  test('filestat_get follows symlinks only with SYMLINK_FOLLOW', () => {
    writeFileSync(join(dir, 'f'), 'abc')
    symlinkSync('f', join(dir, 'l'))
    const g = withData()
    const st = g.alloc(64)
    expect(g.path((a, b) => g.w.path_filestat_get(3, Lookupflags.SYMLINK_FOLLOW, a, b, st), 'l')).toBe(0)
    expect(g.u8(st + 16)).toBe(Filetype.REGULAR_FILE)
    expect(g.u64(st + 32)).toBe(3n)
    expect(g.path((a, b) => g.w.path_filestat_get(3, 0, a, b, st), 'l')).toBe(0)
    expect(g.u8(st + 16)).toBe(Filetype.SYMBOLIC_LINK)
    expect(g.path((a, b) => g.w.path_filestat_get(3, 0, a, b, st), 'nope')).toBe(Errno.NOENT)
    expect(g.path((a, b) => g.w.path_filestat_get(3, 0, a, b, st), '.')).toBe(0)
    expect(g.u8(st + 16)).toBe(Filetype.DIRECTORY)
  })

  test('filestat_set_times by path, following or not', () => {
    writeFileSync(join(dir, 'f'), 'abc')
    symlinkSync('f', join(dir, 'l'))
    const g = withData()
    const t = 1_300_000_000_000_000_000n
    expect(g.path((a, b) => g.w.path_filestat_set_times(3, Lookupflags.SYMLINK_FOLLOW, a, b, t, t, Fstflags.ATIM | Fstflags.MTIM), 'l')).toBe(0)
    expect(statSync(join(dir, 'f')).mtimeMs).toBe(1_300_000_000_000)
    expect(g.path((a, b) => g.w.path_filestat_set_times(3, 0, a, b, 0n, t + 5_000_000_000n, Fstflags.MTIM), 'l')).toBe(0)
    expect(statSync(join(dir, 'f')).mtimeMs).toBe(1_300_000_000_000)
    expect(g.path((a, b) => g.w.path_filestat_set_times(3, 0, a, b, 0n, 0n, Fstflags.ATIM | Fstflags.ATIM_NOW), 'f')).toBe(Errno.INVAL)
  })

  test('rename and link inside the preopen', () => {
    writeFileSync(join(dir, 'f'), 'abc')
    mkdirSync(join(dir, 'd'))
    const g = withData()
    const [o, ol] = g.bytes('f')
    const [n, nl] = g.bytes('d/g')
    expect(g.w.path_rename(3, o, ol, 3, n, nl)).toBe(0)
    expect(readFileSync(join(dir, 'd', 'g'), 'utf8')).toBe('abc')
    expect(g.w.path_rename(3, o, ol, 3, n, nl)).toBe(Errno.NOENT)
    const [h, hl] = g.bytes('h')
    expect(g.w.path_link(3, 0, n, nl, 3, h, hl)).toBe(0)
    expect(statSync(join(dir, 'h')).nlink).toBe(2)
    expect(g.w.path_link(3, 0, n, nl, 3, h, hl)).toBe(Errno.EXIST)
    const [d, dl] = g.bytes('d')
    const [d2, d2l] = g.bytes('d2')
    expect(g.w.path_link(3, 0, d, dl, 3, d2, d2l)).toBe(Errno.PERM)
    expect(g.w.path_rename(3, d, dl, 3, d2, d2l)).toBe(0)
    const [self, selfl] = g.bytes('d2/sub')
    expect(g.w.path_rename(3, d2, d2l, 3, self, selfl)).toBe(Errno.INVAL)
    const [dot, dotl] = g.bytes('.')
    expect(g.w.path_rename(3, dot, dotl, 3, d, dl)).not.toBe(0)
  })

  test('readlink: text, truncation, not a symlink', () => {
    writeFileSync(join(dir, 'f'), 'abc')
    symlinkSync('f', join(dir, 'l'))
    const g = withData()
    const buf = g.alloc(16, 0xee)
    const used = g.alloc(4)
    expect(g.path((a, b) => g.w.path_readlink(3, a, b, buf, 16, used), 'l')).toBe(0)
    expect(g.text(buf, g.u32(used))).toBe('f')
    symlinkSync('a/longer/target', join(dir, 'l2'))
    expect(g.path((a, b) => g.w.path_readlink(3, a, b, buf, 4, used), 'l2')).toBe(0)
    expect(g.u32(used)).toBe(4)
    expect(g.text(buf, 4)).toBe('a/lo')
    expect(g.path((a, b) => g.w.path_readlink(3, a, b, buf, 16, used), 'f')).toBe(Errno.INVAL)
  })

  test('path_symlink: the link holds the text as given; errnos as on Linux (wasmtime)', () => {
    writeFileSync(join(dir, 'f'), 'abc')
    mkdirSync(join(dir, 'd'))
    const g = withData()
    const link = (target: string, path: string, fd = 3): number => {
      const [o, ol] = g.bytes(target)
      const [n, nl] = g.bytes(path)
      return g.w.path_symlink(o, ol, fd, n, nl)
    }
    expect(link('f', 'l')).toBe(0)
    expect(readlinkSync(join(dir, 'l'))).toBe('f')
    expect(g.read(g.open('l').fd).text).toBe('abc')
    expect(link('does-not-exist-yet', 'dangling')).toBe(0)
    expect(link('self', 'self')).toBe(0)
    expect(g.open('self').errno).toBe(Errno.LOOP)
    // The destination: taken (a file, a directory, a dangling link), or "a directory" by its
    // trailing slash.
    expect(link('x', 'f')).toBe(Errno.EXIST)
    expect(link('x', 'd')).toBe(Errno.EXIST)
    expect(link('x', 'd/')).toBe(Errno.EXIST)
    expect(link('x', 'dangling')).toBe(Errno.EXIST)
    expect(link('x', 'f/')).toBe(Errno.NOTDIR)
    expect(link('x', 'new/')).toBe(Errno.NOENT)
    expect(link('x', 'missing/new')).toBe(Errno.NOENT)
    // The target text.
    expect(link('', 'empty')).toBe(Errno.NOENT)
    expect(link('a\0b', 'nul')).toBe(Errno.INVAL)
    expect(link('x'.repeat(5000), 'long')).toBe(Errno.NAMETOOLONG)
    // The fd.
    expect(link('f', 'l2', 9)).toBe(Errno.BADF)
    expect(link('f', 'l2', 1)).toBe(Errno.NOTDIR)
    const noRight = g.open('d', { oflags: Oflags.DIRECTORY, base: DIR & ~Rights.PATH_SYMLINK })
    expect(link('f', 'l2', noRight.fd)).toBe(Errno.NOTCAPABLE)
    expect(existsSync(join(dir, 'l2'))).toBe(false)
  })
})

describe('args, environ', () => {
  test('sizes and arrays: pointers into one buffer of NUL-terminated strings', () => {
    const g = guest({ args: ['prog', 'é', ''], env: { A: '1', EMPTY: '' } })
    const count = g.alloc(4)
    const size = g.alloc(4)
    expect(g.w.args_sizes_get(count, size)).toBe(0)
    expect([g.u32(count), g.u32(size)]).toEqual([3, 5 + 3 + 1])
    const argv = g.alloc(12)
    const buf = g.alloc(9)
    expect(g.w.args_get(argv, buf)).toBe(0)
    expect([g.u32(argv), g.u32(argv + 4), g.u32(argv + 8)]).toEqual([buf, buf + 5, buf + 8])
    expect(Buffer.from(new Uint8Array(g.memory.buffer, buf, 9))).toEqual(Buffer.from('prog\0é\0\0'))
    expect(g.w.environ_sizes_get(count, size)).toBe(0)
    expect([g.u32(count), g.u32(size)]).toEqual([2, 4 + 7])
    const envp = g.alloc(8)
    const ebuf = g.alloc(11)
    expect(g.w.environ_get(envp, ebuf)).toBe(0)
    expect(g.text(g.u32(envp), 3)).toBe('A=1')
    expect(g.text(g.u32(envp + 4), 6)).toBe('EMPTY=')
    expect(g.w.args_get(argv, g.size - 2)).toBe(Errno.FAULT)
  })

  test('nothing of the host environment is inherited', () => {
    const g = guest()
    const count = g.alloc(4)
    expect(g.w.environ_sizes_get(count, g.alloc(4))).toBe(0)
    expect(g.u32(count)).toBe(0)
  })

  test('bad options are refused at creation', () => {
    const base: WasiOptions = { args: [], env: {}, preopens: [], stdin: new Uint8Array(), stdoutLimit: 1, stderrLimit: 1, deadline: 0 }
    expect(() => createWasi({ ...base, args: ['a\0b'] })).toThrow(TypeError)
    expect(() => createWasi({ ...base, env: { 'A=B': 'x' } })).toThrow(TypeError)
    expect(() => createWasi({ ...base, preopens: [{ guestPath: '', hostPath: dir, readOnly: false }] })).toThrow(TypeError)
    expect(() => createWasi({ ...base, preopens: [{ guestPath: '/x', hostPath: join(dir, 'nope'), readOnly: false }] })).toThrow(/ENOENT/)
  })
})

describe('clocks, random, sched, proc, sock', () => {
  test('clock_time_get: realtime near Date.now, monotonic increasing, cputime, bad id', () => {
    const g = guest()
    const t = g.alloc(8)
    expect(g.w.clock_time_get(Clockid.REALTIME, 0n, t)).toBe(0)
    expect(Math.abs(Number(g.u64(t) / 1_000_000n) - Date.now())).toBeLessThan(1000)
    expect(g.w.clock_time_get(Clockid.MONOTONIC, 0n, t)).toBe(0)
    const m1 = g.u64(t)
    g.w.clock_time_get(Clockid.MONOTONIC, 0n, t)
    expect(g.u64(t)).toBeGreaterThanOrEqual(m1)
    // The CPU clocks count the call's own CPU time from the first reading of either (0), at the
    // kernel's accounting granularity: burn some on this thread, then both have moved.
    expect(g.w.clock_time_get(Clockid.PROCESS_CPUTIME_ID, 0n, t)).toBe(0)
    expect(g.u64(t)).toBe(0n)
    const burnUntil = process.threadCpuUsage().user + process.threadCpuUsage().system + 30_000
    for (let u = process.threadCpuUsage(); u.user + u.system < burnUntil; u = process.threadCpuUsage());
    expect(g.w.clock_time_get(Clockid.PROCESS_CPUTIME_ID, 0n, t)).toBe(0)
    const p1 = g.u64(t)
    expect(p1).toBeGreaterThanOrEqual(30_000_000n)
    expect(p1).toBeLessThan(10_000_000_000n)
    expect(g.w.clock_time_get(Clockid.THREAD_CPUTIME_ID, 0n, t)).toBe(0)
    expect(g.u64(t)).toBeGreaterThanOrEqual(p1)
    expect(g.w.clock_time_get(4, 0n, t)).toBe(Errno.INVAL)
    expect(g.w.clock_time_get(Clockid.REALTIME, 0n, g.size - 4)).toBe(Errno.FAULT)
    expect(g.w.clock_res_get(Clockid.MONOTONIC, t)).toBe(0)
    expect(g.u64(t)).toBe(1n)
    expect(g.w.clock_res_get(Clockid.REALTIME, t)).toBe(0)
    expect(g.u64(t)).toBe(1000n)
    expect(g.w.clock_res_get(9, t)).toBe(Errno.INVAL)
  })

  test('random_get fills the buffer, large ones too', () => {
    const g = guest()
    const n = 100_000
    const buf = g.alloc(n)
    expect(g.w.random_get(buf, n)).toBe(0)
    const bytes = new Uint8Array(g.memory.buffer, buf, n)
    expect(new Set(bytes).size).toBeGreaterThan(250)
    expect(bytes.subarray(n - 64).some((b) => b !== 0)).toBe(true)
    expect(g.w.random_get(g.size - 10, 11)).toBe(Errno.FAULT)
    expect(g.w.random_get(buf, 0)).toBe(0)
  })

  test('proc_exit throws WasiExit with the u32 code; proc_raise refuses; sched_yield succeeds', () => {
    const g = guest()
    expect(() => g.w.proc_exit(3)).toThrow(WasiExit)
    try {
      g.w.proc_exit(-1)
    } catch (err) {
      expect(err).toBeInstanceOf(WasiExit)
      expect((err as WasiExit).code).toBe(4294967295)
    }
    expect(g.w.proc_raise(6)).toBe(Errno.NOTSUP)
    expect(g.w.sched_yield()).toBe(0)
  })

  test('sock_*: no fd is a socket: ENOTSOCK on an open fd, EBADF on a closed one (as wasmtime)', () => {
    const g = withData()
    for (const fd of [0, 1, 2, 3]) {
      expect(g.w.sock_accept(fd, 0, g.alloc(4))).toBe(Errno.NOTSOCK)
      expect(g.w.sock_recv(fd, 0, 0, 0, g.alloc(4), g.alloc(4))).toBe(Errno.NOTSOCK)
      expect(g.w.sock_send(fd, 0, 0, 0, g.alloc(4))).toBe(Errno.NOTSOCK)
      expect(g.w.sock_shutdown(fd, 3)).toBe(Errno.NOTSOCK)
    }
    expect(g.w.sock_accept(4, 0, g.alloc(4))).toBe(Errno.BADF)
    expect(g.w.sock_recv(4, 0, 0, 0, g.alloc(4), g.alloc(4))).toBe(Errno.BADF)
    expect(g.w.sock_send(4, 0, 0, 0, g.alloc(4))).toBe(Errno.BADF)
    expect(g.w.sock_shutdown(4, 3)).toBe(Errno.BADF)
  })
})

/** Writes subscriptions and runs poll_oneoff. */
function poll (g: Guest, subs: Array<{ userdata: bigint, clock?: { id: number, timeout: bigint, flags?: number }, fd?: { type: 1 | 2, fd: number } }>): { errno: number, events: Array<{ userdata: bigint, error: number, type: number, nbytes: bigint, flags: number }>, ms: number } {
  const inPtr = g.alloc(48 * subs.length, 0xcc)
  subs.forEach((s, i) => {
    const p = inPtr + i * 48
    g.dv.setBigUint64(p, s.userdata, true)
    if (s.clock !== undefined) {
      g.dv.setUint8(p + 8, Eventtype.CLOCK)
      g.dv.setUint32(p + 16, s.clock.id, true)
      g.dv.setBigUint64(p + 24, s.clock.timeout, true)
      g.dv.setBigUint64(p + 32, 0n, true)
      g.dv.setUint16(p + 40, s.clock.flags ?? 0, true)
    } else if (s.fd !== undefined) {
      g.dv.setUint8(p + 8, s.fd.type)
      g.dv.setUint32(p + 16, s.fd.fd, true)
    } else {
      g.dv.setUint8(p + 8, 7)
    }
  })
  const out = g.alloc(32 * subs.length, 0xcc)
  const nevents = g.alloc(4)
  const started = Date.now()
  const errno = g.w.poll_oneoff(inPtr, out, subs.length, nevents)
  const ms = Date.now() - started
  const events = Array.from({ length: errno === 0 ? g.u32(nevents) : 0 }, (_, i) => {
    const p = out + i * 32
    expect(g.u8(p + 11)).toBe(0) // padding zeroed
    return { userdata: g.u64(p), error: g.u16(p + 8), type: g.u8(p + 10), nbytes: g.u64(p + 16), flags: g.u16(p + 24) }
  })
  return { errno, events, ms }
}

describe('poll_oneoff', () => {
  test('a relative clock sleeps about that long', () => {
    const g = guest()
    const r = poll(g, [{ userdata: 7n, clock: { id: Clockid.MONOTONIC, timeout: 30_000_000n } }])
    expect(r.errno).toBe(0)
    expect(r.events).toEqual([{ userdata: 7n, error: 0, type: Eventtype.CLOCK, nbytes: 0n, flags: 0 }])
    expect(r.ms).toBeGreaterThanOrEqual(29)
    expect(r.ms).toBeLessThan(1000)
  })

  test('a huge timeout returns at the deadline, not later', () => {
    const g = guest({ deadline: Date.now() + 150 })
    const r = poll(g, [{ userdata: 1n, clock: { id: Clockid.MONOTONIC, timeout: 3_600_000_000_000n } }])
    expect(r.errno).toBe(0)
    expect(r.events).toHaveLength(1)
    expect(r.ms).toBeGreaterThanOrEqual(100)
    expect(r.ms).toBeLessThan(1000)
    // Past the deadline nothing sleeps at all.
    expect(poll(g, [{ userdata: 1n, clock: { id: Clockid.REALTIME, timeout: 3_600_000_000_000n } }]).ms).toBeLessThan(50)
  })

  test('an absolute realtime clock in the past fires at once', () => {
    const g = guest()
    const r = poll(g, [{ userdata: 2n, clock: { id: Clockid.REALTIME, timeout: 1n, flags: 1 } }])
    expect(r.events).toHaveLength(1)
    expect(r.ms).toBeLessThan(50)
  })

  test('fd subscriptions are ready at once, with nbytes; clocks not yet due are not reported', () => {
    const g = withData({ stdin: Buffer.from('12345'), stdoutLimit: 100 })
    g.write(1, 'x'.repeat(40))
    writeFileSync(join(dir, 'f'), 'abc')
    const { fd } = g.open('f')
    const r = poll(g, [
      { userdata: 1n, fd: { type: 1, fd: 0 } },
      { userdata: 2n, fd: { type: 2, fd: 1 } },
      { userdata: 3n, fd: { type: 1, fd } },
      { userdata: 4n, fd: { type: 1, fd: 99 } },
      { userdata: 5n, clock: { id: Clockid.MONOTONIC, timeout: 10_000_000_000n } },
      { userdata: 6n, fd: { type: 1, fd: 3 } }
    ])
    expect(r.ms).toBeLessThan(100)
    expect(r.events).toEqual([
      { userdata: 1n, error: 0, type: Eventtype.FD_READ, nbytes: 5n, flags: 0 },
      { userdata: 2n, error: 0, type: Eventtype.FD_WRITE, nbytes: 60n, flags: 0 },
      { userdata: 3n, error: 0, type: Eventtype.FD_READ, nbytes: 3n, flags: 0 },
      { userdata: 4n, error: Errno.BADF, type: Eventtype.FD_READ, nbytes: 0n, flags: 0 },
      { userdata: 6n, error: Errno.BADF, type: Eventtype.FD_READ, nbytes: 0n, flags: 0 }
    ])
    g.read(0)
    expect(poll(g, [{ userdata: 1n, fd: { type: 1, fd: 0 } }]).events[0]?.flags).toBe(1) // HANGUP at EOF
  })

  test('errors: no subscriptions, an unknown tag, CPU-time clocks, out-of-bounds buffers', () => {
    const g = guest()
    expect(g.w.poll_oneoff(g.alloc(48), g.alloc(32), 0, g.alloc(4))).toBe(Errno.INVAL)
    expect(poll(g, [{ userdata: 1n }]).errno).toBe(Errno.INVAL)
    const r = poll(g, [{ userdata: 9n, clock: { id: Clockid.PROCESS_CPUTIME_ID, timeout: 1000n } }])
    expect(r.events).toEqual([{ userdata: 9n, error: Errno.NOTSUP, type: Eventtype.CLOCK, nbytes: 0n, flags: 0 }])
    expect(g.w.poll_oneoff(g.size - 40, g.alloc(32), 1, g.alloc(4))).toBe(Errno.FAULT)
    expect(g.w.poll_oneoff(g.alloc(48), g.size - 16, 1, g.alloc(4))).toBe(Errno.FAULT)
  })
})

describe('guest pointers and argument types', () => {
  test('out-of-bounds iovecs, buffers and result pointers are EFAULT, with no side effect', () => {
    const g = withData()
    const { fd } = g.open('f', { oflags: Oflags.CREAT })
    const [iovs, count] = g.iovs('data')
    expect(g.w.fd_write(fd, iovs, count, g.size)).toBe(Errno.FAULT)
    expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('')
    expect(g.w.fd_write(fd, g.size - 4, 1, g.alloc(4))).toBe(Errno.FAULT)
    const bad = g.alloc(8)
    g.dv.setUint32(bad, g.size - 2, true)
    g.dv.setUint32(bad + 4, 10, true)
    expect(g.w.fd_write(1, bad, 1, g.alloc(4))).toBe(Errno.FAULT)
    expect(g.w.fd_read(0, bad, 1, g.alloc(4))).toBe(Errno.FAULT)
    expect(g.w.fd_fdstat_get(1, 0xffffffff)).toBe(Errno.FAULT)
    expect(g.w.fd_fdstat_get(1, -1)).toBe(Errno.FAULT)
    expect(g.w.path_open(3, 0, g.size - 1, 10, 0, ALL, ALL, 0, g.alloc(4))).toBe(Errno.FAULT)
    expect(g.w.fd_write(1, iovs, 5000, g.alloc(4))).toBe(Errno.INVAL)
    expect(Buffer.from(g.wasi.stdout()).toString()).toBe('')
  })

  test('a value of the wrong type is EFAULT, never a host exception', () => {
    const g = guest()
    const loose = g.w as unknown as Record<string, (...args: unknown[]) => unknown>
    expect(loose.fd_write?.(1, 1n, 1, 0)).toBe(Errno.FAULT)
    expect(loose.clock_time_get?.(0, 0, 64)).toBe(Errno.FAULT)
    expect(loose.fd_close?.('1')).toBe(Errno.FAULT)
    expect(loose.fd_close?.()).toBe(Errno.FAULT)
    expect(loose.proc_exit?.(1n)).toBe(Errno.FAULT)
  })

  test('calls before bind are EFAULT', () => {
    const wasi = createWasi({ args: ['a'], env: {}, preopens: [], stdin: new Uint8Array(), stdoutLimit: 1, stderrLimit: 1, deadline: 0 })
    try {
      expect(wasi.imports.args_sizes_get(0, 4)).toBe(Errno.FAULT)
    } finally {
      wasi.close()
    }
  })

  test('a memory that grows between calls is re-read', () => {
    const memory = new (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number, maximum: number }) => WebAssembly.Memory & { grow: (n: number) => number } } }).WebAssembly.Memory({ initial: 1, maximum: 4 })
    const wasi = createWasi({ args: ['abc'], env: {}, preopens: [], stdin: new Uint8Array(), stdoutLimit: 1, stderrLimit: 1, deadline: 0 })
    try {
      wasi.bind(memory)
      expect(wasi.imports.args_sizes_get(65536 + 8, 65536 + 12)).toBe(Errno.FAULT)
      memory.grow(1)
      expect(wasi.imports.args_sizes_get(65536 + 8, 65536 + 12)).toBe(0)
      expect(new DataView(memory.buffer).getUint32(65536 + 12, true)).toBe(4)
    } finally {
      wasi.close()
    }
  })
})

describe('shared memory', () => {
  test('a guest memory backed by a SharedArrayBuffer works for files, strings, random and stdio', () => {
    const memory = new (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number, maximum: number, shared: boolean }) => WebAssembly.Memory } }).WebAssembly.Memory({ initial: 1, maximum: 1, shared: true })
    expect(memory.buffer).toBeInstanceOf(SharedArrayBuffer)
    writeFileSync(join(dir, 'f'), 'shared!')
    const wasi = createWasi({ args: [], env: {}, preopens: [{ guestPath: '/d', hostPath: dir, readOnly: false }], stdin: Buffer.from('in'), stdoutLimit: 100, stderrLimit: 10, deadline: 0 })
    try {
      wasi.bind(memory)
      const bytes = new Uint8Array(memory.buffer)
      const dv = new DataView(memory.buffer)
      bytes.set(Buffer.from('f'), 100)
      expect(wasi.imports.path_open(3, 0, 100, 1, 0, ALL, ALL, 0, 200)).toBe(0)
      dv.setUint32(300, 400, true)
      dv.setUint32(304, 7, true)
      expect(wasi.imports.fd_read(dv.getUint32(200, true), 300, 1, 308)).toBe(0)
      expect(Buffer.from(bytes.slice(400, 407)).toString()).toBe('shared!')
      expect(wasi.imports.fd_write(1, 300, 1, 308)).toBe(0)
      expect(Buffer.from(wasi.stdout()).toString()).toBe('shared!')
      expect(wasi.imports.random_get(500, 64)).toBe(0)
      expect(bytes.subarray(500, 564).some((b) => b !== 0)).toBe(true)
    } finally {
      wasi.close()
    }
  })
})

describe('hard links count once', () => {
  test('a file with two names keeps its content through either', () => {
    writeFileSync(join(dir, 'a'), 'one')
    linkSync(join(dir, 'a'), join(dir, 'b'))
    const g = withData()
    const { fd } = g.open('b')
    g.write(fd, 'two')
    expect(readFileSync(join(dir, 'a'), 'utf8')).toBe('two')
  })
})
