#!/usr/bin/env bash
# session 37 call 5 (one H200): where the Triton scan's eager calls spend host time (call 4's bench: at 4096 x
# 256 a direct forward + backward took 0.92-1.0 ms of wall clock against 0.58-0.72 ms of GPU time),
# benchmarks/scan_host.py: host ms a call, then cProfile tables, fp32 and bf16 at 4096 x 256, bf16 at 8192 x 64.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
lscpu | grep -E "Model name|MHz" > $OUT/cpu.txt
pids=""
for a in "4096 256 bf16" "4096 256 fp32" "8192 64 bf16"; do set -- $a
  MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/scan_host.py --dim $1 --length $2 --dtype $3 --calls 1 \
    > /dev/null 2>&1 & pids="$pids $!"
done; wait $pids
{ t start; for a in "4096 256 bf16" "4096 256 fp32" "8192 64 bf16"; do set -- $a
  timeout 150 python benchmarks/scan_host.py --dim $1 --length $2 --dtype $3 --top 35; t $a; done; } \
  > $OUT/host.txt 2>&1
cd $OUT && tar czf all.tgz *
t end
