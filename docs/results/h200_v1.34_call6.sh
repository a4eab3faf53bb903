#!/usr/bin/env bash
# session 36 call 6 (one H200, the session's last 290 s): the lane backward's step shares (opt-in,
# MAMBAAD_SCAN_LANE_BWD_SHARES=1) in the fused SS2D core at 64 x 64, both dtypes, the configs pinned to the
# autotuner's usual picks (forward 16:0:128, backward 16:5) so that each spec compiles two kernels.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
P="LANE_CONFIGS=32:1:3:1:16:0:128&LANE_BWD_CONFIGS=32:1:3:1:16:5"
SPECS="$P;$P&LANE_BWD_SHARES=1;$P&LANE_BWD_SHARES=1&LANE_BWD_SPLIT=4"
warm() { local env_args=() kv p; IFS='&' read -ra kv <<< "$2"; for p in "${kv[@]}"; do
    env_args+=("MAMBAAD_SCAN_$p"); done
  env MAMBAAD_SCAN_TUNE_CACHE=0 "${env_args[@]}" timeout 150 python benchmarks/ss2d_fused.py --check-only \
    --dtypes $1 --sides 64 --ways fused-lane > /dev/null 2>&1; }
{ t start; pids=""; IFS=';' read -ra specs <<< "$SPECS"
  for spec in "${specs[@]}"; do for d in fp32 bf16; do warm $d "$spec" & pids="$pids $!"; done; done
  wait $pids; t warm; } > $OUT/warm.txt 2>&1
{ for d in fp32 bf16; do timeout 40 python benchmarks/ss2d_fused.py --dtypes $d --sides 64 --ways fused-lane \
    --configs "$SPECS" 2>&1 | grep '^{'; t $d; done; } > $OUT/bwdshares.txt 2>&1
cat $OUT/warm.txt $OUT/bwdshares.txt
