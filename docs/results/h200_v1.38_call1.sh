#!/usr/bin/env bash
# session 40 call 1 (one H200): the forward's floor at the design points left untimed (benchmarks/bc_layout.py,
# forwards only, batch 16 and 64, B / C L-major against N-major in one process each):
# - base: the defaults, with fp32's lane forward from 64 steps (MAMBAAD_SCAN_LANE_MIN_STEPS=64: fp32 at
#   8192 x 64 has run the segment forward since v1.26, whose 4-lane shares came later, v1.34);
# - pairs128: two channel sets a lane (PAIRS) at the 128-register cap, 8-step blocks, PREFETCH 4 (no spill
#   N-major in the local sm_90 compile; PAIRS had run uncapped at 168 registers, half the programs an SM);
# - bc32: bf16 u / delta with fp32 B / C rows and pairs128 (no conversion in the loop; the cast timed apart).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache MAMBAAD_SCAN_LANE_MIN_STEPS=64
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
P128="MAMBAAD_SCAN_LANE_PAIRS=1 MAMBAAD_SCAN_LANE_CONFIGS=32:1:3:1:8:4:128"
{ t start; pids=""
  for d in float32 bfloat16; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 220 python benchmarks/bc_layout.py --batch 16 --dtypes $d --no-backward \
      > /dev/null 2>&1 & pids="$pids $!"
    env $P128 MAMBAAD_SCAN_TUNE_CACHE=0 timeout 220 python benchmarks/bc_layout.py --batch 16 --dtypes $d \
      --no-backward > /dev/null 2>&1 & pids="$pids $!"
  done
  env $P128 MAMBAAD_SCAN_TUNE_CACHE=0 timeout 220 python benchmarks/bc_layout.py --batch 16 --dtypes bfloat16 \
    --bc-dtype float32 --no-backward > /dev/null 2>&1 & pids="$pids $!"
  wait $pids; t warm; } > $OUT/warm.log 2>&1
cat $OUT/warm.log
left() { echo $(( 585 - ($(date +%s) - s) )); }
{ t start; timeout $(( $(left) / 3 )) python benchmarks/bc_layout.py --batch 16,64 --no-backward \
    --json $OUT/base.json; t done; } > $OUT/base.txt 2>&1; tail -19 $OUT/base.txt
{ t start; env $P128 timeout $(( $(left) * 2 / 3 )) python benchmarks/bc_layout.py --batch 16,64 --no-backward \
    --json $OUT/pairs128.json; t done; } > $OUT/pairs128.txt 2>&1; tail -19 $OUT/pairs128.txt
{ t start; env $P128 timeout $(left) python benchmarks/bc_layout.py --batch 16,64 --dtypes bfloat16 \
    --bc-dtype float32 --no-backward --json $OUT/bc32.json; t done; } > $OUT/bc32.txt 2>&1; tail -11 $OUT/bc32.txt
t end
