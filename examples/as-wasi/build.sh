#!/usr/bin/env bash
# Builds build/count_vowels.wasm from assembly/index.ts with the AssemblyScript compiler and
# @assemblyscript/wasi-shim, both npm packages of this folder (package.json, package-lock.json:
# `npm ci` here installs them, and this script runs it when they are missing). Needs node and
# npm. Exit code 3: no node/npm, or the packages cannot be installed.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "as-wasi: toolchain missing: node and npm (to install and run the AssemblyScript compiler)" >&2
  exit 3
fi
if [ ! -x node_modules/.bin/asc ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  if ! npm ci --no-audit --no-fund --loglevel=error >&2; then
    echo "as-wasi: toolchain missing: 'npm ci' in examples/as-wasi failed (assemblyscript, @assemblyscript/wasi-shim)" >&2
    exit 3
  fi
fi

out=build/count_vowels.wasm
if [ -f "$out" ] && [ -z "$(find assembly asconfig.json package-lock.json build.sh -newer "$out")" ]; then
  echo "examples/as-wasi/$out is up to date ($(wc -c < "$out") bytes)"
  exit 0
fi
mkdir -p build
node_modules/.bin/asc assembly/index.ts --target release --outFile "$out.tmp"
mv "$out.tmp" "$out"
echo "built examples/as-wasi/$out ($(wc -c < "$out") bytes, $(node_modules/.bin/asc --version))"
