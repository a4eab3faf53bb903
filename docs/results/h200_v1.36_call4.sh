#!/usr/bin/env bash
# session 38 call 4 (one H200): the interpreter tests of v1.34-v1.35's lane features (4 lanes a channel, step
# shares, two channel sets a lane, the fused directions, bf16) run compiled on the GPU, where the inline PTX
# (ex2.approx.ftz, the vector reductions, the L1 prefetches, the layout hints) runs instead of tl.exp2 and
# tl.atomic_add: 62 tests of tests/test_triton_scan.py in 4 processes, the lane forward pinned to the 8-step,
# PREFETCH 4 configs (one compile per kernel where the autotuner would try 3-5).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache MAMBAAD_SCAN_TUNE_CACHE=0
export MAMBAAD_SCAN_LANE_CONFIGS=32:1:3:1:8:4:128,32:1:3:1:8:4
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
python -c "import pytest; print('pytest', pytest.__version__)" > $OUT/pytest_version.txt 2>&1
pids=""
for f in .devcarry/gpu_ids/shard0*; do
  mapfile -t ids < $f
  ( timeout 500 python -m pytest -q -rfE -p no:cacheprovider "${ids[@]}" > $OUT/pytest_$(basename $f).txt 2>&1 ) &
  pids="$pids $!"
done
wait $pids
t end
tail -n 3 $OUT/pytest_shard0*.txt
