#!/usr/bin/env bash
# A job of many GeoTIFFs end to end through `tessera up`, with 1 and 2 in-process workers:
# the `a_job_of_many_geotiffs_accounts_for_every_input` test of tests/cli/job_scale.rs run at
# benchmark size, one `job_scale:` line per run (files, workers, seconds from POST /v1/jobs
# to the job's end, files per second, the process's peak RSS, detection windows).
#
#   bash batch-backend/benches/job_scale.sh [FILES]     (default 1000)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
ensure_onnxruntime >/dev/null
export ORT_DYLIB_PATH
files=${1:-1000}
cargo test -q -p tessera-batch --test cli --no-run 2>/dev/null
for workers in 1 2; do
  TESSERA_JOB_FILES=$files TESSERA_JOB_WORKERS=$workers \
    cargo test -q -p tessera-batch --test cli job_scale -- --nocapture 2>&1 | grep '^job_scale:'
done
