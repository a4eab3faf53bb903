#!/usr/bin/env bash
# session 40 call 5 (one H200): two channel sets a lane through the index tables (the fused SS2D core, where
# lane_pairs' auto leaves them off as untimed): benchmarks/ss2d_fused.py, the fused-lane way with the
# defaults against MAMBAAD_SCAN_LANE_PAIRS=1 in one process, at the maps the model fuses (32, 16, 8), batch 64
# then 16.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; pids=""; for d in fp32 bf16; do for c in auto LANE_PAIRS=1; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 150 python benchmarks/ss2d_fused.py --check-only --dtypes $d --ways fused-lane \
      --configs $c --sides 32,16,8 > /dev/null 2>&1 & pids="$pids $!"
  done; done; wait $pids; t warm; } > $OUT/warm.log 2>&1
cat $OUT/warm.log
{ t start; timeout $(( 360 - ($(date +%s) - s) )) python benchmarks/ss2d_fused.py --ways fused-lane --batch 64 \
    --sides 32,16,8 --configs "auto;LANE_PAIRS=1" --json $OUT/ss2d_b64.json; t done; } > $OUT/ss2d_b64.txt 2>&1
tail -20 $OUT/ss2d_b64.txt
{ t start; timeout $(( 440 - ($(date +%s) - s) )) python benchmarks/ss2d_fused.py --ways fused-lane --batch 16 \
    --sides 32,16,8 --configs "auto;LANE_PAIRS=1" --json $OUT/ss2d_b16.json; t done; } > $OUT/ss2d_b16.txt 2>&1
tail -20 $OUT/ss2d_b16.txt
t end
