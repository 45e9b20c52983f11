// The ABI must be exactly the spec's. Rather than restating numbers, ask the compiler: wasi-libc's
// <wasi/api.h> is generated from the preview1 witx, so a C program compiled against it prints
// every constant and every struct offset as clang lays them out for wasm32, and its imports
// carry the core-wasm type of every function. We run that program on our own WASI.
import { readFileSync } from 'node:fs'
import { cSource, hasClang } from '../helpers/fixtures'
import { createWasi, Errno, WASI_SIGNATURES, WasiExit, matchesSignature } from '../../src/sandbox/wasi'
import { Advice, Clockid, Eventrwflags, Eventtype, Fdflags, Filetype, Fstflags, Lookupflags, Oflags, Preopentype, Rights, Subclockflags, Whence } from '../../src/sandbox/wasi/constants'
import { DIRENT, EVENT, FDSTAT, FILESTAT, IOVEC, PRESTAT, SUBSCRIPTION } from '../../src/sandbox/wasi/layout'

const API_H = '/usr/include/wasm32-wasi/wasi/api.h'
const clang = hasClang()
if (!clang) console.warn('wasi-abi.test: clang-14 or wasi-libc missing: ABI checks against wasi-libc are skipped')
const describeC = clang ? describe : describe.skip

/** Runs a C program on our WASI and returns its stdout. */
function runC (source: string): string {
  const wasi = createWasi({ args: [], env: {}, preopens: [], stdin: new Uint8Array(0), stdoutLimit: 1 << 20, stderrLimit: 1024, deadline: Date.now() + 10_000 })
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(cSource(source))), { wasi_snapshot_preview1: wasi.imports })
    wasi.bind(instance.exports.memory as { buffer: ArrayBuffer })
    try {
      (instance.exports._start as () => void)()
    } catch (err) {
      if (!(err instanceof WasiExit)) throw err
    }
    return Buffer.from(wasi.stdout()).toString()
  } finally {
    wasi.close()
  }
}

/** name -> [C expression, our value]. */
function constants (): Array<[string, string, bigint]> {
  const rows: Array<[string, string, bigint]> = []
  const add = (prefix: string, table: Record<string, number | bigint>): void => {
    for (const [name, value] of Object.entries(table)) rows.push([`${prefix}${name}`, `(unsigned long long)(${prefix}${name})`, BigInt(value)])
  }
  add('__WASI_ERRNO_', Errno)
  add('__WASI_RIGHTS_', Rights)
  add('__WASI_FILETYPE_', Filetype)
  add('__WASI_FDFLAGS_', Fdflags)
  add('__WASI_OFLAGS_', Oflags)
  add('__WASI_LOOKUPFLAGS_', Lookupflags)
  add('__WASI_FSTFLAGS_', Fstflags)
  add('__WASI_WHENCE_', Whence)
  add('__WASI_CLOCKID_', Clockid)
  add('__WASI_ADVICE_', Advice)
  add('__WASI_EVENTTYPE_', Eventtype)
  add('__WASI_SUBCLOCKFLAGS_', Subclockflags)
  add('__WASI_EVENTRWFLAGS_', Eventrwflags)
  add('__WASI_PREOPENTYPE_', Preopentype)
  return rows
}

