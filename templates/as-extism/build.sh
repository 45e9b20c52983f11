#!/usr/bin/env bash
# Builds build/{{name}}.wasm from assembly/index.ts with the AssemblyScript compiler and the
# Extism PDK (npm `assemblyscript` and `@extism/as-pdk`, installed here by `npm install` when
# missing). The module imports the Extism kernel from `extism:host/env`. Exit code 3: no npm,
# or the install failed.
set -euo pipefail
cd "$(dirname "$0")"
if { [ ! -x node_modules/.bin/asc ] || [ ! -d node_modules/@extism/as-pdk ]; } &&
   ! npm install --no-audit --no-fund --loglevel=error >&2; then
  echo "toolchain missing: 'npm install' here failed (assemblyscript, @extism/as-pdk)" >&2
  exit 3
fi
mkdir -p build
node_modules/.bin/asc assembly/index.ts --outFile build/{{name}}.wasm -O3 --use abort=assembly/index/myAbort
echo "built build/{{name}}.wasm"
