#!/usr/bin/env bash
# session 37 call 4 (one H200): (1) is the fp32 lane forward bound by its B / C rows' L1 traffic? The same
# fp32 inference forward with B / C passed in bf16 (benchmarks/bc_bytes.py: half the bytes each lane receives a
# state and step), batch 16; (2) the table with v1.35 (vector stores of the forward's output shares),
# `mambaad bench --scan hilbert --batch 16`, with mamba_ssm's selective_scan_cuda built for sm_90 meanwhile
# and the kernels compiled first.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; MAX_JOBS=6 timeout 300 python benchmarks/build_mamba_cuda.py \
    --sdist .devcarry/mamba_ssm-2.3.2.post1.tar.gz --out /tmp/mamba_cuda; t built; } > /tmp/build.log 2>&1 &
build=$!
{ t start; pids=""; for d in bf16 fp32; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/ss2d_fused.py --check-only --dtypes $d \
      --ways fused-lane > /dev/null 2>&1 & pids="$pids $!"
    for shape in 1024:4096 2048:1024 4096:256 8192:64; do
      MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/scan_ncu.py --dim ${shape%:*} --length ${shape#*:} \
        --dtype $d --rounds 1 > /dev/null 2>&1 & pids="$pids $!"
    done
  done; wait $pids; t warm; } > /tmp/warm.log 2>&1
{ t start; timeout 100 python benchmarks/bc_bytes.py; t done; } > $OUT/bc_bytes.txt 2>&1
wait $build
{ t start; echo "command: mambaad bench --scan hilbert --batch 16 --json bench16.json"
  PYTHONPATH=$PYTHONPATH:/tmp/mamba_cuda/build timeout $(( 565 - ($(date +%s) - s) )) python -m mambaad_cli bench \
    --scan hilbert --batch 16 --json $OUT/bench16.json; t done; } > $OUT/bench16.txt 2>&1
cat /tmp/build.log /tmp/warm.log > $OUT/logs.txt
cd $OUT && tar czf all.tgz *
t end
