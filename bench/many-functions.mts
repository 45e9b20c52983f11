// Benchmark plugins whose size is their point: V8 instantiates in time proportional to a
// module's functions, an instance reset in time proportional to its memory. Built at run time,
// never committed: WAT through wabt, Rust through rustc (like examples/rust-wasi/build.sh).
//   echoWithFunctions(n): bench-echo.wat plus n functions nobody calls (json ABI).
//   rustWithFunctions(n): a Rust WASI command (std) that reads stdin, dispatches on a hash of it
//     through a table of n distinct functions and prints {"n":...}: a Rust plugin of n functions.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import wabtInit from 'wabt'

const root = resolve(import.meta.dirname, '..')
const cache = join(root, '.cache', 'bench')

export async function echoWithFunctions (n: number): Promise<Buffer> {
  const source = readFileSync(join(root, 'test/fixtures/plugins/bench-echo.wat'), 'utf8').trimEnd()
  const extra = Array.from({ length: n }, (_, i) => `  (func (result i32) (i32.const ${i}))`).join('\n')
  const wabt = await wabtInit()
  const mod = wabt.parseWat('many.wat', `${source.slice(0, -1)}\n${extra})`, { multi_value: true, bulk_memory: true })
  try { return Buffer.from(mod.toBinary({}).buffer) } finally { mod.destroy() }
}

/** The Rust plugin of `n` functions, or undefined when no rustc for wasm32-wasi(p1) is installed. */
export function rustWithFunctions (n: number): Buffer | undefined {
  const out = join(cache, `rust-many-${n}.wasm`)
  if (existsSync(out)) return readFileSync(out)
  const fns = Array.from({ length: n }, (_, i) => `#[inline(never)] fn f${i}(x: u64) -> u64 { x.wrapping_mul(${2 * i + 1}).rotate_left(${i % 63 + 1}) ^ ${i} }`).join('\n')
  const table = Array.from({ length: n }, (_, i) => `f${i}`).join(', ')
  const src = `use std::io::{self, Read, Write};
${fns}
static TABLE: [fn(u64) -> u64; ${n}] = [${table}];
fn main() {
    let mut input = Vec::new();
    io::stdin().read_to_end(&mut input).unwrap();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in &input { h = (h ^ *b as u64).wrapping_mul(0x100000001b3); }
    let v = TABLE[(h % ${n}) as usize](h);
    let answer = format!("{{\\"n\\":{}}}", v % 1000);
    io::stdout().write_all(answer.as_bytes()).unwrap();
}
`
  mkdirSync(cache, { recursive: true })
  const file = join(cache, `rust-many-${n}.rs`)
  writeFileSync(file, src)
  // A rustup rustc may lack the wasm target while Debian's has it: try both, as build.sh does.
  for (const rustc of process.env.RUSTC !== undefined ? [process.env.RUSTC] : ['rustc', '/usr/bin/rustc']) {
    for (const target of ['wasm32-wasip1', 'wasm32-wasi']) {
      try {
        execFileSync(rustc, ['--edition', '2021', '--target', target, '-O', '-C', 'strip=symbols', file, '-o', out], { stdio: 'ignore' })
        return readFileSync(out)
      } catch {}
    }
  }
  return undefined
}
