// Test plugins are built from source at test time: WAT through the `wabt` package, C through
// clang for wasm32-wasi, Rust through rustc (no cargo, no crates). Results are cached by content hash under .cache/fixtures so a test
// run compiles each source once, and no binary is ever committed.
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import wabtInit from 'wabt'
import { WAT_FEATURES } from '../../src/cli/module-source'

const root = resolve(__dirname, '..', '..')
const cacheDir = join(root, '.cache', 'fixtures')
export const fixturesDir = join(root, 'test', 'fixtures', 'plugins')

type Wabt = Awaited<ReturnType<typeof wabtInit>>
let wabt: Promise<Wabt> | undefined

function cached (key: string, ext: string, build: () => Buffer): Buffer {
  const file = join(cacheDir, `${createHash('sha256').update(key).digest('hex').slice(0, 24)}${ext}`)
  if (existsSync(file)) return readFileSync(file)
  const bytes = build()
  mkdirSync(cacheDir, { recursive: true })
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, bytes)
  renameSync(tmp, file)
  return bytes
}

/** Compiles WAT text to a wasm binary. */
export async function wat (source: string): Promise<Buffer> {
  wabt ??= wabtInit()
  const w = await wabt
  const mod = w.parseWat('fixture.wat', source, WAT_FEATURES)
  try {
    return Buffer.from(mod.toBinary({ write_debug_names: false }).buffer)
  } finally {
    mod.destroy()
  }
}

/** Compiles test/fixtures/plugins/NAME.wat. */
export async function watFixture (name: string): Promise<Buffer> {
  return wat(readFileSync(join(fixturesDir, `${name}.wat`), 'utf8'))
}

export const clang = process.env.WASI_CLANG ?? 'clang-14'

/** True when clang for wasm32-wasi is installed (CI installs it; see .ci/run). */
export function hasClang (): boolean {
  try {
    execFileSync(clang, ['--version'], { stdio: 'ignore' })
    return existsSync('/usr/lib/wasm32-wasi/libc.a')
  } catch {
    return false
  }
}

export interface CBuildOptions {
  /** Build a WASI reactor (exports, `_initialize`) instead of a command (`_start`). */
  reactor?: boolean
  /** Extra clang flags, for example `-Wl,--export=execute`. */
  flags?: string[]
}

/** Compiles a C source (text) for wasm32-wasi with clang. */
export function cSource (source: string, options: CBuildOptions = {}): Buffer {
  const flags = ['--target=wasm32-wasi', '--sysroot=/usr', '-O2', ...(options.reactor === true ? ['-mexec-model=reactor'] : []), ...(options.flags ?? [])]
  return cached(`${flags.join(' ')}\n${source}`, '.wasm', () => {
    mkdirSync(cacheDir, { recursive: true })
    const base = join(cacheDir, `build-${process.pid}-${Date.now()}`)
    writeFileSync(`${base}.c`, source)
    execFileSync(clang, [...flags, `${base}.c`, '-o', `${base}.wasm`], { stdio: ['ignore', 'ignore', 'pipe'] })
    return readFileSync(`${base}.wasm`)
  })
}

/** Compiles test/fixtures/plugins/NAME.c. */
export function cFixture (name: string, options: CBuildOptions = {}): Buffer {
  return cSource(readFileSync(join(fixturesDir, `${name}.c`), 'utf8'), options)
}

/** A rustc that can build WASI preview1 programs, and the target name it knows them by. */
export interface RustToolchain { rustc: string, target: string }

let rust: RustToolchain | null | undefined

/**
 * The first of $RUSTC, Debian's /usr/bin/rustc and the `rustc` on PATH whose standard library
 * for `wasm32-wasi` (Debian's 1.63: libstd-rust-dev-wasm32) or `wasm32-wasip1` (current Rust)
 * is installed; undefined when there is none. Probed once per process.
 */
export function rustToolchain (): RustToolchain | undefined {
  if (rust !== undefined) return rust ?? undefined
  rust = null
  const candidates = process.env.RUSTC !== undefined && process.env.RUSTC !== '' ? [process.env.RUSTC] : ['/usr/bin/rustc', 'rustc']
  mkdirSync(cacheDir, { recursive: true })
  const probe = join(cacheDir, `probe-${process.pid}`)
  writeFileSync(`${probe}.rs`, 'fn main() {}\n')
  for (const rustc of candidates) {
    for (const target of ['wasm32-wasi', 'wasm32-wasip1']) {
      try {
        execFileSync(rustc, ['--target', target, `${probe}.rs`, '-o', `${probe}.wasm`], { stdio: 'ignore' })
        rust = { rustc, target }
        return rust
      } catch {
        // Not this one: no such rustc, or no standard library for that target.
      }
    }
  }
  return undefined
}

/** True when rustc can build WASI programs (see rustToolchain). */
export function hasRust (): boolean {
  return rustToolchain() !== undefined
}

/** Compiles a Rust source (text, one file, no crates) to a WASI preview1 command. */
export function rustSource (source: string): Buffer {
  const tc = rustToolchain()
  if (tc === undefined) throw new Error('no rustc with a wasm32-wasi(p1) standard library')
  const flags = ['--edition', '2021', '--target', tc.target, '-O', '-C', 'strip=symbols']
  return cached(`${tc.rustc} ${flags.join(' ')}\n${source}`, '.wasm', () => {
    const base = join(cacheDir, `build-${process.pid}-${Date.now()}`)
    writeFileSync(`${base}.rs`, source)
    execFileSync(tc.rustc, [...flags, `${base}.rs`, '-o', `${base}.wasm`], { stdio: ['ignore', 'ignore', 'pipe'] })
    return readFileSync(`${base}.wasm`)
  })
}

/** Compiles test/fixtures/plugins/NAME.rs. */
export function rustFixture (name: string): Buffer {
  return rustSource(readFileSync(join(fixturesDir, `${name}.rs`), 'utf8'))
}

const asc = join(root, 'node_modules', 'assemblyscript', 'bin', 'asc.js')

/**
 * Compiles an AssemblyScript plugin (source text) that uses the Extism PDK (`@extism/as-pdk`,
 * an npm devDependency) with the AssemblyScript compiler (npm). The source must define
 * `myAbort` (the PDK plugins route AssemblyScript's abort to it, as the PDK's README says).
 */
export function asPdkSource (source: string): Buffer {
  const flags = ['--runtime', 'stub', '--optimizeLevel', '2', '--use', 'abort=plugin/myAbort']
  return cached(`asc ${flags.join(' ')}\n${source}`, '.wasm', () => {
    const dir = join(cacheDir, `as-${process.pid}-${Date.now()}`)
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'plugin.ts'), source)
    execFileSync(process.execPath, [asc, 'plugin.ts', '--outFile', 'plugin.wasm', ...flags], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] })
    return readFileSync(join(dir, 'plugin.wasm'))
  })
}
