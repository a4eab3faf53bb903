#!/usr/bin/env bash
# session 36 call 1 (one H200): the lane forward's step shares (MAMBAAD_SCAN_LANE_SHARES=1: each of a
# channel's rows loads u / delta and computes softplus for its own share of a block's steps, exchanging delta
# and delta u by shuffles, and sums y into those shares by a reduce-scatter). Local sm_90 compile, fp32 fused
# forward at 4 lanes (16:0:128): 1032 -> 654 instructions a block. The fused SS2D core at every map against
# the default in one process, both dtypes; then the plain scan at the two longest shapes against v1.33's
# kernels (git archive a7f0343 kernels | tar x -C .devcarry/prev); then the fused fp32 core's kernels at 64.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
SPECS="auto;LANE_SHARES=1"
warm() {  # script, dtype, spec, then the script's other arguments: that spec's kernels compiled
  local sc=$1 d=$2 env_args=() kv p; shift 2; local spec=$1; shift
  if [ "$spec" != auto ]; then IFS='&' read -ra kv <<< "$spec"
    for p in "${kv[@]}"; do env_args+=("MAMBAAD_SCAN_$p"); done; fi
  env MAMBAAD_SCAN_TUNE_CACHE=0 "${env_args[@]}" timeout 220 python benchmarks/$sc --check-only "$@" \
    > /dev/null 2>&1
}
{ t start; pids=""
  for spec in auto LANE_SHARES=1; do
    for d in fp32 bf16; do warm ss2d_fused.py $d "$spec" --dtypes $d --ways fused-lane & pids="$pids $!"; done
    warm scan_ab.py x "$spec" --baseline .devcarry/prev/kernels --shapes 1024:4096,2048:1024 & pids="$pids $!"
  done
  wait $pids; t warm; } > $OUT/warm.txt 2>&1
{ t start; for d in fp32 bf16; do timeout 140 python benchmarks/ss2d_fused.py --dtypes $d --ways fused-lane \
    --configs "$SPECS" --json $OUT/ss2d_$d.json; t $d; done; } > $OUT/ss2d.txt 2>&1
{ t start; timeout 170 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels \
    --shapes 1024:4096,2048:1024 --configs "$SPECS" --json $OUT/scan_ab.json; t done; } > $OUT/scan_ab.txt 2>&1
left=$(( 560 - ($(date +%s) - s) ))
{ t start $left; timeout $left python benchmarks/ss2d_fused.py --dtypes fp32 --sides 64 --ways fused-lane \
    --configs "$SPECS" --profile; t done; } > $OUT/profile.txt 2>&1
cd $OUT && tar czf all.tgz *.txt *.json
t end
