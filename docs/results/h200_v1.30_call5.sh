#!/usr/bin/env bash
# session 32 call 5 (one H200, the last 300 s): the fused SS2D core at 64 x 64, bf16, with lane config spaces
# pinned to one config each (MAMBAAD_SCAN_LANE_CONFIGS forward, _LANE_BWD_CONFIGS backward), each in its
# own process, against the default spaces.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
VARIANTS="default LANE_CONFIGS=32:1:3:1:16:2 LANE_CONFIGS=32:1:3:1:8:2 LANE_BWD_CONFIGS=32:1:3:1:8:5 LANE_BWD_CONFIGS=32:1:3:1:16:4"
run() { local v=$1; shift; if [ $v = default ]; then "$@"; else env MAMBAAD_SCAN_$v "$@"; fi; }
{ t start; pids=""; for v in $VARIANTS; do
    run $v env MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/ss2d_fused.py --check-only --dtypes bf16 \
      --sides 64 --ways fused-lane > /dev/null 2>&1 & pids="$pids $!"
  done; wait $pids; t warm; } > $OUT/warm.log 2>&1
for v in $VARIANTS; do
  { t start $v; run $v timeout 30 python benchmarks/ss2d_fused.py --dtypes bf16 --sides 64 --ways fused-lane \
      --json $OUT/ss2d_$(echo $v | tr =: __).json; t done; } >> $OUT/ss2d.txt 2>&1
done
cd $OUT && tar czf all.tgz *
t end
