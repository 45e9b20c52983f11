// Reads a plugin file for the CLI: a .wasm binary as it is, or WebAssembly text (.wat, or any
// file that starts with an s-expression) compiled with wabt first, so an author can run what
// they just wrote without a separate wat2wasm step. wabt is loaded only when text is given.
import { readFile } from 'node:fs/promises'
import { serviceError } from '../errors'

const WASM_MAGIC = Buffer.from([0x00, 0x61, 0x73, 0x6d])

/** The proposals V8 (Node 24) runs by default (also the test fixtures'); the service's validator decides what it accepts. */
export const WAT_FEATURES = {
  multi_value: true,
  bulk_memory: true,
  mutable_globals: true,
  sign_extension: true,
  sat_float_to_int: true,
  reference_types: true,
  simd: true
}

function looksLikeText (file: string, bytes: Buffer): boolean {
  if (bytes.subarray(0, 4).equals(WASM_MAGIC)) return false
  if (/\.wa?st?$/i.test(file) && !/\.wasm$/i.test(file)) return true
  return /^\s*[(;]/.test(bytes.subarray(0, 64).toString('latin1'))
}

/** The module's binary bytes. WAT that does not parse is INVALID_MODULE with wabt's message. */
export async function readModuleFile (file: string): Promise<Buffer> {
  const bytes = await readFile(file)
  if (!looksLikeText(file, bytes)) return bytes
  const { default: wabtInit } = await import('wabt')
  const wabt = await wabtInit()
  let mod: ReturnType<typeof wabt.parseWat> | undefined
  try {
    mod = wabt.parseWat(file, bytes.toString('utf8'), WAT_FEATURES)
    mod.resolveNames()
    mod.validate()
    return Buffer.from(mod.toBinary({ write_debug_names: true }).buffer)
  } catch (err) {
    throw serviceError('INVALID_MODULE', [`WebAssembly text does not compile: ${(err as Error).message.trim()}`])
  } finally {
    mod?.destroy()
  }
}

/** The plugin name a file suggests: its stem, without .wasm or .wat. */
export function fileStem (base: string): string {
  return base.replace(/\.(wasm|wat|wast)$/i, '').toLowerCase()
}
