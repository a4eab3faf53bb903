#!/usr/bin/env bash
# session 39 call 2 (one H200): the N-major tests compiled on the GPU (call 1's spy broke them there); B / C
# N-major with two channel sets a lane (MAMBAAD_SCAN_LANE_PAIRS=1) against L-major with them, forwards only,
# batch 16 and 64 (benchmarks/bc_layout.py); then `mambaad bench` at batch 16 without the CUDA baseline,
# the first GPU run of v1.36's 'fwd %floor GPU' column.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; pids=""
  for d in float32 bfloat16; do for sh in 1024:4096,2048:1024 4096:256,8192:64; do
    MAMBAAD_SCAN_LANE_PAIRS=1 MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/bc_layout.py --batch 16 \
      --dtypes $d --shapes $sh --no-backward > /dev/null 2>&1 & pids="$pids $!"
  done; done
  ( MAMBAAD_SCAN_TUNE_CACHE=0 MAMBAAD_SCAN_LANE_CONFIGS=32:1:3:1:8:4:128,32:1:3:1:8:4 timeout 200 \
      python -m pytest -q -rfE -p no:cacheprovider tests/test_triton_scan.py -k n_major > $OUT/pytest_nmajor.txt 2>&1 ) &
  pids="$pids $!"
  wait $pids; t warm; } > $OUT/warm.log 2>&1
{ t start; MAMBAAD_SCAN_LANE_PAIRS=1 timeout 200 python benchmarks/bc_layout.py --batch 16,64 --no-backward \
    --json $OUT/bc_layout_pairs.json; t done; } > $OUT/bc_layout_pairs.txt 2>&1
{ t start; timeout $(( 560 - ($(date +%s) - s) )) python -m mambaad_cli bench --scan hilbert --batch 16 \
    --backends triton --json $OUT/bench.json; t done; } > $OUT/bench.txt 2>&1
t end
