#!/usr/bin/env bash
# session 29 call 5 (the H200 of calls 3-4, still held): the fp32 eager model at batch 64 (issue 7's
# reference row), then Nsight Compute's stall samples of v1.27's lane backward at 2048 x 1024 (one lane per
# channel), for what comes next.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
{ t start; timeout 150 python benchmarks/model_throughput.py --backend triton --batch-size 64 --steps 4 \
    --variants fp32 --json $OUT/model_fp32_64.json; t done; } > /tmp/model.log 2>&1
{ t start; MAMBAAD_SCAN_LANE_BWD_CONFIGS=32:1:3:1:16:5 timeout 90 ncu --clock-control none \
    --kernel-name regex:_scan_bwd_lane --launch-skip 1 --launch-count 1 --set full --import-source yes \
    -o /tmp/lane_bwd_2048 python benchmarks/scan_ncu.py --dim 2048 --length 1024 --dtype bf16 --rounds 2; t done; } \
    > /tmp/ncu.log 2>&1
timeout 30 ncu -i /tmp/lane_bwd_2048.ncu-rep --page source --print-source sass --csv > $OUT/lane_bwd_2048_sass.csv 2>&1
timeout 30 ncu -i /tmp/lane_bwd_2048.ncu-rep --page details > $OUT/lane_bwd_2048_details.txt 2>&1
cat /tmp/model.log /tmp/ncu.log > $OUT/logs.txt