/** [label, C expression, our value] for struct sizes and offsets. */
function layouts (): Array<[string, string, bigint]> {
  const rows: Array<[string, string, number]> = [
    ['sizeof filestat', 'sizeof(__wasi_filestat_t)', FILESTAT.size],
    ['filestat.dev', 'offsetof(__wasi_filestat_t, dev)', FILESTAT.dev],
    ['filestat.ino', 'offsetof(__wasi_filestat_t, ino)', FILESTAT.ino],
    ['filestat.filetype', 'offsetof(__wasi_filestat_t, filetype)', FILESTAT.filetype],
    ['filestat.nlink', 'offsetof(__wasi_filestat_t, nlink)', FILESTAT.nlink],
    ['filestat.size', 'offsetof(__wasi_filestat_t, size)', FILESTAT.fileSize],
    ['filestat.atim', 'offsetof(__wasi_filestat_t, atim)', FILESTAT.atim],
    ['filestat.mtim', 'offsetof(__wasi_filestat_t, mtim)', FILESTAT.mtim],
    ['filestat.ctim', 'offsetof(__wasi_filestat_t, ctim)', FILESTAT.ctim],
    ['sizeof fdstat', 'sizeof(__wasi_fdstat_t)', FDSTAT.size],
    ['fdstat.filetype', 'offsetof(__wasi_fdstat_t, fs_filetype)', FDSTAT.filetype],
    ['fdstat.flags', 'offsetof(__wasi_fdstat_t, fs_flags)', FDSTAT.flags],
    ['fdstat.rights_base', 'offsetof(__wasi_fdstat_t, fs_rights_base)', FDSTAT.rightsBase],
    ['fdstat.rights_inheriting', 'offsetof(__wasi_fdstat_t, fs_rights_inheriting)', FDSTAT.rightsInheriting],
    ['sizeof prestat', 'sizeof(__wasi_prestat_t)', PRESTAT.size],
    ['prestat.tag', 'offsetof(__wasi_prestat_t, tag)', PRESTAT.tag],
    ['prestat.name_len', 'offsetof(__wasi_prestat_t, u.dir.pr_name_len)', PRESTAT.nameLen],
    ['sizeof dirent', 'sizeof(__wasi_dirent_t)', DIRENT.size],
    ['dirent.next', 'offsetof(__wasi_dirent_t, d_next)', DIRENT.next],
    ['dirent.ino', 'offsetof(__wasi_dirent_t, d_ino)', DIRENT.ino],
    ['dirent.namlen', 'offsetof(__wasi_dirent_t, d_namlen)', DIRENT.namlen],
    ['dirent.type', 'offsetof(__wasi_dirent_t, d_type)', DIRENT.type],
    ['sizeof iovec', 'sizeof(__wasi_iovec_t)', IOVEC.size],
    ['iovec.buf', 'offsetof(__wasi_iovec_t, buf)', IOVEC.buf],
    ['iovec.buf_len', 'offsetof(__wasi_iovec_t, buf_len)', IOVEC.bufLen],
    ['sizeof ciovec', 'sizeof(__wasi_ciovec_t)', IOVEC.size],
    ['sizeof subscription', 'sizeof(__wasi_subscription_t)', SUBSCRIPTION.size],
    ['subscription.userdata', 'offsetof(__wasi_subscription_t, userdata)', SUBSCRIPTION.userdata],
    ['subscription.tag', 'offsetof(__wasi_subscription_t, u.tag)', SUBSCRIPTION.tag],
    ['subscription.clock.id', 'offsetof(__wasi_subscription_t, u.u.clock.id)', SUBSCRIPTION.clockId],
    ['subscription.clock.timeout', 'offsetof(__wasi_subscription_t, u.u.clock.timeout)', SUBSCRIPTION.clockTimeout],
    ['subscription.clock.precision', 'offsetof(__wasi_subscription_t, u.u.clock.precision)', SUBSCRIPTION.clockPrecision],
    ['subscription.clock.flags', 'offsetof(__wasi_subscription_t, u.u.clock.flags)', SUBSCRIPTION.clockFlags],
    ['subscription.fd_read.fd', 'offsetof(__wasi_subscription_t, u.u.fd_read.file_descriptor)', SUBSCRIPTION.fd],
    ['subscription.fd_write.fd', 'offsetof(__wasi_subscription_t, u.u.fd_write.file_descriptor)', SUBSCRIPTION.fd],
    ['sizeof event', 'sizeof(__wasi_event_t)', EVENT.size],
    ['event.userdata', 'offsetof(__wasi_event_t, userdata)', EVENT.userdata],
    ['event.error', 'offsetof(__wasi_event_t, error)', EVENT.error],
    ['event.type', 'offsetof(__wasi_event_t, type)', EVENT.type],
    ['event.nbytes', 'offsetof(__wasi_event_t, fd_readwrite.nbytes)', EVENT.nbytes],
    ['event.flags', 'offsetof(__wasi_event_t, fd_readwrite.flags)', EVENT.flags]
  ]
  return rows.map(([label, expr, ours]) => [label, `(unsigned long long)(${expr})`, BigInt(ours)])
}

function printer (rows: Array<[string, string, bigint]>): string {
  const lines = rows.map(([label, expr]) => `  printf("%s=%llu\\n", "${label}", ${expr});`)
  return `#include <stddef.h>\n#include <stdio.h>\n#include <wasi/api.h>\nint main(void) {\n${lines.join('\n')}\n  return 0;\n}\n`
}

function parse (stdout: string): Map<string, bigint> {
  const out = new Map<string, bigint>()
  for (const line of stdout.trim().split('\n')) {
    const at = line.indexOf('=')
    out.set(line.slice(0, at), BigInt(line.slice(at + 1)))
  }
  return out
}

