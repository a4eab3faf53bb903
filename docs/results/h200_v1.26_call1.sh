#!/usr/bin/env bash
# session 28 call 1 (one H200): 168-register configs of the lane kernels (a config's MAXNREG field: 12 one-warp
# programs per SM instead of 8) and both lane kernels at the 8 x 8 maps (64 steps), in the model at batch 16
# and at the scan's own level (bf16, against this tree's kernels: git archive HEAD kernels | tar x -C
# .devcarry/prev). The scan kernels are compiled first by parallel check-only processes.
# (variant +lanes+reg168 ran in this call and was removed after it: reg168 lost everywhere; kernels/NOTES.md v1.26)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
python -c "import triton, inspect; print(triton.__version__, 'maxnreg' in str(inspect.signature(triton.Config)))" >> $OUT/gpu.txt
R168F=32:1:3:1:16:0:168,32:1:3:1:16:2:168; R168B=32:1:3:1:16:4:168
CONFIGS="auto;LANE_CONFIGS=$R168F&LANE_BWD_CONFIGS=$R168B;LANE_BWD_SPLIT=2&LANE_BWD_CONFIGS=$R168B;\
LANE_SPLIT=4&LANE_BWD_SPLIT=4&LANE_CONFIGS=$R168F&LANE_BWD_CONFIGS=$R168B;LANE=1&LANE_BWD=1;\
LANE=1&LANE_BWD=1&LANE_CONFIGS=$R168F&LANE_BWD_CONFIGS=$R168B"
SHAPES=1024:4096,2048:1024,4096:256,8192:64
{ t start; IFS=';' read -ra entries <<< "$CONFIGS"
  for e in "${entries[@]}"; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels \
      --shapes $SHAPES --dtypes bfloat16 --check-only --configs "$e" > /dev/null 2>&1 &
  done; wait; t warm; } > $OUT/warm.log 2>&1
b=bf16+cl+graphs
{ t start; timeout 280 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+reg168,$b+lanes,$b+lanes+reg168,$b,$b+reg168,$b+lanes --json $OUT/model.json; t done; } \
    > $OUT/model.log 2>&1
left=$(( 560 - ($(date +%s) - s) ))
{ t start; timeout $left python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels --shapes $SHAPES \
    --dtypes bfloat16 --json $OUT/scan_ab.json --configs "$CONFIGS"; t done; } > $OUT/scan_ab.log 2>&1
