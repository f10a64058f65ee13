#!/usr/bin/env bash
# The small-data table (docs/protocols.md, "Small datasets"): for each prepared dataset given as
# DATA_ROOT:BENCHMARK and each method, pretraining with the defaults (the small-data rules), then
# 1-NN (each stream and fused) and linear evaluation of the pretrained encoders (each with its
# method's protocol), beside the same of the prepared coordinates (--checkpoint raw) and of a random
# encoder of each pretrained one's architecture, evaluated with the same method's protocol; then
# one row per dataset and method, each encoder's also with the coordinates fused (--stream all+raw,
# the evaluations' default on small data).
#
#   bash scripts/small_data_table.sh [--method NAME[:ENCODER]]... [--labels] [--transfer] DATA_ROOT:BENCHMARK...
#   bash scripts/small_data_table.sh --method cmd --method cmd:transformer data/sbu:fold1 data/NW-UCLA-AGCN:xview
#
# --labels adds what pretraining buys with few labels (docs/protocols.md, "Few labels"): fine-tuning with
# each of FRACTIONS (default "0.01 0.1 1") of the training labels from each pretrained encoder, from
# its random encoder (training from scratch) and a linear head on the raw coordinates, each over
# REPEATS seeds (default 3; mean +- sd), in a second table.
# --transfer adds, on every dataset, each other dataset's pretrained encoders, read through the joint map
# (docs/protocols.md, "Across datasets"), and those of a pooled pretraining per method in that dataset's
# skeleton (its benchmark with every other's training part: pretrain.py --pool): rows "from OTHER" and
# "pooled", with --labels their fine-tuning too.
#
# --method: any of pretrain.py's, with its default encoder or after a colon another, repeated for
# several (default cmd); each goes to a folder of that name (cmd_transformer). Environment: PYTHON (default
# python), OUTPUT_ROOT (default ./output/small_data), PRETRAIN_ARGS and LINEAR_ARGS (extra
# pretrain.py and linear_eval.py flags), FINETUNE_ARGS (finetune.py's, with --labels), FUSE_RAW
# (default yes; no skips the evaluations with the coordinates fused).
# Running it again continues unfinished runs (their minutes in log.txt add up) and keeps what is
# finished: a pretraining whose log reached its last epoch, an evaluation with its results.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
out_root=${OUTPUT_ROOT:-./output/small_data}
read -r -a extra <<< "${PRETRAIN_ARGS:-}"
read -r -a linear_extra <<< "${LINEAR_ARGS:-}"
methods=()
specs=()
labels=no
transfer=no
read -r -a fractions <<< "${FRACTIONS:-0.01 0.1 1}"
read -r -a finetune_extra <<< "${FINETUNE_ARGS:-}"
while (( $# )); do
    case "$1" in
        --method) [[ $# -ge 2 ]] || { echo "error: --method needs a name" >&2; exit 2; }; methods+=("$2"); shift 2 ;;
        --method=*) methods+=("${1#--method=}"); shift ;;
        --labels) labels=yes; shift ;;
        --transfer) transfer=yes; shift ;;
        -*) echo "error: unknown option $1; expected --method NAME or DATA_ROOT:BENCHMARK" >&2; exit 2 ;;
        *) specs+=("$1"); shift ;;
    esac
