// A small WebAssembly binary writer for hostile modules built in tests (and benchmarks): the
// shapes wabt will not make cheaply (tens of megabytes of export names, arbitrary custom
// section bytes). Buffers throughout, so a 50 MB module takes milliseconds.

/** Unsigned LEB128. */
export function leb (n: number): Buffer {
  const out: number[] = []
  let v = n
  do {
    const b = v % 128
    v = Math.floor(v / 128)
    out.push(v === 0 ? b : b | 0x80)
  } while (v !== 0)
  return Buffer.from(out)
}

/** A name or byte string: its length, then its bytes. */
export function str (text: string | Buffer): Buffer {
  const bytes = typeof text === 'string' ? Buffer.from(text) : text
  return Buffer.concat([leb(bytes.length), bytes])
}

export function section (id: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([id]), leb(payload.length), payload])
}

export function customSection (name: string, payload: Buffer): Buffer {
  return section(0, Buffer.concat([str(name), payload]))
}

const HEADER = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00])
const I32 = 0x7f

export interface EchoModuleOptions {
  /** Names of extra exports of the echo function (each one a json entry). */
  extraExports?: readonly string[]
  /** Names of imported functions (module `env`, type () -> ()). */
  imports?: readonly string[]
  /** Custom sections appended at the end, as [name, payload]. */
  custom?: ReadonlyArray<[string, Buffer]>
}

/**
 * A json-ABI echo plugin (memory + `execute: (i32, i32) -> (i32, i32)` returning its input)
 * with optional extra exports of the same function, function imports and custom sections.
 */
export function echoModule (options: EchoModuleOptions = {}): Buffer {
  const extra = options.extraExports ?? []
  const imports = options.imports ?? []
  const types = [
    Buffer.from([0x60, 2, I32, I32, 2, I32, I32]),
    Buffer.from([0x60, 0, 0])
  ]
  const parts = [HEADER, section(1, Buffer.concat([leb(types.length), ...types]))]
  if (imports.length > 0) {
    parts.push(section(2, Buffer.concat([leb(imports.length), ...imports.map(n => Buffer.concat([str('env'), str(n), Buffer.from([0x00, 1])]))])))
  }
  const echoIndex = imports.length
  parts.push(section(3, Buffer.from([1, 0])))
  parts.push(section(5, Buffer.from([1, 0x00, 1])))
  const exports = [
    Buffer.concat([str('memory'), Buffer.from([0x02, 0])]),
    Buffer.concat([str('execute'), Buffer.from([0x00]), leb(echoIndex)]),
    ...extra.map(n => Buffer.concat([str(n), Buffer.from([0x00]), leb(echoIndex)]))
  ]
  parts.push(section(7, Buffer.concat([leb(exports.length), ...exports])))
  const body = Buffer.from([0, 0x20, 0, 0x20, 1, 0x0b]) // no locals; local.get 0, local.get 1, end
  parts.push(section(10, Buffer.concat([leb(1), str(body)])))
  for (const [name, payload] of options.custom ?? []) parts.push(customSection(name, payload))
  return Buffer.concat(parts)
}
