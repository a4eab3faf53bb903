#!/usr/bin/env bash
# session 28 call 2 (one H200): v1.26's rule (both lane kernels from 64 steps in 16-bit inputs: the 8 x 8
# maps) against v1.25's (from 128, variant +v125) in the model at batch 16 and 64; then the lane backward in
# fp32 (issue 4's fp32 rows; auto runs the tiles / segment backwards there) at the scan's level against this
# tree's v1.25 kernels (git archive d8c1a90 kernels | tar x -C .devcarry/prev), its kernels compiled first by
# parallel check-only processes.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
CONFIGS="auto;LANE_BWD=1;LANE_BWD=1&LANE_BWD_SPLIT=2;LANE=1&LANE_BWD=1&LANE_SPLIT=2&LANE_BWD_SPLIT=2;\
LANE_BWD=1&LANE_BWD_SPLIT=2&LANE_BWD_CONFIGS=32:1:3:1:8:4,32:1:3:1:8:1"
SHAPES=1024:4096,2048:1024,4096:256,8192:64
{ t start; IFS=';' read -ra entries <<< "$CONFIGS"
  for e in "${entries[@]}"; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels \
      --shapes $SHAPES --dtypes float32 --check-only --configs "$e" > /dev/null 2>&1 &
  done; wait; t warm; } > $OUT/warm.log 2>&1
b=bf16+cl+graphs
{ t start; timeout 200 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+v125,$b,$b+v125 --json $OUT/model16.json; t done; } > $OUT/model16.log 2>&1
left=$(( 560 - ($(date +%s) - s) - 110 ))
{ t start; timeout $left python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels --shapes $SHAPES \
    --dtypes float32 --json $OUT/scan_ab.json --configs "$CONFIGS"; t done; } > $OUT/scan_ab.log 2>&1
left=$(( 560 - ($(date +%s) - s) ))
{ t start; timeout $left python benchmarks/model_throughput.py --backend triton --batch-size 64 --steps 8 \
    --variants $b,$b+v125 --json $OUT/model64.json; t done; } > $OUT/model64.log 2>&1