done
(( ${#methods[@]} )) || methods=(cmd)
[[ ${FUSE_RAW:-yes} == yes || ${FUSE_RAW:-yes} == no ]] || { echo "error: FUSE_RAW=$FUSE_RAW: expected yes or no" >&2; exit 2; }
(( ${#specs[@]} )) || { echo "error: no DATA_ROOT:BENCHMARK given" >&2; exit 2; }
[[ $transfer == no || ${#specs[@]} -ge 2 ]] || {
    echo "error: --transfer reads each dataset through the others: give two DATA_ROOT:BENCHMARK or more" >&2; exit 2; }
known=$("$PYTHON" -c 'import models; print(" ".join(models.METHODS))')
encoders_known=$("$PYTHON" -c 'import models; print(" ".join(models.ENCODERS))')
for method in "${methods[@]}"; do
    [[ " $known " == *" ${method%%:*} "* ]] || { echo "error: --method ${method%%:*}: known: $known" >&2; exit 2; }
    [[ "$method" != *:* || " $encoders_known " == *" ${method#*:} "* ]] || {
        echo "error: --method $method: encoder ${method#*:} unknown; known: $encoders_known" >&2; exit 2; }
done
for spec in "${specs[@]}"; do
    root=${spec%:*}
    [[ "$root" != "$spec" && -f "$root/dataset.json" ]] || {
        echo "error: $spec: expected DATA_ROOT:BENCHMARK, DATA_ROOT holding a dataset.json" >&2; exit 2; }
done

# evaluate CHECKPOINT STREAM FOLDER [FLAGS...]: 1-NN and linear top-1 into FOLDER/knn, FOLDER/linear
# and, for an encoder, the same with the coordinates fused (--stream all+raw) into FOLDER/knn_raw,
# FOLDER/linear_raw (each kept where its results are there already)
evaluate() {
    local checkpoint=$1 stream=$2 folder=$3 with suffix
    shift 3
    with=("$stream")
    [[ $checkpoint == raw || ${FUSE_RAW:-yes} == no ]] || with+=(all+raw)
    for stream in "${with[@]}"; do
        suffix=
        [[ $stream == all+raw ]] && suffix=_raw
        [[ -f "$folder/knn$suffix/results.json" ]] || "$PYTHON" knn_eval.py "${common[@]}" --checkpoint "$checkpoint" \
            --stream "$stream" --k 1 "$@" --output-dir "$folder/knn$suffix"
        [[ -f "$folder/linear$suffix/results.json" ]] || "$PYTHON" linear_eval.py "${common[@]}" \
            --checkpoint "$checkpoint" --stream "$stream" --quiet "$@" "${linear_extra[@]}" \
            --output-dir "$folder/linear$suffix"
    done
}

# fine_tune CHECKPOINT FOLDER [FLAGS...]: with --labels, fine-tuning at each fraction of the labels into
# FOLDER/finetune_<fraction> (kept where its results are there already)
fine_tune() {
    local checkpoint=$1 folder=$2 fraction
    shift 2
    [[ $labels == yes ]] || return 0
    for fraction in "${fractions[@]}"; do
        [[ -f "$folder/finetune_$fraction/results.json" ]] && continue
        "$PYTHON" finetune.py "${common[@]}" --checkpoint "$checkpoint" --label-fraction "$fraction" \
            --repeats "${REPEATS:-3}" --quiet "$@" "${finetune_extra[@]}" --output-dir "$folder/finetune_$fraction"
    done
}
# pretrain_once FOLDER [FLAGS...]: pretraining into FOLDER, continued where it stopped; a finished run
# (its log's last epoch is its last) is not started again: its checkpoint may be gone
pretrain_once() {
    local folder=$1 finished
    shift
    finished=$("$PYTHON" -c 'import json, os, sys
log, args = (os.path.join(sys.argv[1], n) for n in ("log.txt", "args.json"))
done = os.path.isfile(log) and os.path.isfile(args) and open(log).read().strip() and \
    json.loads(open(log).read().splitlines()[-1])["epoch"] + 1 == json.load(open(args))["epochs"]
print("yes" if done else "no")' "$folder")
    [[ $finished == yes ]] || "$PYTHON" pretrain.py "${common[@]}" "$@" --output-dir "$folder" --auto-resume --quiet \
        --drop-unread "${extra[@]}"
}
runs=()
# run_name DATA_ROOT:BENCHMARK: the folder of a dataset's runs; set_common DATA_ROOT:BENCHMARK: the flags
# that name its data
run_name() {
    local root=${1%:*}
    echo "$(basename "$root")_${1##*:}"
}
set_common() {
    local root=${1%:*} kind
    kind=$("$PYTHON" -c 'import sys; from feeder.info import read_dataset_json; print(read_dataset_json(sys.argv[1]).kind)' "$root/dataset.json")
    common=(--dataset "$kind" --data-root "$root" --protocol "${1##*:}")
}
for spec in "${specs[@]}"; do
    run=$out_root/$(run_name "$spec")
    mkdir -p "$run"
    set_common "$spec"
    evaluate raw all "$run/raw"
    fine_tune raw "$run/raw"
    for spec_method in "${methods[@]}"; do
        method=${spec_method%%:*}
        choice=()
        [[ "$spec_method" == *:* ]] && choice=(--encoder "${spec_method#*:}")
        folder=$run/${spec_method/:/_}
        pretrain_once "$folder/pretrain" --method "$method" "${choice[@]}"
        evaluate "$folder/pretrain/checkpoint.pth" all "$folder"  # every stream it has, fused
        fine_tune "$folder/pretrain/checkpoint.pth" "$folder"
        # a random encoder of the same architecture, under the same method's protocol
        read -r -a same <<< "$("$PYTHON" -c 'import json, sys
from models import encoder_of
args = json.load(open(sys.argv[1]))
print(" ".join(f"--{k.replace(chr(95), chr(45))} {v}" for k, v in encoder_of(args).items() if not isinstance(v, bool))
      + " --mlp" * bool(args.get("mlp")) + " --no-mlp" * (not args.get("mlp")))' "$folder/pretrain/args.json")"
        evaluate random all "$run/random_${spec_method/:/_}" --method "$method" "${same[@]}"
        fine_tune random "$run/random_${spec_method/:/_}" --method "$method" "${same[@]}"
    done
    runs+=("$run")
done
if [[ $transfer == yes ]]; then
    # on every dataset: each other dataset's checkpoints through the joint map, and one pooled pretraining
    # per method in the dataset's own skeleton (its benchmark with every other's training part), as a user
    # with a small dataset pools others into it
    for target in "${specs[@]}"; do
        set_common "$target"
        pool=()
        for spec in "${specs[@]}"; do [[ $spec == "$target" ]] || pool+=(--pool "$spec"); done
        pooled=$out_root/pooled_$(run_name "$target")
        for spec_method in "${methods[@]}"; do
            name=${spec_method/:/_}
            for source in "${specs[@]}"; do
                [[ $source == "$target" ]] && continue
                checkpoint=$out_root/$(run_name "$source")/$name/pretrain/checkpoint.pth
                evaluate "$checkpoint" all "$out_root/$(run_name "$target")/from__$(run_name "$source")__$name"
                fine_tune "$checkpoint" "$out_root/$(run_name "$target")/from__$(run_name "$source")__$name"
            done
            choice=()
            [[ "$spec_method" == *:* ]] && choice=(--encoder "${spec_method#*:}")
            pretrain_once "$pooled/$name/pretrain" --method "${spec_method%%:*}" "${choice[@]}" "${pool[@]}"
            evaluate "$pooled/$name/pretrain/checkpoint.pth" all "$out_root/$(run_name "$target")/pooled__$name"
            fine_tune "$pooled/$name/pretrain/checkpoint.pth" "$out_root/$(run_name "$target")/pooled__$name"
        done
    done
fi
"$PYTHON" scripts/small_data_table.py "${runs[@]}"
