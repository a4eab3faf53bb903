#!/usr/bin/env bash
# session 36 calls 7 and 8 (one H200, on call 6's machine): the lane backward's step shares with the
# autotuner's own picks, the fused SS2D core at 64 x 64 (call 7), then the plain scan at 1024 x 4096 (call 8,
# against this tree's auto: --baseline kernels). Outputs: h200_*bwdshares*_v1.34_call{7,8}_*.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site TRITON_CACHE_DIR=/tmp/tcache
for d in fp32 bf16; do for sp in "" 1; do
  env MAMBAAD_SCAN_TUNE_CACHE=0 ${sp:+MAMBAAD_SCAN_LANE_BWD_SHARES=1} timeout 110 python benchmarks/ss2d_fused.py \
    --check-only --dtypes $d --sides 64 --ways fused-lane > /dev/null 2>&1 &
done; done; wait
for d in fp32 bf16; do timeout 30 python benchmarks/ss2d_fused.py --dtypes $d --sides 64 --ways fused-lane \
  --configs "auto;LANE_BWD_SHARES=1" 2>&1 | grep '^{'; done                                      # call 7
timeout 100 python benchmarks/scan_ab.py --baseline kernels --shapes 1024:4096 \
  --configs "auto;LANE_BWD_SHARES=1"                                                             # call 8
