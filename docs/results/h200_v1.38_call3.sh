#!/usr/bin/env bash
# session 40 call 3 (one H200): the issue's table with v1.38's defaults (two channel sets a lane by the grid,
# fp32 lane kernels from 64 steps), batch 16 and 64 in one run: `mambaad bench --scan hilbert
# --batch 16,64`, mamba_ssm's selective_scan_cuda built for sm_90 meanwhile and the kernels compiled first.
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
wait $build
{ t start; echo "command: mambaad bench --scan hilbert --batch 16,64 --json bench.json"
  PYTHONPATH=$PYTHONPATH:/tmp/mamba_cuda/build timeout $(( 575 - ($(date +%s) - s) )) python -m mambaad_cli bench \
    --scan hilbert --batch 16,64 --json $OUT/bench.json; t done; } > $OUT/bench.txt 2>&1
cat /tmp/build.log /tmp/warm.log > $OUT/logs.txt
cd $OUT && tar czf all.tgz *
t end
