#!/usr/bin/env bash
# session 32 call 4 (one H200, the session's last 470 s): the fused SS2D core at 64 x 64, bf16, with the lane
# kernels' state split varied (MAMBAAD_SCAN_LANE_SPLIT for the forward, _LANE_BWD_SPLIT for the backward),
# each in its own process: does the table path, with more instructions per step, want more warps?
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
VARIANTS="default LANE_SPLIT=4 LANE_SPLIT=1 LANE_BWD_SPLIT=1 LANE_BWD_SPLIT=4"
run() { local v=$1; shift; if [ $v = default ]; then "$@"; else env MAMBAAD_SCAN_$v "$@"; fi; }
{ t start; pids=""; for v in $VARIANTS; do
    run $v env MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/ss2d_fused.py --check-only --dtypes bf16 \
      --sides 64 --ways fused-lane > /dev/null 2>&1 & pids="$pids $!"
  done; wait $pids; t warm; } > $OUT/warm.log 2>&1
for v in $VARIANTS; do
  { t start $v; run $v timeout 30 python benchmarks/ss2d_fused.py --dtypes bf16 --sides 64 --ways fused-lane \
      --json $OUT/ss2d_$v.json; t done; } >> $OUT/ss2d.txt 2>&1
done
cd $OUT && tar czf all.tgz *
t end
