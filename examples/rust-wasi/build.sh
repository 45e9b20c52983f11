#!/usr/bin/env bash
# Builds build/count_vowels.wasm from src/main.rs with rustc alone (no cargo, no crates), for
# the WASI preview1 target: `wasm32-wasip1` on current Rust, `wasm32-wasi` on older ones
# such as Debian's rustc 1.63 (apt-get install rustc libstd-rust-dev-wasm32). Uses $RUSTC
# when set, else the first of `rustc` on PATH and /usr/bin/rustc that has the target's
# standard library (a rustup rustc without `rustup target add wasm32-wasip1` has not).
# Exit code 3: no such rustc.
set -euo pipefail
cd "$(dirname "$0")"

probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
echo 'fn main() {}' > "$probe/probe.rs"

rustc="" target=""
candidates=()
if [ -n "${RUSTC:-}" ]; then candidates=("$RUSTC"); else candidates=(rustc /usr/bin/rustc); fi
for candidate in "${candidates[@]}"; do
  command -v "$candidate" >/dev/null || continue
  targets="$("$candidate" --print target-list 2>/dev/null || true)"
  for t in wasm32-wasip1 wasm32-wasi; do
    if grep -qx "$t" <<<"$targets" &&
       "$candidate" --target "$t" "$probe/probe.rs" -o "$probe/probe.wasm" 2>/dev/null; then
      rustc="$candidate" target="$t"
      break 2
    fi
  done
done
if [ -z "$rustc" ]; then
  echo "rust-wasi: toolchain missing: no rustc with the wasm32-wasip1 or wasm32-wasi standard library" \
    "(apt-get install rustc libstd-rust-dev-wasm32, or rustup target add wasm32-wasip1)" >&2
  exit 3
fi

out=build/count_vowels.wasm
if [ -f "$out" ] && [ -z "$(find src build.sh -newer "$out")" ]; then
  echo "examples/rust-wasi/$out is up to date ($(wc -c < "$out") bytes)"
  exit 0
fi
mkdir -p build
"$rustc" --edition 2021 --target "$target" -O -C lto -C codegen-units=1 -C strip=symbols \
  src/main.rs -o "$out.tmp"
mv "$out.tmp" "$out"
echo "built examples/rust-wasi/$out ($(wc -c < "$out") bytes, $("$rustc" --version), $target)"
