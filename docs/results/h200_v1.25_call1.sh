#!/usr/bin/env bash
# (both candidates lost and were removed after the call: hss.py's MAMBAAD_SS2D_BC knob and the +bcf32
# variants with it; kernels/NOTES.md v1.25)
# session 27 call 1 (one H200): x_proj's B / C rows in fp32 for the scan (MAMBAAD_SS2D_BC=fp32) and the lane
# backward with two states per loop iteration (UNROLL 2 config), against v1.24's defaults in one process at
# batch 16; then the same at the scan's own level (scan_ab against this tree's kernels as the baseline:
# before the call, here: mkdir -p .devcarry/prev && git archive HEAD kernels | tar x -C .devcarry/prev).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
b=bf16+cl+graphs
{ t start; timeout 330 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+bcf32,$b+bwdunroll2only,$b+bcf32+bwdunroll2only,$b+bwdunroll2,$b,$b+bcf32 \
    --json $OUT/model.json; t done; } > $OUT/model.log 2>&1
left=$(( 585 - ($(date +%s) - s) ))
{ t start; timeout $left python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels \
    --shapes 1024:4096,2048:1024,4096:256 --dtypes bfloat16 --json $OUT/scan_ab.json \
    --configs "auto;BC_FP32=1;LANE_BWD_CONFIGS=32:1:3:2:16:1;BC_FP32=1&LANE_BWD_CONFIGS=32:1:3:2:16:1"
  t done; } > $OUT/scan_ab.log 2>&1
