#!/usr/bin/env bash
# Every test of the project, from a fresh machine of this kind or a warm one. `.ci/run` calls
# this; so can you. Installs what it needs (idempotently), fetches the real test data, then
# checks formatting, lints, the wasm32 builds, and runs all test suites: cargo's, the wasm
# bindings in headless Chromium, the page against `tessera up` with Playwright, and the API
# under Schemathesis.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh

step() { printf '\n== %s\n' "$*" >&2; }

step "toolchain"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add wasm32-unknown-unknown wasm32-wasip1 >/dev/null

step "Debian packages: Chromium and chromedriver; GDAL 3.6 (library, tools, Python bindings)"
ensure_debian_packages chromium chromium-driver libgdal-dev gdal-bin python3-gdal

step "tools: worker-build, wasm-bindgen, npm packages (cached by version)"
cargo install --list | grep -q "^worker-build v0.8.7:" || cargo install worker-build --version 0.8.7 --locked
ensure_wasm_tools
export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen" WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt" \
  ESBUILD_BIN="$PWD/node_modules/.bin/esbuild" TESSERA_TEST_WORKERD="$PWD/node_modules/.bin/wrangler"
export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false \
  CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_HIDE_BANNER=true CI=true

step "fixtures"
bash tests/fetch-fixtures.sh >/dev/null

step "the committed crown detector: held-out evaluation with ONNX Runtime, against MODEL.md"
eval_venv="$HOME/.cache/tessera/venv-eval-$(sha256sum < model/requirements.txt | cut -c1-12)"
[ -x "$eval_venv/bin/python" ] || { python3 -m venv "$eval_venv" && "$eval_venv/bin/pip" install -q -r model/requirements.txt; }
"$eval_venv/bin/python" model/evaluate.py --check

step "the detector's training data path and weights fetch (unittest, without torch)"
"$eval_venv/bin/python" -m unittest discover -s model -p 'test_*.py'

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "rustdoc -D warnings (every doc link resolves)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "clippy for wasm32 (tessera-wasm and its browser tests)"
cargo clippy -p tessera-wasm --target wasm32-unknown-unknown --all-targets --locked -- -D warnings

step "tessera-core and the edge router build for wasm32-unknown-unknown"
cargo build -p tessera-core -p tessera-edge --target wasm32-unknown-unknown --locked

step "presigned URLs are byte-identical natively and as wasm (Node WASI)"
cargo build --release --locked -p tessera-core --bin presign-probe
cargo build --release --locked -p tessera-core --bin presign-probe --target wasm32-wasip1
diff <("$CARGO_TARGET_DIR/release/presign-probe") \
  <(node --no-warnings tests/wasi.mjs "$CARGO_TARGET_DIR/wasm32-wasip1/release/presign-probe.wasm")
echo "identical"

step "the Workers module builds (worker-build); the workerd test builds its test variant (wrangler.toml [env.test])"
(cd edge-worker && worker-build --release)

step "cargo test (ONNX Runtime 1.31.1 from its PyPI wheel for tessera detect; the evaluation venv's Python as its reference; standardwebhooks and prometheus-client from PyPI holding webhooks and /metrics to their references; a throwaway PostgreSQL 15 for the task store)"
ensure_onnxruntime
ensure_postgres
trap stop_postgres EXIT
export TESSERA_EVAL_PYTHON="$eval_venv/bin/python"
test_venv="$HOME/.cache/tessera/venv-tests-$(sha256sum < tests/python/requirements.txt | cut -c1-12)"
[ -x "$test_venv/bin/python" ] || { python3 -m venv "$test_venv" && "$test_venv/bin/pip" install -q -r tests/python/requirements.txt; }
export TESSERA_TEST_PYTHON="$test_venv/bin/python"
cargo test --workspace --locked

step "tessera-wasm's bindings in headless Chromium (wasm-bindgen-test)"
CHROMEDRIVER=/usr/bin/chromedriver cargo test -p tessera-wasm --target wasm32-unknown-unknown --locked

step "the page against tessera up in headless Chromium (Playwright); screenshots in out/browser/"
bash scripts/build-web.sh
cargo build --release --locked -p tessera-batch
node --test --test-concurrency=1 tests/browser/

step "the scale-out rehearsal: PostgreSQL, SeaweedFS, the native edge and two tessera workers as separate processes; one worker killed mid-job (scripts/scale-demo.sh)"
TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera" bash scripts/scale-demo.sh

step "the edge API under Schemathesis against tessera up: every check and phase, 60 s, fails on any finding"
bash tests/api/fuzz.sh
