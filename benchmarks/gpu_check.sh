#!/usr/bin/env bash
# Everything that needs a GPU, in one run on a lent machine (which has PyTorch, Triton,
# scikit-learn, TensorBoard, tqdm and pytest, and reaches no registry): first the fast path's
# self-check at the published recipe (the defaults, --amp, and the frame kernels), the recurrence's pieces,
# the speed benchmark of the main variants at the published recipe, the ST-GCN methods' steps beside
# their published steps (eager and graphed), and, when an older tree is unpacked in .bench_old, its
# default in the same run; then the CUDA tests and the parity tests. Logs go to $OUT (or ./gpu_check) as well as stdout.
#   bash benchmarks/gpu_check.sh
# Ends with one line naming the steps that exited non-zero (or saying that none did).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check.sh: no CUDA device here (PyTorch under $PYTHON sees none, or is not installed); nothing run"
    exit 1
fi
out="${OUT:-gpu_check}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TRITON_PRINT_AUTOTUNING=1
failed=()
# step NAME COMMAND...: COMMAND's output on stdout and in $out/NAME.log; a non-zero exit noted
step() {
    local name=$1
    shift
    "$@" 2>&1 | tee "$out/$name.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("$name")
}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$out/device.txt"
"$PYTHON" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)" | tee -a "$out/device.txt"
step self_check timeout 150 "$PYTHON" benchmarks/self_check.py --runs '' ' --amp' ' --gru-kernels triton-frame'
step recurrence timeout 120 "$PYTHON" benchmarks/recurrence_speed.py
default='grouped+graph overlap frame fp16-ops tf32'
# E2E=CLIPS adds pretrain.py's own runs (defaults and --amp) on that many random clips
e2e=()
[ -n "${E2E:-}" ] && e2e=(--end-to-end "$E2E" --end-to-end-args "" " --amp")
step bench timeout 330 "$PYTHON" benchmarks/pretrain_speed.py --device cuda --config published --steps 20 \
    --variants 'frame-by-frame tf32' "$default" 'grouped+graph overlap tf32' 'grouped+graph overlap bf16*' \
               'grouped+graph overlap frame bf16*' --profile 'grouped frame fp16-ops tf32' "${e2e[@]}"
# the ST-GCN methods at their published batch: published step, ours eager, ours graphed
step methods timeout 150 "$PYTHON" benchmarks/method_speed.py --device cuda --batch 128 --steps 10 \
    --methods skeletonclr crossclr aimclr
if [ -d .bench_old ]; then
    step bench_old bash -c "cd .bench_old && TRITON_PRINT_AUTOTUNING=0 timeout 90 '$PYTHON' benchmarks/pretrain_speed.py \
        --device cuda --config published --steps 20 --variants '$default'"
fi
step tests timeout 200 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_grouped.py \
    tests/test_golden.py tests/test_published.py
if (( ${#failed[@]} )); then
    echo "gpu_check.sh: exited non-zero: ${failed[*]}"
    exit 1
fi
echo "gpu_check.sh: every step exited 0"
