#!/usr/bin/env bash
# session 37 call 3 (one H200): the plain lane forward with step shares storing its share of the output as
# one vector store a row (STG.128 at 16-step blocks, fp32) instead of one scalar store a step; call 2 found
# the forward bound by the L1 data pipe (88 % of its wavefronts), where a scalar store costs as many
# wavefronts (one a channel's line, 8 a warp) as a vector one. Against v1.34's kernels (git archive 0034471
# kernels | tar x -C .devcarry/prev) in one process, batch 16 at MambaAD's four shapes, then batch 64.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; pids=""
  for d in float32 bfloat16; do for b in 16 64; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/scan_ab.py --check-only --baseline .devcarry/prev/kernels \
      --batch $b --dtypes $d --shapes 1024:4096,2048:1024,4096:256,8192:64 > /dev/null 2>&1 & pids="$pids $!"
  done; done; wait $pids; t warm; } > $OUT/warm.log 2>&1
{ t start; timeout 200 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels \
    --shapes 1024:4096,2048:1024,4096:256,8192:64 --json $OUT/scan_ab_b16.json; t b16
  left=$(( 560 - ($(date +%s) - s) ))
  timeout $left python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels --batch 64 \
    --shapes 1024:4096,2048:1024,4096:256,8192:64 --json $OUT/scan_ab_b64.json; t b64; } > $OUT/scan_ab.txt 2>&1
cd $OUT && tar czf all.tgz *.txt *.json *.log 2>/dev/null
t end
