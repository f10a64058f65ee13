#!/usr/bin/env bash
# Shared body of the pretrain_*.sh scripts: _pretrain.sh DATASET PROTOCOL [extra args]. Runs with
# --auto-resume: running a script again continues its run.
# Environment: DATA_ROOT (folder holding the prepared dataset folders, named as in
# feeder/info.py, default ./data), OUTPUT_ROOT (default ./output), NPROC (GPUs on this machine,
# default 1), PYTHON (the interpreter, default python).
set -euo pipefail
dataset=$1 protocol=$2
shift 2
cd "$(dirname "$0")/.."
DATA_ROOT=${DATA_ROOT:-./data}
OUTPUT_ROOT=${OUTPUT_ROOT:-./output}
NPROC=${NPROC:-1}
PYTHON=${PYTHON:-python}
dir_name=$("$PYTHON" -c 'import sys; from feeder.info import dataset_info; print(dataset_info(sys.argv[1]).dir_name)' "$dataset")
launcher=("$PYTHON")
if [ "$NPROC" -gt 1 ]; then
    launcher=(torchrun --standalone --nproc_per_node "$NPROC")
fi
"${launcher[@]}" pretrain.py --dataset "$dataset" --protocol "$protocol" --auto-resume \
    --data-root "$DATA_ROOT/$dir_name" --output-dir "$OUTPUT_ROOT/${dataset}_${protocol}" "$@"
