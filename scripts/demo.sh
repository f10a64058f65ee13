#!/usr/bin/env bash
# The whole pipeline on the built-in synthetic data, on CPU: generate the data, prepare it,
# pretrain CMD and a single-modality MoCo baseline with the same budget, then kNN and linear
# evaluation of both and of a random encoder, ending with a results table.
#   bash scripts/demo.sh               # NTU-format .skeleton files; about 11 minutes on a 2-core CPU
#   bash scripts/demo.sh --quick       # about 2 minutes: fewer epochs, for CI and a first look
#   bash scripts/demo.sh --custom-2d   # as your own data would come: a pyskl annotation file of COCO-17
#                                      # detections in pixels, prepared with --dataset custom
# The two flags combine. WORK (default ./demo) holds everything it writes; PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-./demo}
PYTHON=${PYTHON:-python}
pretrain_epochs=60 schedule=50 linear_epochs=40 linear_schedule="25 35" subjects=10 custom=0
for flag in "$@"; do
    case "$flag" in
        --quick) pretrain_epochs=6 schedule=5 linear_epochs=6 linear_schedule="4 5" ;;
        --custom-2d) custom=1 ;;
        *) echo "demo.sh: unknown option $flag (expected --quick or --custom-2d)" >&2; exit 2 ;;
    esac
done
data="$WORK/data"
if [ "$custom" = 1 ]; then
    $PYTHON -m feeder.synthetic --out-dir "$WORK/raw" --subjects "$subjects" --format pyskl-2d
    $PYTHON -m feeder.prepare --dataset custom --annotations "$WORK/raw/synthetic_2d.pkl" --layout coco17 \
        --out-dir "$data" --quiet
    common=(--dataset custom --protocol xsub --data-root "$data" --workers 2)
else
    $PYTHON -m feeder.synthetic --out-dir "$WORK/raw" --subjects "$subjects"
    $PYTHON -m feeder.prepare --dataset synthetic --raw-dir "$WORK/raw" --out-dir "$data" --quiet
    common=(--dataset synthetic --protocol xsub --data-root "$data" --workers 2)
fi

$PYTHON pretrain.py "${common[@]}" --output-dir "$WORK/cmd" --epochs "$pretrain_epochs" --schedule $schedule --quiet \
    --overwrite
$PYTHON pretrain.py "${common[@]}" --output-dir "$WORK/moco" --epochs "$pretrain_epochs" --schedule $schedule \
    --modalities joint --cmd-weight 0 --quiet --overwrite

for model in cmd moco random; do
    checkpoint="$WORK/$model/checkpoint.pth" stream=all
    [ "$model" = random ] && checkpoint=random
    [ "$model" = moco ] && stream=joint
    $PYTHON knn_eval.py "${common[@]}" --checkpoint "$checkpoint" --stream "$stream" --k 1 10 \
        --output-dir "$WORK/eval/$model-knn"
    $PYTHON linear_eval.py "${common[@]}" --checkpoint "$checkpoint" --stream "$stream" --epochs "$linear_epochs" \
        --schedule $linear_schedule --eval-every 5 --output-dir "$WORK/eval/$model-linear" --quiet
done
$PYTHON scripts/results_table.py "$WORK/eval"
