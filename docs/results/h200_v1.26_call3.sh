#!/usr/bin/env bash
# session 28 call 3 (one H200): v1.26 (the lane kernels from 64 steps in 16-bit inputs, fp32 on the lane
# kernels' auto, scoring forwards without checkpoints) against v1.25's routing (+v125) in the model at batch
# 16, bf16 and fp32 eager; the scan against v1.25's kernels (git archive d8c1a90 kernels | tar x -C
# .devcarry/prev); then mamba_ssm's selective_scan_cuda built for sm_90 (during the warm-up and the model
# runs, 10 jobs) and the issue's table, `mambaad bench --scan hilbert --batch 16`.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; MAX_JOBS=10 timeout 300 python benchmarks/build_mamba_cuda.py \
    --sdist .devcarry/mamba_ssm-2.3.2.post1.tar.gz --out /tmp/mamba_cuda; t built; } > $OUT/build.log 2>&1 &
build=$!
SHAPES=1024:4096,2048:1024,4096:256,8192:64
{ t start; pids=""; for d in bfloat16 float32; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels \
      --shapes $SHAPES --dtypes $d --check-only > /dev/null 2>&1 & pids="$pids $!"
  done; wait $pids; t warm; } > $OUT/warm.log 2>&1
b=bf16+cl+graphs
{ t start; timeout 200 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+v125,$b,$b+v125 --json $OUT/model16.json; t done; } > $OUT/model16.log 2>&1
wait $build
{ t start; timeout 120 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels --shapes $SHAPES \
    --dtypes bfloat16,float32 --json $OUT/scan_ab.json; t done; } > $OUT/scan_ab.log 2>&1
{ t start; echo "command: mambaad bench --scan hilbert --batch 16 --json bench16.json"
  PYTHONPATH=$PYTHONPATH:/tmp/mamba_cuda/build timeout 230 python -m mambaad_cli bench --scan hilbert --batch 16 \
    --json $OUT/bench16.json; t done; } > $OUT/bench16.txt 2>&1
left=$(( 570 - ($(date +%s) - s) ))
{ t start; timeout $left python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 4 \
    --variants fp32,fp32+v125 --json $OUT/model_fp32.json; t done; } > $OUT/model_fp32.log 2>&1
