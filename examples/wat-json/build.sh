#!/usr/bin/env bash
# Builds build/count_vowels.wasm from count_vowels.wat with wabt's wat2wasm: the npm package
# `wabt` (a devDependency of the repository, so `npm ci` at the root brings it), or any
# wat2wasm on PATH, or the one named by $WAT2WASM. Exit code 3: no wat2wasm.
set -euo pipefail
cd "$(dirname "$0")"

wat2wasm="${WAT2WASM:-}"
if [ -z "$wat2wasm" ]; then
  if [ -x ../../node_modules/.bin/wat2wasm ]; then
    wat2wasm=../../node_modules/.bin/wat2wasm
  elif command -v wat2wasm >/dev/null; then
    wat2wasm=wat2wasm
  fi
fi
if [ -z "$wat2wasm" ] || ! "$wat2wasm" --version >/dev/null 2>&1; then
  echo "wat-json: toolchain missing: wat2wasm (run 'npm ci' at the repository root, or install wabt)" >&2
  exit 3
fi

out=build/count_vowels.wasm
if [ -f "$out" ] && [ -z "$(find count_vowels.wat build.sh -newer "$out")" ]; then
  echo "examples/wat-json/$out is up to date ($(wc -c < "$out") bytes)"
  exit 0
fi
mkdir -p build
"$wat2wasm" count_vowels.wat -o "$out.tmp"
mv "$out.tmp" "$out"
echo "built examples/wat-json/$out ($(wc -c < "$out") bytes)"
