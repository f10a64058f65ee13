#!/usr/bin/env bash
# Shared body of the pretrain_*.sh scripts: _pretrain.sh DATASET PROTOCOL DATA_DIR_NAME [extra args]
# Environment: DATA_ROOT (folder holding the prepared dataset folders, default ./data),
# OUTPUT_ROOT (default ./output), NPROC (GPUs on this machine, default 1).
set -euo pipefail
dataset=$1 protocol=$2 dir_name=$3
shift 3
cd "$(dirname "$0")/.."
DATA_ROOT=${DATA_ROOT:-./data}
OUTPUT_ROOT=${OUTPUT_ROOT:-./output}
NPROC=${NPROC:-1}
launcher=(python)
if [ "$NPROC" -gt 1 ]; then
    launcher=(torchrun --standalone --nproc_per_node "$NPROC")
fi
"${launcher[@]}" pretrain.py --dataset "$dataset" --protocol "$protocol" \
    --data-root "$DATA_ROOT/$dir_name" --output-dir "$OUTPUT_ROOT/${dataset}_${protocol}" "$@"
