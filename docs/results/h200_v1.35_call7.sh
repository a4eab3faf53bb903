#!/usr/bin/env bash
# session 37 call 7 (one H200): the lane backward's step shares with one vector store a row for du and
# d(delta) (call 6: column by column they were 16 scalar 16-bit stores a block, L2 throughput 82 % against
# 49 % without shares, the backward 1.913 -> 2.122 ms). Plain scan at 1024 x 4096, batch 16, both dtypes,
# auto against LANE_BWD_SHARES=1, against v1.34's kernels (.devcarry/prev = git archive 0034471 kernels).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
pids=""
for d in float32 bfloat16; do for sh in auto 1; do
  env MAMBAAD_SCAN_TUNE_CACHE=0 MAMBAAD_SCAN_LANE_BWD_SHARES=$sh timeout 200 python benchmarks/scan_ab.py --check-only \
    --baseline .devcarry/prev/kernels --shapes 1024:4096 --dtypes $d > /dev/null 2>&1 & pids="$pids $!"
done; done; wait $pids; t warm > $OUT/warm.log
{ t start; timeout 200 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels --shapes 1024:4096 \
    --configs "auto;LANE_BWD_SHARES=1" --json $OUT/scan_ab.json; t done; } > $OUT/scan_ab.txt 2>&1
cd $OUT && tar czf all.tgz *
t end
