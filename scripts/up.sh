#!/usr/bin/env bash
# The quick start: build the page's WebAssembly and `tessera`, then run `tessera up` (storage,
# edge API, job API and the page in one process; data in ./tessera-data). Arguments go to
# `tessera up` (see `tessera up --help`). The first run on a fresh machine installs
# wasm-bindgen-cli (about 10 minutes); later runs reuse everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
ensure_debian_packages libgdal-dev   # `tessera` links GDAL 3.6 (the mosaic stage)
ensure_wasm_tools
bash scripts/build-web.sh
cargo build --release --locked -p tessera-batch
exec "$CARGO_TARGET_DIR/release/tessera" up "$@"
