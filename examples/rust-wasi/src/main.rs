//! count-vowels for the `wasi` ABI, in Rust: a plain `fn main` built for wasm32-wasi with
//! rustc alone (no cargo, no crates: the tiny JSON reader below stands in for serde).
//!
//!   stdin  {"text":"Hello World"}   ->   stdout {"vowels":3}\n   (exit code 0)
//!
//! The contract: a WASI preview1 command. The request body is stdin, stdout is the response
//! body (served as application/json when it parses), stderr goes to the service's log.
//! Returning from main (exit code 0) is success; `std::process::exit(n)` with n != 0 fails
//! the call with 422 PLUGIN_EXIT; a panic prints its message to stderr and aborts, which is a
//! trap: 422 PLUGIN_TRAP.
//!
//! Counts a, e, i, o, u in either case (ASCII: "é" is not a vowel here) in the top-level
//! member "text" (escapes decoded, so "\u0041" counts). Anything else -- no such member, a
//! member that is not a string, input that is not an object, no input at all -- prints
//! {"error":"text must be a string"} and still exits 0, so that every count-vowels example
//! answers alike, whatever its ABI.
use std::io::{self, Read, Write};

/// A cursor over the input bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// What the next step inside a string found.
enum Unit {
    /// a byte, or the code unit of an escape
    Char(u32),
    /// the closing quote
    End,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// Inside a string: the next character, `End` after the closing quote, `None` when the
    /// input ends or an escape is bad.
    fn str_next(&mut self) -> Option<Unit> {
        let c = match self.next()? {
            b'"' => return Some(Unit::End),
            b'\\' => match self.next()? {
                b'"' => b'"' as u32,
                b'\\' => b'\\' as u32,
                b'/' => b'/' as u32,
                b'b' => 8,
                b'f' => 12,
                b'n' => b'\n' as u32,
                b'r' => b'\r' as u32,
                b't' => b'\t' as u32,
                b'u' => {
                    let mut v = 0;
                    for _ in 0..4 {
                        v = v << 4 | (self.next()? as char).to_digit(16)?;
                    }
                    v
                }
                _ => return None,
            },
            byte => byte as u32,
        };
        Some(Unit::Char(c))
    }

    fn skip_string(&mut self) -> Option<()> {
        while let Unit::Char(_) = self.str_next()? {}
        Some(())
    }

    /// Skips one value: a string, an array or object (nested), or a scalar.
    fn skip_value(&mut self) -> Option<()> {
        self.skip_ws();
        match self.peek()? {
            b'"' => {
                self.pos += 1;
                self.skip_string()
            }
            b'{' | b'[' => {
                let mut depth = 0;
                loop {
                    match self.next()? {
                        b'"' => self.skip_string()?,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {
                // a number, true, false or null
                let start = self.pos;
                while matches!(self.peek(), Some(c) if c > b' ' && !matches!(c, b',' | b'}' | b']')) {
                    self.pos += 1;
                }
                (self.pos != start).then_some(())
            }
        }
    }
}

fn is_vowel(u: u32) -> bool {
    matches!(u | 32, 0x61 | 0x65 | 0x69 | 0x6f | 0x75) // A..Z -> a..z, then a e i o u
}

/// The vowels of the first top-level member "text", or None.
fn count_vowels(input: &[u8]) -> Option<u32> {
    let mut r = Reader { bytes: input, pos: 0 };
    r.skip_ws();
    r.expect(b'{')?;
    loop {
        r.skip_ws();
        r.expect(b'"')?; // a key, or "}": no "text"
        let mut key = Vec::new();
        while let Unit::Char(u) = r.str_next()? {
            key.push(u);
        }
        r.skip_ws();
        r.expect(b':')?;
        r.skip_ws();
        if key.iter().copied().eq("text".bytes().map(u32::from)) {
            r.expect(b'"')?;
            let mut n = 0;
            while let Unit::Char(u) = r.str_next()? {
                n += is_vowel(u) as u32;
            }
            return Some(n);
        }
        r.skip_value()?;
        r.skip_ws();
        r.expect(b',')?;
    }
}

fn main() {
    let mut input = Vec::new();
    if let Err(e) = io::stdin().read_to_end(&mut input) {
        eprintln!("count-vowels: cannot read stdin: {e}");
        std::process::exit(1);
    }
    let answer = match count_vowels(&input) {
        Some(n) => format!("{{\"vowels\":{n}}}\n"),
        None => "{\"error\":\"text must be a string\"}\n".to_string(),
    };
    io::stdout().write_all(answer.as_bytes()).expect("stdout");
}
