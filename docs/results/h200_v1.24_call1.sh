#!/usr/bin/env bash
# session 26 call 1 (one H200): the lane kernels' state split (MAMBAAD_SCAN_LANE_SPLIT / _BWD_SPLIT) and the
# fused cross-scan projection (MAMBAAD_SCAN_PROJ=fused) against v1.23's defaults in one process at batch 16;
# before the call, here: mkdir -p .devcarry/prev && git archive d974496 kernels | tar x -C .devcarry/prev (v1.23's kernels)
# then the split at the scan's own level against v1.23's kernels (scan_ab); then the GPU tests of the split.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
b=bf16+cl+graphs
{ t start; timeout 320 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+lanesplit,$b+scanproj,$b+lanesplit+scanproj,$b+lanesplit2,$b; t done; } > $OUT/model.log 2>&1
left=$(( 480 - ($(date +%s) - s) ))
{ t start; timeout $left python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels --shapes 1024:4096,2048:1024 \
    --dtypes bfloat16 --json $OUT/scan_ab.json \
    --configs "auto;LANE_SPLIT=auto&LANE_BWD_SPLIT=auto;LANE=1&LANE_BWD=1&LANE_SPLIT=2&LANE_BWD_SPLIT=2;LANE=1&LANE_BWD=1&LANE_SPLIT=4&LANE_BWD_SPLIT=4"
  t done; } > $OUT/scan_ab.log 2>&1
left=$(( 585 - ($(date +%s) - s) ))
{ timeout -s INT $left python -m pytest -q -rfE --tb=short -p no:cacheprovider tests/test_triton_scan.py \
    -k "eight_states or split_knob or bf16"; t tests; } > $OUT/pytest.log 2>&1
