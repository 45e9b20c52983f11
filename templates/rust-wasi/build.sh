#!/usr/bin/env bash
# Builds build/{{name}}.wasm from src/main.rs with rustc alone (no cargo): a WASI preview1
# command, target wasm32-wasip1 (wasm32-wasi before Rust 1.78). With cargo:
# `cargo build --release --target wasm32-wasip1`. Uses $RUSTC, else the first of `rustc` and
# /usr/bin/rustc (Debian: apt-get install rustc libstd-rust-dev-wasm32) that has the target.
# Exit code 3: none has.
set -euo pipefail
cd "$(dirname "$0")"
rustc="" target=""
for candidate in ${RUSTC:-rustc /usr/bin/rustc}; do
  command -v "$candidate" >/dev/null || continue
  for t in wasm32-wasip1 wasm32-wasi; do
    if [ -d "$("$candidate" --print sysroot)/lib/rustlib/$t" ]; then rustc="$candidate" target="$t"; break 2; fi
  done
done
if [ -z "$rustc" ]; then
  echo "toolchain missing: no rustc with the wasm32-wasip1 or wasm32-wasi standard library (apt-get install rustc libstd-rust-dev-wasm32, or rustup target add wasm32-wasip1)" >&2
  exit 3
fi
mkdir -p build
"$rustc" --edition 2021 --crate-name plugin --target "$target" -O -C strip=symbols \
  src/main.rs -o build/{{name}}.wasm
echo "built build/{{name}}.wasm"
