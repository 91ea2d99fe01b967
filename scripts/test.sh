#!/usr/bin/env bash
# Every test of the project, from a fresh machine of this kind or a warm one. `.ci/run` calls
# this; so can you. Installs what it needs (idempotently), fetches the real test data, then
# checks formatting, lints, the wasm32 build of tessera-core, and runs all test suites.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh

step() { printf '\n== %s\n' "$*" >&2; }

step "toolchain"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add wasm32-unknown-unknown wasm32-wasip1 >/dev/null

step "tools for the Workers host: worker-build, wasm-bindgen, wrangler (cached by version)"
installed() { cargo install --list | grep -q "^$1 v$2:"; }
installed worker-build 0.8.7 || cargo install worker-build --version 0.8.7 --locked
installed wasm-bindgen-cli 0.2.130 || cargo install wasm-bindgen-cli --version 0.2.130
npm ci --no-audit --no-fund --loglevel=error
export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen" WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt" \
  ESBUILD_BIN="$PWD/node_modules/.bin/esbuild" TESSERA_TEST_WORKERD="$PWD/node_modules/.bin/wrangler"
export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false \
  CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_HIDE_BANNER=true CI=true

step "fixtures"
bash tests/fetch-fixtures.sh >/dev/null

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tessera-core and the edge router build for wasm32-unknown-unknown"
cargo build -p tessera-core -p tessera-edge --target wasm32-unknown-unknown --locked

step "presigned URLs are byte-identical natively and as wasm (Node WASI)"
cargo build --release --locked -p tessera-edge --bin presign-probe
cargo build --release --locked -p tessera-edge --bin presign-probe --target wasm32-wasip1
diff <("$CARGO_TARGET_DIR/release/presign-probe") \
  <(node --no-warnings tests/wasi.mjs "$CARGO_TARGET_DIR/wasm32-wasip1/release/presign-probe.wasm")
echo "identical"

step "the Workers module builds (worker-build); wrangler dev in the tests reuses it"
(cd edge-worker && worker-build --release)

step "cargo test"
cargo test --workspace --locked
