#!/usr/bin/env bash
# session 27 call 4 (one H200, the session's last 290 s of device time): v1.25's defaults against v1.24's lane
# backward space at batch 64 in one process; then the bf16 scan tests with the lane backward pinned to
# v1.25's new config (PREFETCH 4).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
b=bf16+cl+graphs
{ t start; timeout 135 python benchmarks/model_throughput.py --backend triton --batch-size 64 --steps 8 \
    --variants $b,$b+v124 --json $OUT/model64.json; t done; } > $OUT/model64.log 2>&1
left=$(( 205 - ($(date +%s) - s) ))
{ MAMBAAD_SCAN_LANE_BWD_CONFIGS=32:1:3:1:16:4 timeout -s INT $left python -m pytest -q -rfE --tb=short \
    -p no:cacheprovider tests/test_triton_scan.py -k "bf16"; t tests; } > $OUT/pytest.log 2>&1
