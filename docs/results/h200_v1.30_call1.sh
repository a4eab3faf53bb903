#!/usr/bin/env bash
# session 32 call 1 (one H200): the fused SS2D path's B / C moved between natural and step order by one
# Triton pass each way (triton_directions.permute_steps_triton; torch's gather / argsort / cast before),
# against v1.29's fused path (git archive bd8771a kernels | tar x -C .devcarry/prev) and mamba_ssm's unfused
# path in one process; GPU tests of the fused path and of the permute kernel first.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; MAX_JOBS=8 timeout 300 python benchmarks/build_mamba_cuda.py \
    --sdist .devcarry/mamba_ssm-2.3.2.post1.tar.gz --out /tmp/mamba_cuda; t built; } > /tmp/build.log 2>&1 &
build=$!
WAYS=fused-lane,fused-baseline
{ t start; pids=""
  for d in bf16 fp32; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 220 python benchmarks/ss2d_fused.py --check-only --dtypes $d \
      --ways $WAYS --baseline .devcarry/prev/kernels > $OUT/warm_$d.txt 2>&1 & pids="$pids $!"
  done
  timeout 220 python -m pytest -q tests/test_directions_glue.py tests/test_triton_scan.py \
    -k "permute or fused or skip_the_checkpoints" > $OUT/pytest.txt 2>&1
  wait $pids; t warm; } > /tmp/warm.log 2>&1
wait $build
export PYTHONPATH=$PYTHONPATH:/tmp/mamba_cuda/build
{ t start; for d in bf16 fp32; do timeout 150 python benchmarks/ss2d_fused.py --dtypes $d --baseline \
    .devcarry/prev/kernels --ways $WAYS,unfused-cuda --json $OUT/ss2d_$d.json; t $d; done; } > $OUT/ss2d.txt 2>&1
left=$(( 570 - ($(date +%s) - s) ))
{ t start $left; timeout $left python benchmarks/ss2d_fused.py --dtypes bf16 --sides 64 --profile \
    --baseline .devcarry/prev/kernels --ways $WAYS; t done; } > $OUT/ss2d_profile.txt 2>&1
cat /tmp/build.log /tmp/warm.log > $OUT/logs.txt
cd $OUT && tar czf all.tgz *
t end
