// {{name}}: a json-ABI plugin in Rust, a `cdylib` for wasm32-unknown-unknown (no imports).
// It answers {"plugin":"{{name}}","input":<the input>}.
//
// The host checks that the input is JSON, writes it into memory returned by `alloc`, and calls
// `execute(ptr, len)`, which returns where the output is as (ptr << 32 | len); the output must
// be JSON. Every call gets a fresh instance, so leaking the buffers is fine.

#[no_mangle]
pub extern "C" fn alloc(len: usize) -> *mut u8 {
    let mut buf = Vec::<u8>::with_capacity(len.max(1));
    let ptr = buf.as_mut_ptr();
    std::mem::forget(buf);
    ptr
}

#[no_mangle]
pub extern "C" fn execute(ptr: *const u8, len: usize) -> u64 {
    let input = unsafe { std::slice::from_raw_parts(ptr, len) };
    let mut out = Vec::with_capacity(len + 64);
    out.extend_from_slice(b"{\"plugin\":\"{{name}}\",\"input\":");
    out.extend_from_slice(input);
    out.push(b'}');
    let answer = (out.as_ptr() as u64) << 32 | out.len() as u64;
    std::mem::forget(out);
    answer
}
