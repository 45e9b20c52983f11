#!/usr/bin/env bash
# Builds build/{{name}}.wasm from assembly/index.ts with the AssemblyScript compiler (npm
# `assemblyscript`, installed here by `npm install` when missing). `--use abort=` turns an
# abort into a trap, so the module imports nothing. Exit code 3: no npm, or the install failed.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x node_modules/.bin/asc ] && ! npm install --no-audit --no-fund --loglevel=error >&2; then
  echo "toolchain missing: 'npm install' here failed (assemblyscript)" >&2
  exit 3
fi
mkdir -p build
node_modules/.bin/asc assembly/index.ts --outFile build/{{name}}.wasm -O3 --runtime stub --use abort=
echo "built build/{{name}}.wasm"
