// isJson validates without parsing (it runs twice per json-ABI call, on the worker's hot path):
// it must accept exactly what TextDecoder(fatal) + JSON.parse accept.
import fc from 'fast-check'
import { isJson } from '../../src/sandbox/abi-json'

const decoder = new TextDecoder('utf-8', { fatal: true })
function reference (bytes: Uint8Array): boolean {
  try {
    JSON.parse(decoder.decode(bytes))
    return true
  } catch {
    return false
  }
}
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)

test('agrees with JSON.parse on hand-picked edge cases', () => {
  const cases = [
    '0', '-0', '01', '1.', '.5', '-', '+1', '1e5', '1E+5', '1e-5', '1e', '1.5e', '-1.25e+10', '0.0', '00',
    '""', '"\\u00e9"', '"\\u00G9"', '"\\x"', '"\\/"', '"a\\"b"', '"unterminated', '"\\', '"\\u12"', '"\t"', '"é"',
    'true', 'tru', 'false', 'null', 'nul', 'True', '[]', '[ ]', '[1,]', '[,1]', '[1 2]', '{}', '{ }', '{"a":1}',
    '{"a":1,}', '{"a" 1}', '{a:1}', '{"a":1 "b":2}', '{"a":[1,{"b":null}],"c":"d"}', '[[[[[]]]]]', '[[[[[]]]]',
    ' \t\n\r{"a" : [ 1 , 2 ] }\n ', '', ' ', '{}{}', '[] []', '[1]]', '{"a":1}}', '[}', '{]', '\ufeff{}', '\ufeff',
    '"\ud83d\ude00"', '"\\ud800"', '1 ', ' 1', '[-]', '[1e+]', '{"":""}', 'nulll', 'truee', '[true,false,null]'
  ]
  for (const text of cases) expect([text, isJson(utf8(text))]).toEqual([text, reference(utf8(text))])
})

test('rejects invalid UTF-8 like the fatal decoder', () => {
  for (const bytes of [[0x22, 0xff, 0x22], [0x22, 0xc3, 0x22], [0x22, 0xed, 0xa0, 0x80, 0x22], [0x22, 0xc0, 0xaf, 0x22], [0xfe, 0xff]]) {
    const u = new Uint8Array(bytes)
    expect(isJson(u)).toBe(reference(u))
  }
})

test('a nesting depth past the initial stack grows it', () => {
  const deep = '['.repeat(5000) + ']'.repeat(5000)
  expect(isJson(utf8(deep))).toBe(true)
  expect(isJson(utf8(deep.slice(0, -1)))).toBe(false)
})

test('agrees with JSON.parse on generated JSON and its mutations', () => {
  fc.assert(fc.property(fc.json(), fc.nat(), fc.integer({ min: 0, max: 0x7f }), (text, at, byte) => {
    const bytes = utf8(text)
    expect(isJson(bytes)).toBe(true)
    const mutated = Uint8Array.from(bytes)
    if (mutated.length > 0) mutated[at % mutated.length] = byte
    expect(isJson(mutated)).toBe(reference(mutated))
    const cut = bytes.subarray(0, at % (bytes.length + 1))
    expect(isJson(cut)).toBe(reference(cut))
  }), { numRuns: 3000 })
})

test('agrees with JSON.parse on arbitrary bytes and strings', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
    expect(isJson(bytes)).toBe(reference(bytes))
  }), { numRuns: 3000 })
  fc.assert(fc.property(fc.string({ unit: fc.constantFrom(...'{}[]",:0123456789.eE+- \\/utrfalsn\n'.split('')), maxLength: 20 }), (text) => {
    expect(isJson(utf8(text))).toBe(reference(utf8(text)))
  }), { numRuns: 5000 })
})

test('long strings (scanned a word at a time) at every alignment, with specials anywhere', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 7 }), fc.constantFrom(0x22, 0x5c, 0x00, 0x09, 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0x41),
    fc.nat(), (length, offset, special, at) => {
      const text = `{"s":"${'abcdefg'.repeat(length).slice(0, length)}"}`
      const backing = new Uint8Array(offset + text.length + 8)
      backing.set(utf8(text), offset)
      const bytes = backing.subarray(offset, offset + text.length)
      expect(isJson(bytes)).toBe(true)
      if (length > 0) bytes[6 + (at % length)] = special
      expect(isJson(bytes)).toBe(reference(bytes))
    }), { numRuns: 5000 })
})
