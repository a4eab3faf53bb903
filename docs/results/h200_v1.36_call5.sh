#!/usr/bin/env bash
# session 38 call 5 (one H200): the rest of tests/test_triton_scan.py (147 tests, those call 4 did not run)
# compiled on the GPU, in 8 processes, the lane forward pinned as in call 4.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache MAMBAAD_SCAN_TUNE_CACHE=0
export MAMBAAD_SCAN_LANE_CONFIGS=32:1:3:1:8:4:128,32:1:3:1:8:4
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
python -c "import pytest; print('pytest', pytest.__version__)" > $OUT/pytest_version.txt 2>&1
pids=""
for f in .devcarry/gpu_ids/rest0*; do
  mapfile -t ids < $f
  ( timeout 225 python -m pytest -q -rfE -p no:cacheprovider "${ids[@]}" > $OUT/pytest_$(basename $f).txt 2>&1 ) &
  pids="$pids $!"
done
wait $pids
t end
tail -n 3 $OUT/pytest_rest0*.txt
