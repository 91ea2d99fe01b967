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

# A throwaway PostgreSQL 15 for the tests: Debian's server binaries (on this machine kind;
# installed if missing), a fresh cluster in a temporary folder with trust authentication, on a
# free port of 127.0.0.1, run as the `postgres` user when we are root (the server refuses
# root). Exports TESSERA_TEST_POSTGRES (a superuser URL; tests create their own databases);
# `stop_postgres` removes it all.
ensure_postgres() {
  local bin=/usr/lib/postgresql/15/bin
  [ -x "$bin/initdb" ] || ensure_debian_packages postgresql-15
  local as_postgres=()
  [ "$(id -u)" = 0 ] && as_postgres=(runuser -u postgres --)
  TESSERA_PG_DIR=$(mktemp -d /tmp/tessera-pg.XXXXXX)
  [ "$(id -u)" = 0 ] && chown postgres "$TESSERA_PG_DIR"
  "${as_postgres[@]}" "$bin/initdb" -D "$TESSERA_PG_DIR/data" -A trust -U postgres >/dev/null
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${as_postgres[@]}" "$bin/pg_ctl" -D "$TESSERA_PG_DIR/data" -l "$TESSERA_PG_DIR/server.log" -w \
    -o "-k $TESSERA_PG_DIR -p $port -h 127.0.0.1 -c max_connections=200" start >/dev/null
  export TESSERA_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres" TESSERA_PG_DIR
}
stop_postgres() {
  [ -n "${TESSERA_PG_DIR:-}" ] || return 0
  local as_postgres=()
  [ "$(id -u)" = 0 ] && as_postgres=(runuser -u postgres --)
  "${as_postgres[@]}" /usr/lib/postgresql/15/bin/pg_ctl -D "$TESSERA_PG_DIR/data" -m fast stop >/dev/null || true
  rm -rf "$TESSERA_PG_DIR"
}
