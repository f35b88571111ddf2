#!/usr/bin/env bash
# Builds the two heavy guests of the README's "Heavy guests" table, the
# same `fib` in JavaScript (componentize-js) and in Python
# (componentize-py), into target/heavy_guests. Not part of CI: it needs
# node, npm and pip, and fetches both tools.
#
#     bash benches/heavy_guests/build.sh
#     cargo run --release -p wasmpool-cli -- bench --workers 1 --calls 500 \
#         target/heavy_guests/fib-js.wasm fib 1
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../../target/heavy_guests"
mkdir -p "$out"
npm install --silent --prefix "$out" --no-save @bytecodealliance/componentize-js@0.23.0
cp "$here/build.mjs" "$out/build.mjs"
(cd "$here" && node "$out/build.mjs" fib.js "$out/fib-js.wasm")
python3 -m pip install --quiet --target "$out/py" componentize-py==0.25.1
(cd "$here" && PYTHONPATH="$out/py" "$out/py/bin/componentize-py" -d wit -w fib \
    componentize fib -o "$out/fib-py.wasm")
