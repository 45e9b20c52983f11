#!/usr/bin/env bash
# Builds build/{{name}}.wasm: a WASI preview1 command with wasi-libc. Needs clang-14, lld-14,
# wasi-libc, libclang-rt-14-dev-wasm32 (Debian); $CLANG and $WASI_SYSROOT pick others.
# Exit code 3: toolchain missing.
set -euo pipefail
cd "$(dirname "$0")"
clang="${CLANG:-clang-14}"
if ! command -v "$clang" >/dev/null || [ ! -f "${WASI_SYSROOT:-/usr}/lib/wasm32-wasi/crt1-command.o" ]; then
  echo "toolchain missing: $clang with wasi-libc (apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32)" >&2
  exit 3
fi
mkdir -p build
"$clang" --target=wasm32-wasi "--sysroot=${WASI_SYSROOT:-/usr}" -O2 -Wall -Werror -Wl,--strip-all \
  plugin.c -o build/{{name}}.wasm
echo "built build/{{name}}.wasm"
