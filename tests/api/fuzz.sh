#!/usr/bin/env bash
# Fuzzes the edge API of `tessera up` (the native host, real storage and SQLite) with
# Schemathesis: every check and phase, bounded by TESSERA_FUZZ_SECONDS (default 60); exits
# non-zero on any finding. Runs the release `tessera` binary (scripts/test.sh builds it), or
# TESSERA_BIN.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/env.sh

venv="$HOME/.cache/tessera/venv-api-$(sha256sum < tests/api/requirements.txt | cut -c1-12)"
[ -x "$venv/bin/st" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q -r tests/api/requirements.txt; }

data=$(mktemp -d)
log="$data/up.log"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
api_port=$(port) s3_port=$(port)
"${TESSERA_BIN:-$CARGO_TARGET_DIR/release/tessera}" up --listen "127.0.0.1:$api_port" --s3-listen "127.0.0.1:$s3_port" \
  --data "$data/stack" --web web >"$data/url" 2>"$log" &
up=$!
trap 'kill -INT $up 2>/dev/null; wait $up 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do [ -s "$data/url" ] && break; sleep 0.1; done
[ -s "$data/url" ] || { cat "$log"; exit 1; }

export TESSERA_API_KEY
TESSERA_API_KEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_key"])' "$data/stack/local.json")
cd tests/api
"$venv/bin/st" run "http://127.0.0.1:$api_port/v1/openapi.json" \
  --max-time "${TESSERA_FUZZ_SECONDS:-60}" --seed "${TESSERA_FUZZ_SEED:-$RANDOM}" --no-color
