#!/usr/bin/env bash
# Builds build/count_vowels.wasm from count_vowels.c: a WASI preview1 command, with clang for
# wasm32-wasi and Debian's wasi-libc (sysroot /usr). Needs clang-14, lld-14, wasi-libc and
# libclang-rt-14-dev-wasm32; set $CLANG to use another clang and $WASI_SYSROOT another
# sysroot. Exit code 3: no toolchain.
set -euo pipefail
cd "$(dirname "$0")"

clang="${CLANG:-clang-14}"
sysroot="${WASI_SYSROOT:-/usr}"
flags=(--target=wasm32-wasi "--sysroot=$sysroot")
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
echo 'int main(void) { return 0; }' > "$probe/probe.c"
if ! command -v "$clang" >/dev/null || ! "$clang" "${flags[@]}" "$probe/probe.c" -o "$probe/probe.wasm" 2>/dev/null; then
  echo "c-wasi: toolchain missing: $clang cannot build for wasm32-wasi with the sysroot $sysroot" \
    "(apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32)" >&2
  exit 3
fi

out=build/count_vowels.wasm
if [ -f "$out" ] && [ -z "$(find count_vowels.c build.sh -newer "$out")" ]; then
  echo "examples/c-wasi/$out is up to date ($(wc -c < "$out") bytes)"
  exit 0
fi
mkdir -p build
"$clang" "${flags[@]}" -O2 -Wall -Wextra -Werror -Wl,--strip-all \
  count_vowels.c -o "$out.tmp"
mv "$out.tmp" "$out"
echo "built examples/c-wasi/$out ($(wc -c < "$out") bytes)"
