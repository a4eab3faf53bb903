#!/usr/bin/env bash
# session 34 call 1 (one H200): where the fused SS2D core's lane kernels wait at 64 x 64 (Nsight Compute,
# bf16 and fp32, forward and backward through the tables) against the plain lane kernels at the same folded
# shape (1024 x 4096, batch 16), and the SS2D module's kernels at 64 x 64 with v1.31's default and the fused
# core. Tree: v1.31 (d918222).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; pids=""
  for d in bf16 fp32; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/ss2d_fused.py --check-only --dtypes $d --sides 64 \
      --ways fused-lane > /dev/null 2>&1 & pids="$pids $!"
  done
  MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/scan_ncu.py --dim 1024 --length 4096 --dtype bf16 \
    --rounds 1 > /dev/null 2>&1 & pids="$pids $!"
  wait $pids; t compiled
  # the autotuner's picks, timed alone on the GPU and kept on disk for the profiled runs
  for d in bf16 fp32; do TRITON_PRINT_AUTOTUNING=1 timeout 100 python benchmarks/ss2d_fused.py --check-only \
    --dtypes $d --sides 64 --ways fused-lane > $OUT/tune_fused_$d.log 2>&1; done
  TRITON_PRINT_AUTOTUNING=1 timeout 100 python benchmarks/scan_ncu.py --dim 1024 --length 4096 --dtype bf16 \
    --rounds 1 > $OUT/tune_plain_bf16.log 2>&1; t tuned; } > $OUT/warm.log 2>&1
prof() {  # name, fwd or bwd, then the command: that lane kernel's first launch
  local n=$1_$2 k=$2; shift 2
  { t start $n; timeout 80 ncu --clock-control none --kernel-name regex:_scan_${k}_lane --launch-count 1 --set full \
      --import-source yes -o /tmp/$n "$@"; t done; } > $OUT/ncu_$n.log 2>&1
  timeout 40 ncu -i /tmp/$n.ncu-rep --page details > $OUT/ncu_${n}_details.txt 2>&1
  timeout 40 ncu -i /tmp/$n.ncu-rep --page source --print-source sass --csv > /tmp/${n}_sass.csv 2>&1
  python benchmarks/ncu_stalls.py /tmp/${n}_sass.csv --top 40 > $OUT/ncu_${n}_stalls.txt 2>&1
}
for k in fwd bwd; do
  for d in bf16 fp32; do
    prof fused_$d $k python benchmarks/ss2d_fused.py --check-only --dtypes $d --sides 64 --ways fused-lane
  done
  prof plain_bf16 $k python benchmarks/scan_ncu.py --dim 1024 --length 4096 --dtype bf16 --rounds 1
done
left=$(( 560 - ($(date +%s) - s) ))
{ t start $left; timeout $left python benchmarks/ss2d_module.py --dtypes bf16 --profile 64 \
    --ways "triton,triton-fused" --json $OUT/module_bf16.json; t done; } > $OUT/module.txt 2>&1
cd $OUT && tar czf all.tgz *
t end
