// {{name}}: a wasi-ABI plugin in Rust, an ordinary program. The request body is stdin,
// stdout is the response, stderr goes to the log; returning from main is success,
// std::process::exit(n) with n != 0 is PLUGIN_EXIT, a panic is PLUGIN_TRAP.
use std::io::{Read, Write};

fn main() {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).expect("read stdin");
    eprintln!("{{name}}: read {} bytes", input.len());
    let mut out = std::io::stdout();
    writeln!(out, "{{\"plugin\":\"{{name}}\",\"bytes\":{}}}", input.len()).expect("write stdout");
}
