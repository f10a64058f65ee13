#!/usr/bin/env bash
# Everything that needs a GPU, in one run on a lent machine (which has PyTorch, scikit-learn,
# TensorBoard and tqdm but may lack pytest and reaches no registry): the CUDA tests, then the
# speed benchmarks.
#   pip install --target .gpu_deps pytest     # here, then carry .gpu_deps to the GPU machine
#   bash benchmarks/gpu_check.sh 2>&1 | tee gpu_check.log
set -uo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c 'import pytest' 2>/dev/null && [ -d .gpu_deps ]; then
    export PYTHONPATH="$PWD/.gpu_deps${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_golden.py tests/test_models.py
python3 benchmarks/pretrain_speed.py --device cuda --steps 20
python3 benchmarks/knn_speed.py --device cuda --k 1 10 20
