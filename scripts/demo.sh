#!/usr/bin/env bash
# The whole pipeline on the built-in synthetic data, on CPU:
# generate NTU-format .skeleton files, prepare them, pretrain CMD, evaluate.
#   bash scripts/demo.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-./demo}
PYTHON=${PYTHON:-python}

$PYTHON -m feeder.synthetic --out-dir "$WORK/raw"
$PYTHON -m feeder.prepare --dataset synthetic --raw-dir "$WORK/raw" --out-dir "$WORK/data"
