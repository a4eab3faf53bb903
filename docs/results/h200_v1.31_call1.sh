#!/usr/bin/env bash
# session 33 call 1 (one H200): the fused SS2D path with positions pre-scaled by the maps' L stride
# (triton_scan._table_positions) against v1.30's fused path (git archive d570eca kernels | tar x -C
# .devcarry/prev) and mamba_ssm's unfused path in one process; GPU tests of the fused path first; then the
# whole SS2D module per decoder stage, default order against the fused core (benchmarks/ss2d_module.py).
# Ran at fd2b809, where the scaling was on by default: on a later tree set MAMBAAD_SCAN_TABLE_SCALE=1
# for its fused-lane rows.
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
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/ss2d_fused.py --check-only --dtypes $d \
      --ways $WAYS --baseline .devcarry/prev/kernels > $OUT/warm_$d.txt 2>&1 & pids="$pids $!"
  done
  timeout 200 python -m pytest -q tests/test_directions_glue.py tests/test_triton_scan.py \
    -k "permute or fused or skip_the_checkpoints or table_positions or knobs_sides" > $OUT/pytest.txt 2>&1
  wait $pids; t warm; } > /tmp/warm.log 2>&1
wait $build
export PYTHONPATH=$PYTHONPATH:/tmp/mamba_cuda/build
{ t start; for d in bf16 fp32; do timeout 140 python benchmarks/ss2d_fused.py --dtypes $d --baseline \
    .devcarry/prev/kernels --ways $WAYS,unfused-cuda --json $OUT/ss2d_$d.json; t $d; done; } > $OUT/ss2d.txt 2>&1
left=$(( 575 - ($(date +%s) - s) ))
{ t start $left; timeout $left python benchmarks/ss2d_module.py --dtypes bf16 --json $OUT/module_bf16.json
  t done; } > $OUT/module.txt 2>&1
cat /tmp/build.log /tmp/warm.log > $OUT/logs.txt
cd $OUT && tar czf all.tgz *
t end
