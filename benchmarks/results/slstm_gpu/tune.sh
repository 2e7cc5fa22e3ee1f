#!/bin/bash
# One device call while iterating: correctness (with a watchdog), then the kernel variants and the backward's
# PyTorch work timed in one process, against the previous kernel (kernel_before.py); no FlashRNN build.
cd "$(dirname "$0")/../../.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
mkdir -p /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/xlstm_zoo
export PYTHONPATH=/tmp/site:/tmp/pkg TRITON_DEFAULT_FP_FUSION=1 PYTHONUNBUFFERED=1
D=benchmarks/results/slstm_gpu
timeout 80 python3 $D/run_slstm_gpu.py check 2>&1 | tee $OUT/check.log | cut -c1-330
echo "check rc ${PIPESTATUS[0]}"
timeout 200 python3 $D/run_slstm_gpu.py tune 2>&1 | tee $OUT/tune.log
