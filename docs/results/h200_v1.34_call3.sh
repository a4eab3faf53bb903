#!/usr/bin/env bash
# session 36 call 3 (one H200): 4 lanes a channel with step shares (LANE_SPLIT=4&LANE_SHARES=1) against the
# default where the default keeps 2 lanes without shares (more than 8 warps an SM over 2 lanes): the plain
# scan at 2048 x 1024 and 4096 x 256, the fused SS2D core at 32 x 32, 16 x 16 and 8 x 8, both dtypes, each
# spec in one process against auto (call 2: fp32 fused 32 x 32 1.428 -> 1.341 ms with it).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
S4="LANE_SPLIT=4&LANE_SHARES=1"
warm() {  # script, spec, then the script's other arguments: that spec's kernels compiled
  local sc=$1 env_args=() kv p; shift; local spec=$1; shift
  if [ "$spec" != auto ]; then IFS='&' read -ra kv <<< "$spec"
    for p in "${kv[@]}"; do env_args+=("MAMBAAD_SCAN_$p"); done; fi
  env MAMBAAD_SCAN_TUNE_CACHE=0 "${env_args[@]}" timeout 230 python benchmarks/$sc --check-only "$@" \
    > /dev/null 2>&1
}
{ t start; pids=""
  for spec in auto "$S4"; do
    for d in fp32 bf16; do warm ss2d_fused.py "$spec" --dtypes $d --sides 32,16,8 --ways fused-lane \
      & pids="$pids $!"; done
    for d in float32 bfloat16; do warm scan_ab.py "$spec" --baseline .devcarry/prev/kernels --dtypes $d \
      --shapes 2048:1024,4096:256 & pids="$pids $!"; done
  done
  wait $pids; t warm; } > $OUT/warm.txt 2>&1
{ t start; for d in fp32 bf16; do timeout 120 python benchmarks/ss2d_fused.py --dtypes $d --sides 32,16,8 \
    --ways fused-lane --configs "auto;$S4" --json $OUT/sweep_$d.json; t $d; done; } > $OUT/sweep.txt 2>&1
left=$(( 480 - ($(date +%s) - s) ))
{ t start $left; timeout $left python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels \
    --shapes 2048:1024,4096:256 --configs "auto;$S4" --json $OUT/scan_ab.json; t done; } > $OUT/scan_ab.txt 2>&1
cd $OUT && tar czf all.tgz *.txt *.json
t end
