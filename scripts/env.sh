# Shared settings for the project's scripts (sourced, not run).
# Cargo's build folder lives outside the clone so fresh clones (CI) reuse one warm build.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target}
export TESSERA_FIXTURES=${TESSERA_FIXTURES:-$HOME/.cache/tessera/fixtures}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# Installs, once per version, what building the page's WebAssembly needs: the wasm32 target,
# wasm-bindgen-cli (equal to the wasm-bindgen in Cargo.lock) and the npm tools (binaryen's
# wasm-opt, wrangler, playwright-core, pica).
ensure_wasm_tools() {
  rustup target add wasm32-unknown-unknown >/dev/null
  cargo install --list | grep -q "^wasm-bindgen-cli v0.2.130:" \
    || cargo install wasm-bindgen-cli --version 0.2.130
  npm ci --no-audit --no-fund --loglevel=error
}

# Installs the Debian packages named that are missing (one apt-get run), as root or via sudo.
ensure_debian_packages() {
  dpkg -s "$@" >/dev/null 2>&1 && return 0
  local as_root=()
  [ "$(id -u)" = 0 ] || as_root=(sudo)
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
