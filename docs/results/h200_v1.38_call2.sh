#!/usr/bin/env bash
# session 40 call 2 (one H200): v1.38's defaults against v1.37's in one run, forwards and backward
# (benchmarks/bc_layout.py, batch 16 and 64, B / C L-major and N-major): two channel sets a lane by the grid
# (lane_pairs' auto, at the 128-register cap) and fp32's lane kernels from 64 steps (LANE_MIN_STEPS), against
# MAMBAAD_SCAN_LANE_PAIRS=0 (and MAMBAAD_SCAN_LANE_MIN_STEPS=128 for fp32: v1.37's rule).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
OLD32="MAMBAAD_SCAN_LANE_PAIRS=0 MAMBAAD_SCAN_LANE_MIN_STEPS=128"
{ t start; pids=""
  for v in "" "$OLD32"; do for sh in 1024:4096,2048:1024 4096:256,8192:64; do
    env $v MAMBAAD_SCAN_TUNE_CACHE=0 timeout 240 python benchmarks/bc_layout.py --batch 16 --dtypes float32 \
      --shapes $sh > /dev/null 2>&1 & pids="$pids $!"
  done; done
  for v in "" "MAMBAAD_SCAN_LANE_PAIRS=0"; do
    env $v MAMBAAD_SCAN_TUNE_CACHE=0 timeout 240 python benchmarks/bc_layout.py --batch 16 --dtypes bfloat16 \
      > /dev/null 2>&1 & pids="$pids $!"
  done
  wait $pids; t warm; } > $OUT/warm.log 2>&1
cat $OUT/warm.log
left() { echo $(( 585 - ($(date +%s) - s) )); }
{ t start; timeout $(( $(left) / 3 )) python benchmarks/bc_layout.py --batch 16,64 --json $OUT/new.json; t done
} > $OUT/new.txt 2>&1; tail -19 $OUT/new.txt
{ t start; env $OLD32 timeout $(( $(left) / 2 )) python benchmarks/bc_layout.py --batch 16,64 --dtypes float32 \
    --json $OUT/old32.json; t done; } > $OUT/old32.txt 2>&1; tail -11 $OUT/old32.txt
{ t start; MAMBAAD_SCAN_LANE_PAIRS=0 timeout $(left) python benchmarks/bc_layout.py --batch 16,64 \
    --dtypes bfloat16 --json $OUT/old16.json; t done; } > $OUT/old16.txt 2>&1; tail -11 $OUT/old16.txt
t end
