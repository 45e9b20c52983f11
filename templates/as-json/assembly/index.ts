// {{name}}: a json-ABI plugin in AssemblyScript. It answers {"plugin":"{{name}}","input":<the input>}.
//
// The host checks that the input is JSON, writes it into memory returned by alloc(), and calls
// execute(ptr, len), which returns where the output is as (ptr << 32 | len); the output must
// be JSON. AssemblyScript has no multi-value returns, hence the i64. Every call gets a fresh
// instance, so the stub runtime (no garbage collector) is enough.

export function alloc (len: i32): usize {
  return heap.alloc(len)
}

export function execute (ptr: usize, len: i32): i64 {
  const input = String.UTF8.decodeUnsafe(ptr, len)
  const out = String.UTF8.encode('{"plugin":"{{name}}","input":' + input + '}')
  return (i64(changetype<usize>(out)) << 32) | i64(out.byteLength)
}
