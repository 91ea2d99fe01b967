#!/usr/bin/env bash
# Builds the page's assets: tessera-wasm for wasm32 (release, simd128), wasm-bindgen
# --target web into web/pkg/, then wasm-opt -O3; and Swagger UI (swagger-ui-dist, pinned in
# package.json) into web/docs/vendor/ for the API reference at /docs. Needs wasm-bindgen-cli
# 0.2.130 and node_modules (binaryen, swagger-ui-dist); scripts/test.sh and scripts/up.sh
# install both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
cargo build --release --locked -p tessera-wasm --target wasm32-unknown-unknown
wasm-bindgen --target web --no-typescript --out-dir web/pkg \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/tessera_wasm.wasm"
node_modules/.bin/wasm-opt -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
  web/pkg/tessera_wasm_bg.wasm -o web/pkg/tessera_wasm_bg.wasm
mkdir -p web/docs/vendor
cp node_modules/swagger-ui-dist/{swagger-ui-bundle.js,swagger-ui.css,LICENSE} web/docs/vendor/
ls -l web/pkg web/docs/vendor >&2
