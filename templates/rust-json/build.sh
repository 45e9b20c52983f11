#!/usr/bin/env bash
# Builds build/{{name}}.wasm from src/lib.rs with rustc alone (no cargo): a cdylib for
# wasm32-unknown-unknown. With cargo: crate-type = ["cdylib"], then
# `cargo build --release --target wasm32-unknown-unknown`. Uses $RUSTC, else the first of
# `rustc` and /usr/bin/rustc (Debian: apt-get install rustc libstd-rust-dev-wasm32) that has
# the target (rustup: rustup target add wasm32-unknown-unknown). Exit code 3: none has.
set -euo pipefail
cd "$(dirname "$0")"
target=wasm32-unknown-unknown
rustc=""
for candidate in ${RUSTC:-rustc /usr/bin/rustc}; do
  if command -v "$candidate" >/dev/null && [ -d "$("$candidate" --print sysroot)/lib/rustlib/$target" ]; then rustc="$candidate"; break; fi
done
if [ -z "$rustc" ]; then
  echo "toolchain missing: no rustc with the $target standard library (apt-get install rustc libstd-rust-dev-wasm32, or rustup target add $target)" >&2
  exit 3
fi
mkdir -p build
"$rustc" --edition 2021 --crate-type cdylib --crate-name plugin --target "$target" -O -C strip=symbols \
  src/lib.rs -o build/{{name}}.wasm
echo "built build/{{name}}.wasm"
