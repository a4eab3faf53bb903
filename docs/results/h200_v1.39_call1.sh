#!/usr/bin/env bash
# session 41 call 1 (one H200): where the paired lane forward (v1.38's default at batch 64) spends its issue
# slots. Nsight Compute on the training forward's launch, plain scan, batch 64, 4096 x 256 (B / C L-major):
# fp32 with pairs (auto), fp32 without (MAMBAAD_SCAN_LANE_PAIRS=0), bf16 with pairs; each tuned first so that
# the profiled launch is the autotuner's pick, not a trial.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
python -c "import torch, triton; print(torch.__version__, triton.__version__)" >> $OUT/gpu.txt
ARGS="--batch 64 --dim 4096 --length 256 --rounds 1"
{ t start; pids=""
  for v in fp32:auto fp32:0 bf16:auto; do
    MAMBAAD_SCAN_LANE_PAIRS=${v#*:} TRITON_PRINT_AUTOTUNING=1 timeout 200 python benchmarks/scan_ncu.py $ARGS \
      --dtype ${v%:*} > $OUT/tune_${v%:*}_${v#*:}.log 2>&1 & pids="$pids $!"
  done; wait $pids; t tuned; } > $OUT/warm.log 2>&1
prof() {  # name, pairs knob, dtype
  local n=$1
  { t start $n; MAMBAAD_SCAN_LANE_PAIRS=$2 timeout 100 ncu --clock-control none --kernel-name regex:_scan_fwd_lane \
      --launch-count 1 --set full --import-source yes -o /tmp/$n python benchmarks/scan_ncu.py $ARGS --dtype $3
    t done; } > $OUT/ncu_$n.log 2>&1
  timeout 40 ncu -i /tmp/$n.ncu-rep --page details > $OUT/ncu_${n}_details.txt 2>&1
  timeout 40 ncu -i /tmp/$n.ncu-rep --page source --print-source sass --csv > /tmp/${n}_sass.csv 2>&1
  python benchmarks/ncu_stalls.py /tmp/${n}_sass.csv --top 40 > $OUT/ncu_${n}_stalls.txt 2>&1
  timeout 40 ncu -i /tmp/$n.ncu-rep --page raw --csv > /tmp/${n}_raw.csv 2>&1 && gzip -c /tmp/${n}_raw.csv > $OUT/ncu_${n}_raw.csv.gz
}
prof pairs_fp32 auto fp32
prof nopairs_fp32 0 fp32
prof pairs_bf16 auto bf16
cd $OUT && tar czf all.tgz *.txt *.log 2>/dev/null
t end
