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

# ONNX Runtime for `tessera detect` (`ort`'s load-dynamic): libonnxruntime.so.1.31.1 from the
# onnxruntime 1.31.1 CPU wheel on PyPI (cp311, manylinux_2_28_x86_64), the wheel checked by
# SHA-256, cached once; exports ORT_DYLIB_PATH.
ONNXRUNTIME_VERSION=1.31.1
ONNXRUNTIME_WHEEL=onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl
ONNXRUNTIME_WHEEL_SHA256=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
ensure_onnxruntime() {
  local dir="$HOME/.cache/tessera/onnxruntime-$ONNXRUNTIME_VERSION"
  local lib="$dir/libonnxruntime.so.$ONNXRUNTIME_VERSION"
  if ! [ -f "$lib" ]; then
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_28_x86_64 --implementation cp "onnxruntime==$ONNXRUNTIME_VERSION" -d "$tmp"
    if ! echo "$ONNXRUNTIME_WHEEL_SHA256  $tmp/$ONNXRUNTIME_WHEEL" | sha256sum --check --quiet -; then
      echo "ensure_onnxruntime: $ONNXRUNTIME_WHEEL does not match its pinned SHA-256" >&2
      rm -rf "$tmp"
      return 1
    fi
    mkdir -p "$dir"
    python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
      "$tmp/$ONNXRUNTIME_WHEEL" "onnxruntime/capi/libonnxruntime.so.$ONNXRUNTIME_VERSION" > "$lib.part"
    mv "$lib.part" "$lib"
    rm -rf "$tmp"
  fi
  export ORT_DYLIB_PATH="$lib"
}
