#!/usr/bin/env bash
# Builds build/count_vowels.wasm from count_vowels.c (and extism.h, the kernel ABI) with clang for wasm32, freestanding
# (-nostdlib: no libc, no WASI imports: only extism:host/env). Needs Debian's clang-14 and lld-14 (wasm-ld); set
# $CLANG to use another clang. Exit code 3: no toolchain.
set -euo pipefail
cd "$(dirname "$0")"

clang="${CLANG:-clang-14}"
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
echo 'int f(int x) { return x + 1; }' > "$probe/probe.c"
if ! command -v "$clang" >/dev/null ||
   ! "$clang" --target=wasm32 -nostdlib -Wl,--no-entry -Wl,--export=f "$probe/probe.c" -o "$probe/probe.wasm" 2>/dev/null; then
  echo "c-extism: toolchain missing: $clang cannot build for wasm32 (apt-get install clang-14 lld-14)" >&2
  exit 3
fi

out=build/count_vowels.wasm
if [ -f "$out" ] && [ -z "$(find count_vowels.c extism.h build.sh -newer "$out")" ]; then
  echo "examples/c-extism/$out is up to date ($(wc -c < "$out") bytes)"
  exit 0
fi
mkdir -p build
# clang runs a wasm-opt it finds on PATH after linking at -O2, without our feature flags:
# binaryen's (node_modules/.bin, on PATH under npm and npx) then refuses memory.fill. Link without it.
no_wasm_opt="$(printf '%s' "$PATH" | tr ':' '\n' | while read -r d; do [ -x "$d/wasm-opt" ] || printf '%s:' "$d"; done)"
PATH="${no_wasm_opt%:}" "$clang" --target=wasm32 -O2 -nostdlib -mbulk-memory -Wall -Wextra -Werror \
  -Wl,--no-entry -Wl,--strip-all \
  count_vowels.c -o "$out.$$.tmp"
mv "$out.$$.tmp" "$out"
echo "built examples/c-extism/$out ($(wc -c < "$out") bytes)"
