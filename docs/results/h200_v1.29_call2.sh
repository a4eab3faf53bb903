#!/usr/bin/env bash
# session 31 call 2 (one H200): where the lane forward waits (Nsight Compute, bf16 and fp32, 1024 x 4096, the
# autotuner's pick pinned), where the fused SS2D core's time goes (profiler kernel tables at 64 x 64), and the
# model at batch 16: v1.29's tree (defaults, fused) and v1.28's (.devcarry/v128, defaults).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
CFG=32:1:3:1:16:2
{ t start; pids=""
  for d in bf16 fp32; do
    MAMBAAD_SCAN_LANE_CONFIGS=$CFG timeout 150 python benchmarks/scan_ncu.py --dim 1024 --length 4096 --dtype $d \
      --rounds 1 > /dev/null 2>&1 & pids="$pids $!"
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 150 python benchmarks/ss2d_fused.py --check-only --dtypes $d --sides 64 \
      --ways fused-lane,unfused-triton > /dev/null 2>&1 & pids="$pids $!"
  done; wait $pids; t warm; } > $OUT/warm.log 2>&1
for d in bf16 fp32; do
  { t start $d; MAMBAAD_SCAN_LANE_CONFIGS=$CFG timeout 60 ncu --clock-control none \
      --kernel-name regex:_scan_fwd_lane --launch-skip 2 --launch-count 1 --set full --import-source yes \
      -o /tmp/fwd_$d python benchmarks/scan_ncu.py --dim 1024 --length 4096 --dtype $d --rounds 2; t done; } \
      > $OUT/ncu_$d.log 2>&1
  timeout 30 ncu -i /tmp/fwd_$d.ncu-rep --page source --print-source sass --csv > /tmp/fwd_${d}_sass.csv 2>&1
  timeout 30 ncu -i /tmp/fwd_$d.ncu-rep --page details > $OUT/ncu_fwd_${d}_details.txt 2>&1
  python benchmarks/ncu_stalls.py /tmp/fwd_${d}_sass.csv --top 30 > $OUT/ncu_fwd_${d}_stalls.txt 2>&1
done
{ t start; for d in bf16 fp32; do timeout 60 python benchmarks/ss2d_fused.py --dtypes $d --sides 64 --profile \
    --ways fused-lane,unfused-triton; done; t done; } > $OUT/ss2d_profile.txt 2>&1
b=bf16+cl+graphs
left=$(( 575 - ($(date +%s) - s) ))
{ t start $left; timeout $(( left * 6 / 10 )) python benchmarks/model_throughput.py --backend triton --batch-size 16 \
    --steps 8 --variants $b,$b+fused --json $OUT/model_new.json; t new
  left=$(( 575 - ($(date +%s) - s) ))
  (cd .devcarry/v128 && PYTHONPATH=$PWD:/tmp/site timeout $left python benchmarks/model_throughput.py \
    --backend triton --batch-size 16 --steps 8 --variants $b --json $OUT/model_old.json); t old
} > $OUT/model.log 2>&1
t end
