#!/usr/bin/env bash
# session 31 call 3 (call 2's H200, still held): the lane forward with the next block's u and delta asked
# into L1 a block ahead (PREFETCH 4, and 6 = 4 + the B / C rows' prefetch), against v1.29's default space and
# v1.28's kernels (.devcarry/prev), in the scan (bf16, fp32) and in the fused SS2D core (bf16).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
AHEAD=32:1:3:1:16:4,32:1:3:1:16:6,32:1:3:1:8:4
SHAPES=1024:4096,2048:1024,4096:256,8192:64
{ t start; pids=""
  for d in float32 bfloat16; do
    for c in auto "LANE_CONFIGS=$AHEAD"; do
      MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels \
        --shapes $SHAPES --dtypes $d --check-only --configs "$c" > /dev/null 2>&1 & pids="$pids $!"
    done
  done
  for sp in default $AHEAD; do
    ( [ $sp != default ] && export MAMBAAD_SCAN_LANE_CONFIGS=$sp; MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 \
      python benchmarks/ss2d_fused.py --check-only --dtypes bf16 --sides 64,32 --ways fused-lane > /dev/null 2>&1 ) &
    pids="$pids $!"
  done
  wait $pids; t warm; } > $OUT/warm.log 2>&1
{ t start; timeout 240 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels --shapes $SHAPES \
    --dtypes float32,bfloat16 --configs "auto;LANE_CONFIGS=$AHEAD" --json $OUT/scan_ab.json; t done; } \
    > $OUT/scan_ab.log 2>&1
{ t start; timeout 60 python benchmarks/ss2d_fused.py --dtypes bf16 --sides 64,32 --ways fused-lane,unfused-triton
  t default; MAMBAAD_SCAN_LANE_CONFIGS=$AHEAD timeout 60 python benchmarks/ss2d_fused.py --dtypes bf16 --sides 64,32 \
    --ways fused-lane,unfused-triton; t ahead; } > $OUT/ss2d.txt 2>&1
t end
