#!/usr/bin/env bash
# session 41 call 3 (one H200): the paired lane forward with each block's u and delta loaded a block ahead
# into registers (PREFETCH 8, now with PAIRS: both channel sets' rows), pinned as the one config
# (MAMBAAD_SCAN_LANE_CONFIGS=32:1:3:1:8:8:128), against the default space, batch 64 (every shape paired in
# both dtypes), one process: benchmarks/scan_ab.py, outputs and gradients checked against the defaults.
# Call 1's Nsight Compute profile put 10 % (fp32) of the paired forward's stall samples on the first use of
# a block's own delta; the local sm_90 compile of 8:8:128 with pairs: 621 loop instructions and 18 local
# accesses a block against 578 and 3 (fp32), 670 and 4 against 625 and 0 (bf16).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
SPECS="auto;LANE_CONFIGS=32:1:3:1:8:8:128"
{ t start; pids=""
  for spec in auto LANE_CONFIGS=32:1:3:1:8:8:128; do for d in float32 bfloat16; do
    env MAMBAAD_SCAN_TUNE_CACHE=0 $( [ $spec != auto ] && echo MAMBAAD_SCAN_$spec ) timeout 200 python \
      benchmarks/scan_ab.py --check-only --baseline kernels --batch 64 --dtypes $d > $OUT/warm_${d}_${spec%%=*}.log 2>&1 &
    pids="$pids $!"
  done; done; wait $pids; t warm; } > $OUT/warm.log 2>&1
{ t start; timeout $(( 570 - ($(date +%s) - s) )) python benchmarks/scan_ab.py --baseline kernels --batch 64 \
    --configs "$SPECS" --json $OUT/scan_ab.json; t done; } > $OUT/scan_ab.txt 2>&1
tail -3 $OUT/scan_ab.txt
t end