/** Reads the type and import sections of a wasm binary (just enough of the format). */
function readImports (bytes: Uint8Array): { types: Array<{ params: string[], results: string[] }>, imports: Array<{ module: string, name: string, type: number }> } {
  let pos = 8
  const leb = (): number => {
    let result = 0
    let shift = 0
    for (;;) {
      const b = bytes[pos++] ?? 0
      result += (b & 0x7f) * 2 ** shift
      shift += 7
      if ((b & 0x80) === 0) return result
    }
  }
  const name = (): string => {
    const len = leb()
    pos += len
    return Buffer.from(bytes.subarray(pos - len, pos)).toString()
  }
  const valtype = (b: number): string => ({ 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64' })[b] ?? `0x${b.toString(16)}`
  const types: Array<{ params: string[], results: string[] }> = []
  const imports: Array<{ module: string, name: string, type: number }> = []
  while (pos < bytes.length) {
    const id = bytes[pos++]
    const size = leb()
    const end = pos + size
    if (id === 1) {
      for (let n = leb(); n > 0; n--) {
        pos++ // 0x60: func
        const params = Array.from({ length: leb() }, () => valtype(bytes[pos++] ?? 0))
        const results = Array.from({ length: leb() }, () => valtype(bytes[pos++] ?? 0))
        types.push({ params, results })
      }
    } else if (id === 2) {
      for (let n = leb(); n > 0; n--) {
        const module = name()
        const field = name()
        const kind = bytes[pos++]
        if (kind !== 0) break // only functions come first in clang's output; stop at others
        imports.push({ module, name: field, type: leb() })
      }
    }
    pos = end
  }
  return { types, imports }
}

describeC('ABI against wasi-libc (generated from the preview1 witx)', () => {
  test('every errno, right, flag and enum value', () => {
    const rows = constants()
    const got = parse(runC(printer(rows)))
    for (const [label, , ours] of rows) expect([label, got.get(label)]).toEqual([label, ours])
    // Complete, not just consistent: api.h defines no errno we lack.
    const header = readFileSync(API_H, 'utf8')
    const inHeader = [...header.matchAll(/#define __WASI_ERRNO_(\w+) /g)].map((m) => m[1])
    expect(inHeader.sort()).toEqual(Object.keys(Errno).sort())
    const rightsInHeader = [...header.matchAll(/#define __WASI_RIGHTS_(\w+) /g)].map((m) => m[1])
    expect(rightsInHeader.sort()).toEqual(Object.keys(Rights).sort())
  })

  test('struct sizes and offsets', () => {
    const rows = layouts()
    const got = parse(runC(printer(rows)))
    for (const [label, , ours] of rows) expect([label, got.get(label)]).toEqual([label, ours])
  })

  test('the core-wasm type of every import', () => {
    // Call every function declared in api.h (never executed), so that all are imported.
    const header = readFileSync(API_H, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/[^\n]*/g, '')
    const protos = [...header.matchAll(/(?:__wasi_errno_t|_Noreturn void) __wasi_(\w+)\(([^)]*)\)/g)]
    // proc_exit is _Noreturn: anything after it would be dropped, so it goes last.
    protos.sort((a, b) => Number(a[1] === 'proc_exit') - Number(b[1] === 'proc_exit'))
    const calls = protos.map(([, name, params]) => {
      const n = (params ?? '').trim() === 'void' ? 0 : (params ?? '').split(',').length
      return `    (void)__wasi_${name ?? ''}(${Array(n).fill('0').join(', ')});`
    })
    const source = `#include <wasi/api.h>\nvolatile int never = 0;\nint main(void) {\n  if (never) {\n${calls.join('\n')}\n  }\n  return 0;\n}\n`
    const { types, imports } = readImports(cSource(source))
    const wasiImports = imports.filter((i) => i.module === 'wasi_snapshot_preview1')
    expect(wasiImports.map((i) => i.name).sort()).toEqual(protos.map((p) => p[1]).sort())
    for (const { name, type } of wasiImports) {
      const sig = types[type]
      expect(sig).toBeDefined()
      expect([name, matchesSignature(name, sig?.params ?? [], sig?.results ?? [])]).toEqual([name, true])
    }
    // api.h is preview1 minus proc_raise (dropped from wasi-libc's header, still in the witx).
    expect(Object.keys(WASI_SIGNATURES).filter((n) => !wasiImports.some((i) => i.name === n))).toEqual(['proc_raise'])
  })
})

describe('imports object', () => {
  test('exactly the 46 functions of wasi_snapshot_preview1, each with its name', () => {
    const wasi = createWasi({ args: [], env: {}, preopens: [], stdin: new Uint8Array(0), stdoutLimit: 0, stderrLimit: 0, deadline: 0 })
    try {
      const names = Object.keys(wasi.imports).sort()
      expect(names).toEqual(Object.keys(WASI_SIGNATURES).sort())
      expect(names).toHaveLength(46)
      for (const [name, fn] of Object.entries(wasi.imports)) {
        // (no arity: the wrappers take the raw arguments and check them against the signature)
        expect(name in WASI_SIGNATURES && fn.name === name).toBe(true)
      }
      // Usable as an import object namespace without a cast.
      const namespace: Record<string, (...args: never[]) => number | bigint | void> = wasi.imports
      expect(typeof namespace.fd_write).toBe('function')
    } finally {
      wasi.close()
    }
  })

  test('matchesSignature refuses a wrong type, a wrong result and an unknown name', () => {
    expect(matchesSignature('fd_write', ['i32', 'i32', 'i32', 'i32'], ['i32'])).toBe(true)
    expect(matchesSignature('fd_write', ['i32', 'i32', 'i32', 'i64'], ['i32'])).toBe(false)
    expect(matchesSignature('fd_write', ['i32', 'i32', 'i32', 'i32'], [])).toBe(false)
    expect(matchesSignature('proc_exit', ['i32'], [])).toBe(true)
    expect(matchesSignature('proc_exit', ['i32'], ['i32'])).toBe(false)
    expect(matchesSignature('toString', [], ['i32'])).toBe(false)
    expect(matchesSignature('fd_dup', ['i32', 'i32'], ['i32'])).toBe(false)
  })
})
