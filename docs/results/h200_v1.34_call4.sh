#!/usr/bin/env bash
# session 36 call 4 (one H200): the issue's table with v1.34 (the lane forward over 4 lanes with step shares wherever N >= 4), `mambaad bench --scan hilbert --batch 16`, with
# mamba_ssm's selective_scan_cuda built for sm_90 meanwhile and the kernels compiled first (the fused core by
# ss2d_fused.py --check-only, the plain scan's four shapes by scan_ncu.py, both dtypes, in parallel).
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
{ t start; echo "command: mambaad bench --scan hilbert --batch 16 --json bench16.json"
  PYTHONPATH=$PYTHONPATH:/tmp/mamba_cuda/build timeout $(( 560 - ($(date +%s) - s) )) python -m mambaad_cli bench \
    --scan hilbert --batch 16 --json $OUT/bench16.json; t done; } > $OUT/bench16.txt 2>&1
cat /tmp/build.log /tmp/warm.log > $OUT/logs.txt
cd $OUT && tar czf all.tgz *
t end
