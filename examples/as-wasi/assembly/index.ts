// count-vowels for the `wasi` ABI, in AssemblyScript, with @assemblyscript/wasi-shim (which
// maps `process.stdin`, `process.stdout` and `process.exit` onto WASI preview1 imports).
//
//   stdin  {"text":"Hello World"}   ->   stdout {"vowels":3}\n   (exit code 0)
//
// The contract: a WASI preview1 command; the top-level statements of this file are its
// `_start`. The request body is stdin, stdout is the response body (served as
// application/json when it parses), stderr goes to the service's log. Returning (exit code
// 0) is success; `process.exit(n)` with n != 0 fails the call with 422 PLUGIN_EXIT, and so
// does an uncaught error (the shim's `abort` prints it to stderr and exits with 255).
//
// Counts a, e, i, o, u in either case (ASCII: "é" is not a vowel here) in the top-level
// member "text" (escapes decoded, so "\u0041" counts). Anything else -- no such member, a
// member that is not a string, input that is not an object, no input at all -- prints
// {"error":"text must be a string"} and still exits 0, so that every count-vowels example
// answers alike, whatever its ABI.

const STR_END: i32 = -1 // after the closing quote
const STR_ERROR: i32 = -2 // the input ends, or an escape is bad

/** A cursor over the input bytes: just enough JSON to find one string member. */
class Reader {
  pos: i32 = 0

  constructor (readonly bytes: Uint8Array) {}

  /** The byte under the cursor, or -1 at the end. */
  peek (): i32 {
    return this.pos < this.bytes.length ? <i32> this.bytes[this.pos] : -1
  }

  skipWs (): void {
    for (;;) {
      const c = this.peek()
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return
      this.pos++
    }
  }

  /** Inside a string: the next character (a byte, or the code unit of an escape). */
  strNext (): i32 {
    let c = this.peek()
    if (c < 0) return STR_ERROR
    this.pos++
    if (c === 0x22) return STR_END // "
    if (c !== 0x5c) return c // not a backslash
    c = this.peek()
    if (c < 0) return STR_ERROR
    this.pos++
    switch (c) {
      case 0x22: case 0x5c: case 0x2f: return c // \" \\ \/
      case 0x62: return 0x08 // \b
      case 0x66: return 0x0c // \f
      case 0x6e: return 0x0a // \n
      case 0x72: return 0x0d // \r
      case 0x74: return 0x09 // \t
      case 0x75: { // \uXXXX
        let v = 0
        for (let i = 0; i < 4; i++) {
          const h = hex(this.peek())
          if (h < 0) return STR_ERROR
          this.pos++
          v = v << 4 | h
        }
        return v
      }
    }
    return STR_ERROR
  }

  skipString (): bool {
    let u: i32
    do u = this.strNext(); while (u >= 0)
    return u === STR_END
  }

  /** Skips one value: a string, an array or object (nested), or a scalar. */
  skipValue (): bool {
    this.skipWs()
    let c = this.peek()
    if (c === 0x22) {
      this.pos++
      return this.skipString()
    }
    if (c === 0x7b || c === 0x5b) { // { [
      let depth = 0
      for (;;) {
        c = this.peek()
        if (c < 0) return false
        this.pos++
        if (c === 0x22) {
          if (!this.skipString()) return false
        } else if (c === 0x7b || c === 0x5b) {
          depth++
        } else if (c === 0x7d || c === 0x5d) { // } ]
          if (--depth === 0) return true
        }
      }
    }
    const start = this.pos // a number, true, false or null
    for (;;) {
      c = this.peek()
      if (c <= 0x20 || c === 0x2c || c === 0x7d || c === 0x5d) break
      this.pos++
    }
    return this.pos !== start
  }
}

function hex (c: i32): i32 {
  if (c >= 0x30 && c <= 0x39) return c - 0x30
  c |= 0x20
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10
  return -1
}

function isVowel (u: i32): bool {
  u |= 0x20 // A..Z -> a..z
  return u === 0x61 || u === 0x65 || u === 0x69 || u === 0x6f || u === 0x75
}

/** The vowels of the first top-level member "text", or -1. */
function countVowels (input: Uint8Array): i32 {
  const r = new Reader(input)
  r.skipWs()
  if (r.peek() !== 0x7b) return -1
  r.pos++
  for (;;) {
    r.skipWs()
    if (r.peek() !== 0x22) return -1 // a key, or "}": no "text"
    r.pos++
    let i = 0
    let match = true
    for (;;) {
      const u = r.strNext()
      if (u === STR_ERROR) return -1
      if (u === STR_END) break
      if (i >= 4 || u !== <i32> 'text'.charCodeAt(i)) match = false
      i++
    }
    match = match && i === 4
    r.skipWs()
    if (r.peek() !== 0x3a) return -1 // :
    r.pos++
    r.skipWs()
    if (match) {
      if (r.peek() !== 0x22) return -1
      r.pos++
      let n = 0
      for (;;) {
        const u = r.strNext()
        if (u === STR_ERROR) return -1
        if (u === STR_END) return n
        if (isVowel(u)) n++
      }
    }
    if (!r.skipValue()) return -1
    r.skipWs()
    const c = r.peek()
    r.pos++
    if (c !== 0x2c) break // , for the next member, else the end of the object
  }
  return -1
}

/** All of stdin. */
function readStdin (): Uint8Array {
  let buffer = new ArrayBuffer(4096)
  let length = 0
  for (;;) {
    if (length === buffer.byteLength) {
      const bigger = new ArrayBuffer(length * 2)
      memory.copy(changetype<usize>(bigger), changetype<usize>(buffer), <usize> length)
      buffer = bigger
    }
    const got = process.stdin.read(buffer, length)
    if (got <= 0) break
    length += got
  }
  return Uint8Array.wrap(buffer, 0, length)
}

const n = countVowels(readStdin())
if (n < 0) {
  process.stdout.write('{"error":"text must be a string"}\n')
} else {
  process.stdout.write('{"vowels":' + n.toString() + '}\n')
}
