#!/usr/bin/env bash
# `tessera upload` of a folder of distinct camera photos into a fresh `tessera up`, once per
# binary given (for a side-by-side run, e.g. a build of an earlier commit), one `upload:` line
# per run: binary, files, seconds from start to summary, files per second, jobs made.
#
#   bash batch-backend/benches/upload.sh [FILES] [TESSERA_BIN...]
#       FILES defaults to 120; the binary to the release build of this checkout.
#
# The photos are four JPEGs of the exif crate's test files (a 6.5 MB, 24-megapixel Sony photo,
# a 0.9 MB one and two small ones), each copied FILES/4 times with a different trailer after
# its end-of-image marker: the same pixels and work, a different SHA-256, so that none is
# skipped as already uploaded.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
files=${1:-120}
shift || true
bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
  cargo build -q --release --locked -p tessera-batch --bin tessera
  bins=("$CARGO_TARGET_DIR/release/tessera")
fi
fixtures=$TESSERA_FIXTURES
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/photos"
sources=(exif-0.6.0/sony-alpha-6000.jpg exif-0.6.0/test1.jpg exif-0.6.0/right.jpg exif-0.6.0/short-ascii-II.jpg)
for ((i = 0; i < files; i++)); do
  src=${sources[$((i % ${#sources[@]}))]}
  out="$work/photos/photo-$i.jpg"
  cp "$fixtures/$src" "$out"
  printf 'tessera benchmark copy %d' "$i" >>"$out"
done

for bin in "${bins[@]}"; do
  data="$work/data-$RANDOM"
  mkdir "$data"
  "$bin" up --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 --data "$data" --web web \
    >"$data/up.out" 2>"$data/up.err" &
  up=$!
  until grep -q 'http://' "$data/up.out" 2>/dev/null; do sleep 0.2; done
  endpoint="http://$(grep -o 'http://[^ ]*' "$data/up.out" | head -1 | sed 's|http://||; s|/$||')"
  key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_key"])' "$data/local.json")
  start=$(date +%s.%N)
  TESSERA_API_KEY=$key TESSERA_CONFIG=/nonexistent "$bin" upload --endpoint "$endpoint" \
    --project bench "$work/photos" >"$data/upload.out" 2>"$data/upload.err"
  end=$(date +%s.%N)
  uploaded=$(grep -o '^[0-9]* uploaded' "$data/upload.out" | cut -d' ' -f1)
  jobs=$(grep -c '^  job ' "$data/upload.out" || true)
  python3 -c 'import sys; b,n,u,s,e,j=sys.argv[1:]; t=float(e)-float(s); print(f"upload: {b} files={n} uploaded={u} seconds={t:.2f} files_per_s={int(u)/t:.1f} jobs={j}")' \
    "$bin" "$files" "$uploaded" "$start" "$end" "$jobs"
  kill "$up"
  wait "$up" 2>/dev/null || true
done
