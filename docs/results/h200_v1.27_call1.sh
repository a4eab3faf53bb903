#!/usr/bin/env bash
# session 29 call 1 (one H200): the lane backward with each state's dB reduce-scatter one state late
# (PREFETCH 5) against PREFETCH 4, at the scan's level (bf16, against v1.26's kernels: git archive HEAD
# kernels | tar x -C .devcarry/prev) and in the model at batch 16; then Nsight Compute's stall samples of the
# lane backward at 1024 x 4096 with each config pinned. Compiles first in parallel check-only processes.
# (ran on the v1.27pre tree: PREFETCH 5 was then the late dB reduce-scatter and +latedb its model variant,
# both removed after this call; kernels/NOTES.md v1.27 section 3)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
CONFIGS="auto;LANE_BWD_CONFIGS=32:1:3:1:16:4;LANE_BWD_CONFIGS=32:1:3:1:16:5;LANE_BWD_CONFIGS=32:1:3:1:8:5"
SHAPES=1024:4096,2048:1024,4096:256,8192:64
{ t start; IFS=';' read -ra entries <<< "$CONFIGS"
  for e in "${entries[@]}"; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels \
      --shapes $SHAPES --dtypes bfloat16 --check-only --configs "$e" > /dev/null 2>&1 &
  done
  for cfg in 32:1:3:1:16:4 32:1:3:1:16:5; do  # the pinned configs ncu runs, compiled at its shape
    MAMBAAD_SCAN_LANE_BWD_CONFIGS=$cfg timeout 200 python benchmarks/scan_ncu.py --dim 1024 --length 4096 --dtype bf16 \
      --rounds 1 > /dev/null 2>&1 &
  done; wait; t warm; } > $OUT/warm.log 2>&1
b=bf16+cl+graphs
{ t start; timeout 250 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+latedb,$b,$b+latedb --json $OUT/model.json; t done; } > $OUT/model.log 2>&1
{ t start; timeout 170 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels --shapes $SHAPES \
    --dtypes bfloat16 --json $OUT/scan_ab.json --configs "$CONFIGS"; t done; } > $OUT/scan_ab.log 2>&1
for cfg in 32:1:3:1:16:4 32:1:3:1:16:5; do
  pf=${cfg##*:}
  { t start $cfg; MAMBAAD_SCAN_LANE_BWD_CONFIGS=$cfg timeout 60 ncu --clock-control none \
      --kernel-name regex:_scan_bwd_lane --launch-skip 1 --launch-count 1 --set full --import-source yes \
      -o $OUT/lane_bwd_pf$pf python benchmarks/scan_ncu.py --dim 1024 --length 4096 --dtype bf16 --rounds 2; t done; } \
      > $OUT/ncu_pf$pf.log 2>&1
  timeout 30 ncu -i $OUT/lane_bwd_pf$pf.ncu-rep --page source --print-source sass --csv \
    > $OUT/lane_bwd_pf${pf}_sass.csv 2>&1
  timeout 30 ncu -i $OUT/lane_bwd_pf$pf.ncu-rep --page details > $OUT/lane_bwd_pf${pf}_details.txt 2>&1
  rm -f $OUT/lane_bwd_pf$pf.ncu-rep
done
t end
