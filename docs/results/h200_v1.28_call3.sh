#!/usr/bin/env bash
# session 30 call 3 (one H200): call 2 again after its fix (the lane autotuners zero the output and du
# that the fused path adds into between trial runs: call 2's fused rows were WRONG by that), without the
# plain path's check against v1.26 (bitwise equal in call 2).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; MAX_JOBS=10 timeout 300 python benchmarks/build_mamba_cuda.py \
    --sdist .devcarry/mamba_ssm-2.3.2.post1.tar.gz --out /tmp/mamba_cuda; t built; } > /tmp/build.log 2>&1 &
build=$!
{ t start; pids=""; for d in bf16 fp32; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/ss2d_fused.py --check-only --dtypes $d \
      --ways fused-lane,unfused-triton > $OUT/warm_$d.txt 2>&1 & pids="$pids $!"
  done
  timeout 200 python -m pytest -q -x tests/test_triton_scan.py -k "fused or directions or skip_the_checkpoints" \
    > $OUT/pytest_fused.txt 2>&1
  wait $pids; t warm; } > /tmp/warm.log 2>&1
b=bf16+cl+graphs
{ t start; timeout 220 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+fused,$b,$b+fused --json $OUT/model16.json; t done; } > /tmp/model16.log 2>&1
wait $build
export PYTHONPATH=$PYTHONPATH:/tmp/mamba_cuda/build
{ t start; for d in bf16 fp32; do timeout 100 python benchmarks/ss2d_fused.py --dtypes $d \
    --ways fused-lane,unfused-triton,unfused-cuda --json $OUT/ss2d_$d.json; done; t done; } > $OUT/ss2d.txt 2>&1
left=$(( 470 - ($(date +%s) - s) ))
{ t start; echo "command: mambaad bench --scan hilbert --batch 16 --shapes 8192:64 --json bench16.json"
  timeout $left python -m mambaad_cli bench --scan hilbert --batch 16 --shapes 8192:64 \
    --json $OUT/bench16.json; t done; } > $OUT/bench16.txt 2>&1
cat /tmp/build.log /tmp/warm.log /tmp/model16.log > $OUT/logs.txt
