#!/usr/bin/env bash
# The small-data table (docs/protocols.md, "Small datasets"): for each prepared dataset given as
# DATA_ROOT:BENCHMARK, pretraining with the defaults, then 1-NN of the pretrained encoders, of a
# random encoder and of the prepared coordinates (--checkpoint raw), each stream and fused, and
# linear evaluation of the pretrained encoders; then one row per dataset.
#
#   bash scripts/small_data_table.sh data/sbu:fold1 data/NW-UCLA-AGCN:xview
#
# Environment: PYTHON (default python), OUTPUT_ROOT (default ./output/small_data), PRETRAIN_ARGS
# (extra pretrain.py flags). Running it again continues unfinished runs; minutes add up.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
out_root=${OUTPUT_ROOT:-./output/small_data}
read -r -a extra <<< "${PRETRAIN_ARGS:-}"
runs=()
for spec in "$@"; do
    root=${spec%:*}
    benchmark=${spec##*:}
    if [[ "$root" == "$spec" || ! -f "$root/dataset.json" ]]; then
        echo "error: $spec: expected DATA_ROOT:BENCHMARK, DATA_ROOT holding a dataset.json" >&2
        exit 2
    fi
    kind=$("$PYTHON" -c 'import sys; from feeder.info import read_dataset_json; print(read_dataset_json(sys.argv[1]).kind)' "$root/dataset.json")
    run=$out_root/$(basename "$root")_$benchmark
    mkdir -p "$run"
    common=(--dataset "$kind" --data-root "$root" --protocol "$benchmark")
    start=$(date +%s)
    "$PYTHON" pretrain.py "${common[@]}" --output-dir "$run/pretrain" --auto-resume --quiet "${extra[@]}"
    before=$(cat "$run/pretrain_seconds" 2>/dev/null || echo 0)
    echo $(( before + $(date +%s) - start )) > "$run/pretrain_seconds"
    for checkpoint in "$run/pretrain/checkpoint.pth" random raw; do
        name=$([[ "$checkpoint" == */* ]] && echo pretrained || echo "$checkpoint")
        "$PYTHON" knn_eval.py "${common[@]}" --checkpoint "$checkpoint" --stream all --k 1 --output-dir "$run/knn_$name"
    done
    "$PYTHON" linear_eval.py "${common[@]}" --checkpoint "$run/pretrain/checkpoint.pth" --stream all --quiet \
        --output-dir "$run/linear_pretrained"
    runs+=("$run")
done
"$PYTHON" scripts/small_data_table.py "${runs[@]}"
