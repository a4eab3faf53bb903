#!/usr/bin/env bash
# session 28 call 4 (one H200, the session's last 275 s): fp32 on the lane kernels at batch 64, against v1.25's
# kernels in the same process (git archive d8c1a90 kernels | tar x -C .devcarry/prev).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; timeout 180 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels --batch 64 \
    --shapes 1024:4096,2048:1024,4096:256,8192:64 --dtypes float32 --json $OUT/scan_ab64.json; t done; } \
    > $OUT/scan_ab64.log 2>&1
