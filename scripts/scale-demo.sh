#!/usr/bin/env bash
# A scale-out rehearsal on one machine: the production shape as separate processes on loopback.
#
#   PostgreSQL    the job store and the edge's metadata, one database
#   SeaweedFS     the S3 store (`weed mini`, from the tests' PyPI venv)
#   tessera edge  the native edge, its metadata in PostgreSQL
#   tessera worker ×2  identical workers claiming leased tasks from PostgreSQL; B also serves the
#                      service API the edge calls (TESSERA_BACKEND_URL)
#
# Then scripts/scale_demo.py uploads FOLDER (default: real photos and GeoTIFFs from the
# fixtures) through the edge with presigned URLs, kills worker A while it holds a task of the
# job, and checks that every result arrived once. Usage:
#
#   bash scripts/scale-demo.sh [FOLDER]
#
# TESSERA_BIN names the `tessera` binary (default: a release build); TESSERA_TEST_POSTGRES a
# PostgreSQL server to use (default: a throwaway one). Everything is stopped and removed at the
# end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh

folder=${1:-}
if [ -z "$folder" ]; then
  bash tests/fetch-fixtures.sh >/dev/null
  folder=$(mktemp -d /tmp/tessera-scale-input.XXXXXX)
  fixtures="$HOME/.cache/tessera/fixtures"
  cp "$fixtures/exif-0.6.0/test1.jpg" "$fixtures/exif-parser-0.1.12/starfish.jpg" \
     "$fixtures/scikit-image-0.26.0/retina.jpg" "$fixtures/scikit-image-0.26.0/coffee.png" "$folder/"
  # NEON's OSBS_029 orthophoto (400×400, 3 bands) cut by GDAL into four georeferenced tiles
  # overlapping by 40 px: the job stitches them back into one mosaic.
  for tile in "0 0" "180 0" "0 180" "180 180"; do
    set -- $tile
    gdal_translate -q -srcwin "$1" "$2" 220 220 "$fixtures/deepforest-2.1.0/OSBS_029.tif" \
      "$folder/osbs-029-tile-$1-$2.tif"
  done
fi
bin=${TESSERA_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked -p tessera-batch
  bin="$CARGO_TARGET_DIR/release/tessera"
fi
ensure_onnxruntime
venv="$HOME/.cache/tessera/venv-tests-$(sha256sum < tests/python/requirements.txt | cut -c1-12)"
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q -r tests/python/requirements.txt; }

work=$(mktemp -d /tmp/tessera-scale.XXXXXX)
pids=()
started_postgres=
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -z "$started_postgres" ] || stop_postgres
  [ -n "${TESSERA_SCALE_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
if [ -z "${TESSERA_TEST_POSTGRES:-}" ]; then ensure_postgres; started_postgres=1; fi
db="tessera_scale_$$"
PGOPTIONS=--client-min-messages=warning psql "$TESSERA_TEST_POSTGRES" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
database="${TESSERA_TEST_POSTGRES%/*}/$db"

port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # URL: until it answers
  for _ in $(seq 1 300); do curl -fs -o /dev/null "$1" && return 0; sleep 0.2; done
  echo "scale demo: $1 never answered" >&2; return 1
}

s3_port=$(port)
mkdir "$work/weed"
AWS_ACCESS_KEY_ID=scale-demo AWS_SECRET_ACCESS_KEY=scale-demo-secret "$venv/bin/weed" mini \
  -dir="$work/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -bucket=tessera -admin.ui=false \
  -s3.port="$s3_port" -master.port="$(port)" -master.port.grpc="$(port)" \
  -volume.port="$(port)" -volume.port.grpc="$(port)" -filer.port="$(port)" \
  -filer.port.grpc="$(port)" -admin.port="$(port)" -admin.port.grpc="$(port)" \
  -webdav.port="$(port)" >"$work/weed.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  AWS_ACCESS_KEY_ID=scale-demo AWS_SECRET_ACCESS_KEY=scale-demo-secret \
    "$venv/bin/python" tests/python/s3_client.py "http://127.0.0.1:$s3_port" tessera list x \
    >/dev/null 2>&1 && break
  sleep 0.3
done

export TESSERA_S3_ENDPOINT="http://127.0.0.1:$s3_port" TESSERA_S3_BUCKET=tessera \
  TESSERA_S3_ACCESS_KEY_ID=scale-demo TESSERA_S3_SECRET_ACCESS_KEY=scale-demo-secret \
  TESSERA_BACKEND_TOKEN="scale-demo-service-token"
api_key="scale-demo-api-key"
worker_a=$(port) worker_b=$(port) edge=$(port)
worker() { # NAME PORT
  "$bin" worker --database "$database" --metadata-database "$database" --listen "127.0.0.1:$2" \
    --lease-seconds 4 --webhook-allow-local --webhook-schedule 1s,2s --scratch "$work/scratch-$1" \
    >"$work/worker-$1.log" 2>&1 &
  pids+=($!)
}
worker a "$worker_a"
pid_a=$!
disown "$pid_a"  # it is killed on purpose: no job-control notice
worker b "$worker_b"
wait_for "http://127.0.0.1:$worker_a/health"
wait_for "http://127.0.0.1:$worker_b/health"
TESSERA_BACKEND_URL="http://127.0.0.1:$worker_b" \
  TESSERA_API_KEY_HASHES=$(printf %s "$api_key" | sha256sum | cut -c1-64) \
  "$bin" edge --database "$database" --listen "127.0.0.1:$edge" >"$work/edge.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$edge/health"
echo "PostgreSQL $database, SeaweedFS :$s3_port, edge :$edge, workers A (pid $pid_a) :$worker_a and B :$worker_b"

if ! "$venv/bin/python" scripts/scale_demo.py --edge "http://127.0.0.1:$edge" --api-key "$api_key" \
    --database "$database" --kill-pid "$pid_a" --tessera "$bin" "$folder"; then
  for log in "$work"/*.log; do echo "== $log"; tail -n 30 "$log"; done >&2
  exit 1
fi
