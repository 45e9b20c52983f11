#!/usr/bin/env bash
# Builds build/count_vowels.wasm from assembly/index.ts with the AssemblyScript compiler and the
# Extism PDK (@extism/as-pdk), both devDependencies of the repository (npm ci at its root
# installs them). Needs node. Exit code 3: no node, or the packages are not installed.
set -euo pipefail
cd "$(dirname "$0")"

root="$(cd ../.. && pwd)"
asc="$root/node_modules/assemblyscript/bin/asc.js"
node="${NODE:-$root/node_modules/.bin/node}"
[ -x "$node" ] || node="$(command -v node || true)"
if [ -z "$node" ] || [ ! -f "$asc" ] || [ ! -f "$root/node_modules/@extism/as-pdk/index.ts" ]; then
  echo "as-extism: toolchain missing: node, and npm ci at the repository root (assemblyscript, @extism/as-pdk)" >&2
  exit 3
fi

out=build/count_vowels.wasm
if [ -f "$out" ] && [ -z "$(find assembly build.sh -newer "$out")" ]; then
  echo "examples/as-extism/$out is up to date ($(wc -c < "$out") bytes)"
  exit 0
fi
mkdir -p build
"$node" "$asc" assembly/index.ts --outFile "$out.$$.tmp" --runtime stub --optimizeLevel 3 --shrinkLevel 1 \
  --use abort=assembly/index/myAbort
mv "$out.$$.tmp" "$out"
echo "built examples/as-extism/$out ($(wc -c < "$out") bytes)"
