#!/usr/bin/env bash
# session 34 call 4 (one H200): the fused SS2D core in fp32 with v1.32's default spaces (8:6 in the lane
# forward's, for 32-bit inputs) against v1.31's kernels (.devcarry/prev, d918222), one process, every map.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; TRITON_PRINT_AUTOTUNING=1 timeout 230 python benchmarks/ss2d_fused.py --dtypes fp32 \
    --baseline .devcarry/prev/kernels --ways fused-lane,fused-baseline --json $OUT/ss2d_fp32.json; t done
} > $OUT/ss2d.txt 2>&1
cd $OUT && tar czf all.tgz *
t end
