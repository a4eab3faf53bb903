#!/usr/bin/env bash
# session 40 call 6 (one H200): the fused SS2D core with v1.38's defaults (two channel sets a lane through the
# tables where the halved grid keeps the warps) checked against the unfused path on our scan, compiled:
# benchmarks/ss2d_fused.py --check-only (largest relative L2 error of the output and the gradients of u,
# delta, B, C), the maps the model fuses, batch 64 and 16, fp32 and bf16.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; pids=""; for d in fp32 bf16; do for b in 64 16; do
    timeout 250 python benchmarks/ss2d_fused.py --check-only --dtypes $d --batch $b --sides 32,16,8 \
      --ways unfused-triton,fused-lane > $OUT/check_${d}_b$b.txt 2>&1 & pids="$pids $!"
  done; done; wait $pids; t done; } > $OUT/log.txt 2>&1
cat $OUT/log.txt; grep -h '"dtype"' $OUT/check_*.txt
