#!/usr/bin/env bash
# session 27 call 2 (one H200): the lane backward with each state's A, start state and adjoint loaded an
# iteration ahead (PREFETCH 4) against v1.24's defaults in one process at batch 16, pinned and in the space;
# then at the scan's own level (scan_ab against v1.24's kernels: mkdir -p .devcarry/prev && git archive
# e2dcacf kernels | tar x -C .devcarry/prev).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
b=bf16+cl+graphs
{ t start; timeout 300 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+bwdpf4only,$b+bwdpf4,$b,$b+bwdpf4only,$b+bwdpf4 --json $OUT/model.json; t done; } > $OUT/model.log 2>&1
left=$(( 450 - ($(date +%s) - s) ))
{ t start; timeout $left python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels \
    --shapes 1024:4096,2048:1024,4096:256 --dtypes bfloat16 --json $OUT/scan_ab.json \
    --configs "auto;LANE_BWD_CONFIGS=32:1:3:1:16:4;LANE_BWD_CONFIGS=32:1:3:1:8:4"
  t done; } > $OUT/scan_ab.log 2>&1
