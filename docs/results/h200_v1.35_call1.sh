#!/usr/bin/env bash
# session 37 call 1 (one H200): where the 4-lane forward with step shares waits (Nsight Compute, plain scan,
# fp32 and bf16, 1024 x 4096, batch 16, the autotuner's pick), and three candidates against the default in
# one process (scan_ab.py): PREFETCH 8 (each block loads the next one's u / delta into registers) at 16- and
# 8-step blocks, and bf16 B / C rows cast to fp32 on the host (MAMBAAD_SCAN_BC_FP32=1; local sm_90 compile of
# the bf16 forward at 4 lanes: 688 -> 601 loop instructions a block).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
SPECS="auto;LANE_CONFIGS=32:1:3:1:16:8:128;LANE_CONFIGS=32:1:3:1:8:8:128;BC_FP32=1"
SHAPES=1024:4096,2048:1024
warm() {  # script, spec, then the script's other arguments: that spec's kernels compiled
  local sc=$1 env_args=() kv p; shift; local spec=$1; shift
  if [ "$spec" != auto ]; then IFS='&' read -ra kv <<< "$spec"
    for p in "${kv[@]}"; do env_args+=("MAMBAAD_SCAN_$p"); done; fi
  env MAMBAAD_SCAN_TUNE_CACHE=0 "${env_args[@]}" timeout 230 python benchmarks/$sc "$@" > /dev/null 2>&1
}
{ t start; pids=""
  IFS=';' read -ra specs <<< "$SPECS"
  for spec in "${specs[@]}"; do for d in float32 bfloat16; do
    warm scan_ab.py "$spec" --check-only --baseline kernels --shapes $SHAPES --dtypes $d & pids="$pids $!"
  done; done
  wait $pids; t warm
  for d in fp32 bf16; do TRITON_PRINT_AUTOTUNING=1 timeout 60 python benchmarks/scan_ncu.py --dim 1024 \
    --length 4096 --dtype $d --rounds 1 > $OUT/tune_plain_$d.log 2>&1; done; t tuned; } > $OUT/warm.log 2>&1
prof() {  # name, then the command: the lane forward's first launch
  local n=$1; shift
  { t start $n; timeout 80 ncu --clock-control none --kernel-name regex:_scan_fwd_lane --launch-count 1 \
      --set full --import-source yes -o /tmp/$n "$@"; t done; } > $OUT/ncu_$n.log 2>&1
  timeout 40 ncu -i /tmp/$n.ncu-rep --page details > $OUT/ncu_${n}_details.txt 2>&1
  timeout 40 ncu -i /tmp/$n.ncu-rep --page source --print-source sass --csv > /tmp/${n}_sass.csv 2>&1
  python benchmarks/ncu_stalls.py /tmp/${n}_sass.csv --top 50 > $OUT/ncu_${n}_stalls.txt 2>&1
}
for d in fp32 bf16; do
  prof plain_fwd_$d python benchmarks/scan_ncu.py --dim 1024 --length 4096 --dtype $d --rounds 1
done
left=$(( 570 - ($(date +%s) - s) ))
{ t start $left; timeout $left python benchmarks/scan_ab.py --baseline kernels --shapes $SHAPES \
    --configs "$SPECS" --json $OUT/scan_ab.json; t done; } > $OUT/scan_ab.txt 2>&1
cd $OUT && tar czf all.tgz *.txt *.json *.log 2>/dev/null
t end
