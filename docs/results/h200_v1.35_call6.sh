#!/usr/bin/env bash
# session 37 call 6 (one H200): why the lane backward's step shares (MAMBAAD_SCAN_LANE_BWD_SHARES=1) lost 11 %
# on the plain bf16 backward at 1024 x 4096 (v1.34 call 8) although the local sm_90 compile has 23 % fewer
# loop instructions and no stack: the pinned default config (16:5) with and without shares, and auto with
# shares (its pick), in one process; then Nsight Compute of the shares backward at the pinned config.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
P=LANE_BWD_CONFIGS=32:1:3:1:16:5
SPECS="$P;$P&LANE_BWD_SHARES=1;LANE_BWD_SHARES=1"
pids=""
for spec in "$P" "LANE_BWD_SHARES=1" "$P&LANE_BWD_SHARES=1"; do
  env_args=(); IFS='&' read -ra kv <<< "$spec"; for p in "${kv[@]}"; do env_args+=("MAMBAAD_SCAN_$p"); done
  env MAMBAAD_SCAN_TUNE_CACHE=0 "${env_args[@]}" timeout 200 python benchmarks/scan_ab.py --check-only --baseline kernels \
    --shapes 1024:4096 --dtypes bfloat16 > /dev/null 2>&1 & pids="$pids $!"
done; wait $pids; t warm > $OUT/warm.log
{ t start; timeout 150 python benchmarks/scan_ab.py --baseline kernels --shapes 1024:4096 --dtypes bfloat16 \
    --configs "$SPECS" --json $OUT/scan_ab.json; t done; } > $OUT/scan_ab.txt 2>&1
for sh in 0 1; do n=bwd_bf16_shares$sh
  { t start $n; MAMBAAD_SCAN_LANE_BWD_CONFIGS=32:1:3:1:16:5 MAMBAAD_SCAN_LANE_BWD_SHARES=$sh timeout 80 ncu \
      --clock-control none --kernel-name regex:_scan_bwd_lane --launch-count 1 --set full --import-source yes \
      -o /tmp/$n python benchmarks/scan_ncu.py --dim 1024 --length 4096 --dtype bf16 --rounds 1; t done; } \
      > $OUT/ncu_$n.log 2>&1
  timeout 40 ncu -i /tmp/$n.ncu-rep --page details > $OUT/ncu_${n}_details.txt 2>&1
  timeout 40 ncu -i /tmp/$n.ncu-rep --page source --print-source sass --csv > /tmp/${n}_sass.csv 2>&1
  python benchmarks/ncu_stalls.py /tmp/${n}_sass.csv --top 40 > $OUT/ncu_${n}_stalls.txt 2>&1
done
cd $OUT && tar czf all.tgz *
t end
