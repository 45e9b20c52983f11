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
"$clang" --target=wasm32 -O2 -nostdlib -mbulk-memory -Wall -Wextra -Werror \
  -Wl,--no-entry -Wl,--strip-all \
  count_vowels.c -o "$out.$$.tmp"
mv "$out.$$.tmp" "$out"
echo "built examples/c-extism/$out ($(wc -c < "$out") bytes)"
