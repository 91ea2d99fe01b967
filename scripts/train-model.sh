#!/usr/bin/env bash
# Trains the crown detector from the package registries on this machine's CPU (2,000 steps,
# about 53 minutes on 2 cores), exports model/tessera-crowns.onnx, evaluates it on the held-out
# sets and rewrites MODEL.md's metrics and model/osbs_029_detections.png. Arguments go to
# model/train.py; the shipped model came from `--steps 2400` (64 minutes). The pretrained
# MobileNetV2 weights are fetched and checked by model/weights.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
venv="$HOME/.cache/tessera/venv-train-$(cat model/requirements.txt model/requirements-train.txt | sha256sum | cut -c1-12)"
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q -r model/requirements-train.txt; }
bash tests/fetch-fixtures.sh >/dev/null
"$venv/bin/python" model/train.py "$@"
"$venv/bin/python" model/evaluate.py --write
