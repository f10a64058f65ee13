#!/usr/bin/env bash
# The small-data preset on NW-UCLA cross-view (docs/protocols.md, "Small datasets"), then the
# evaluations of README's NW-UCLA table: 1-NN and linear, each stream and their fusion. Extra
# arguments go to pretrain.py; the environment is that of _pretrain.sh. Running it again
# continues the run and evaluates its last checkpoint anew.
set -euo pipefail
here=$(dirname "$0")
"$here/_pretrain.sh" ucla xview "$@"
cd "$here/.."
PYTHON=${PYTHON:-python}
run=${OUTPUT_ROOT:-./output}/ucla_xview
dir_name=$("$PYTHON" -c 'from feeder.info import dataset_info; print(dataset_info("ucla").dir_name)')
common=(--dataset ucla --protocol xview --data-root "${DATA_ROOT:-./data}/$dir_name"
        --checkpoint "$run/checkpoint.pth" --stream all)
"$PYTHON" knn_eval.py "${common[@]}" --k 1 --output-dir "$run/knn"
"$PYTHON" linear_eval.py "${common[@]}" --output-dir "$run/linear"
