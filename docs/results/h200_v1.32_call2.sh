#!/usr/bin/env bash
# session 34 call 2 (one H200): v1.32's fused lane kernels (each of a channel's rows writes its share of the
# steps through the table, unpredicated) against v1.31's (git archive d918222 kernels | tar x -C
# .devcarry/prev) and mamba_ssm's unfused path, SS2D core, one process per dtype; GPU tests of the fused path
# first; a sweep of the fp32 lane forward's configs at 64 x 64; then the SS2D module per stage.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; MAX_JOBS=8 timeout 300 python benchmarks/build_mamba_cuda.py \
    --sdist .devcarry/mamba_ssm-2.3.2.post1.tar.gz --out /tmp/mamba_cuda; t built; } > /tmp/build.log 2>&1 &
build=$!
WAYS=fused-lane,fused-baseline
SWEEP="auto;LANE_CONFIGS=32:1:3:1:16:6;LANE_CONFIGS=32:1:3:1:8:6;LANE_CONFIGS=32:1:3:1:8:2"
{ t start; pids=""
  for d in bf16 fp32; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/ss2d_fused.py --check-only --dtypes $d \
      --ways $WAYS --baseline .devcarry/prev/kernels > $OUT/warm_$d.txt 2>&1 & pids="$pids $!"
  done
  for c in 32:1:3:1:16:6 32:1:3:1:8:6 32:1:3:1:8:2; do
    MAMBAAD_SCAN_TUNE_CACHE=0 MAMBAAD_SCAN_LANE_CONFIGS=$c timeout 200 python benchmarks/ss2d_fused.py \
      --check-only --dtypes fp32 --sides 64 --ways fused-lane > /dev/null 2>&1 & pids="$pids $!"
  done
  timeout 200 python -m pytest -q tests/test_directions_glue.py tests/test_triton_scan.py \
    -k "permute or fused or skip_the_checkpoints or table_positions or knobs_sides" > $OUT/pytest.txt 2>&1
  wait $pids; t warm; } > /tmp/warm.log 2>&1
{ t start; timeout 120 python benchmarks/ss2d_fused.py --dtypes fp32 --sides 64 --ways fused-lane \
    --configs "$SWEEP" --json $OUT/sweep_fp32.json; t done; } > $OUT/sweep.txt 2>&1
wait $build
export PYTHONPATH=$PYTHONPATH:/tmp/mamba_cuda/build
{ t start; for d in bf16 fp32; do timeout 140 python benchmarks/ss2d_fused.py --dtypes $d --baseline \
    .devcarry/prev/kernels --ways $WAYS,unfused-cuda --json $OUT/ss2d_$d.json; t $d; done; } > $OUT/ss2d.txt 2>&1
left=$(( 570 - ($(date +%s) - s) ))
{ t start $left; timeout $left python benchmarks/ss2d_module.py --dtypes bf16 \
    --ways "triton@MAMBAAD_SS2D_FUSED_SIDES=none,triton-fused" --json $OUT/module_bf16.json
  t done; } > $OUT/module.txt 2>&1
cat /tmp/build.log /tmp/warm.log > $OUT/logs.txt
cd $OUT && tar czf all.tgz *
t end
