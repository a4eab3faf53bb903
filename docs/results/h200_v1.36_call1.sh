#!/usr/bin/env bash
# session 38 call 1 (one H200): time v1.35's opt-in two channel sets a lane (MAMBAAD_SCAN_LANE_PAIRS=1) against
# the default pick, both in this tree, and against v1.34's kernels (git archive 0034471 kernels | tar x -C
# .devcarry/prev) as the check and the common baseline, in one process: batch 16 at MambaAD's four shapes,
# fp32 and bf16; then the fused SS2D core the same two ways.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
shapes=1024:4096,2048:1024,4096:256,8192:64
{ t start; pids=""
  for d in float32 bfloat16; do for sh in 1024:4096,2048:1024 4096:256,8192:64; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 220 python benchmarks/scan_ab.py --check-only --baseline .devcarry/prev/kernels \
      --dtypes $d --shapes $sh --configs "auto;LANE_PAIRS=1" > /dev/null 2>&1 & pids="$pids $!"
  done; done
  for d in float32 bfloat16; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 220 python benchmarks/ss2d_fused.py --check-only --dtypes $d --ways fused-lane \
      --configs "auto;LANE_PAIRS=1" > /dev/null 2>&1 & pids="$pids $!"
  done; wait $pids; t warm; } > $OUT/warm.log 2>&1
{ t start; timeout 260 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels --shapes $shapes \
    --configs "auto;LANE_PAIRS=1" --json $OUT/scan_ab_pairs_b16.json; t b16; } > $OUT/scan_ab.txt 2>&1
{ t start; timeout $(( 570 - ($(date +%s) - s) )) python benchmarks/ss2d_fused.py --ways fused-lane \
    --configs "auto;LANE_PAIRS=1" --json $OUT/ss2d_pairs.json; t done; } > $OUT/ss2d.txt 2>&1
cd $OUT && tar czf all.tgz *
t end
