#!/usr/bin/env bash
# Everything that needs a GPU, in one run on a lent machine (which has PyTorch, Triton,
# scikit-learn, TensorBoard, tqdm and pytest, and reaches no registry): first the fast path's
# self-check at the published recipe (the defaults, --amp, and the frame kernels), the recurrence's pieces,
# the speed benchmark of the main variants at the published recipe (and, when an older tree is
# unpacked in .bench_old, its default in the same run), then the CUDA tests and the parity
# tests. Logs go to $OUT (or ./gpu_check) as well as stdout.
#   bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TRITON_PRINT_AUTOTUNING=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader | tee "$out/device.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)" | tee -a "$out/device.txt"
timeout 150 python3 benchmarks/self_check.py --runs '' ' --amp' ' --gru-kernels triton-frame' 2>&1 \
    | tee "$out/self_check.log"
timeout 120 python3 benchmarks/recurrence_speed.py 2>&1 | tee "$out/recurrence.log"
default='grouped+graph overlap frame fp16-ops tf32'
# E2E=CLIPS adds pretrain.py's own runs (defaults and --amp) on that many random clips
e2e=()
[ -n "${E2E:-}" ] && e2e=(--end-to-end "$E2E" --end-to-end-args "" " --amp")
timeout 330 python3 benchmarks/pretrain_speed.py --device cuda --config published --steps 20 \
    --variants 'frame-by-frame tf32' "$default" 'grouped+graph overlap tf32' 'grouped+graph overlap bf16*' \
               'grouped+graph overlap frame bf16*' --profile 'grouped frame fp16-ops tf32' "${e2e[@]}" 2>&1 \
    | tee "$out/bench.log"
if [ -d .bench_old ]; then
    (cd .bench_old && TRITON_PRINT_AUTOTUNING=0 timeout 90 python3 benchmarks/pretrain_speed.py --device cuda \
        --config published --steps 20 --variants "$default" 2>&1 | tee "$out/bench_old.log")
fi
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_grouped.py tests/test_golden.py 2>&1 \
    | tee "$out/tests.log" | tail -25
