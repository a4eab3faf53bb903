#!/usr/bin/env bash
# session 35 call 3 (one H200): v1.33's default (the fp32 lane forward through a table over 4 lanes with the
# 128-register configs where 2 lanes leave at most 8 warps an SM: the 64 x 64 maps at batch 16) against
# v1.32's kernels (git archive 08a75ca kernels | tar x -C .devcarry/prev) and mamba_ssm's unfused path, the
# SS2D core at every map, one process per dtype; then the SS2D module with x_proj as three products
# (MAMBAAD_X_PROJ_TOKENS=split, untimed since v1.32).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; MAX_JOBS=8 timeout 330 python benchmarks/build_mamba_cuda.py \
    --sdist .devcarry/mamba_ssm-2.3.2.post1.tar.gz --out /tmp/mamba_cuda; t built; } > /tmp/build.log 2>&1 &
build=$!
WAYS=fused-lane,fused-baseline
MWAYS="triton@MAMBAAD_SS2D_FUSED_SIDES=none,triton-fused,triton-fused@MAMBAAD_X_PROJ_TOKENS=split"
{ t start; pids=""
  for d in fp32 bf16; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/ss2d_fused.py --check-only --dtypes $d \
      --ways $WAYS --baseline .devcarry/prev/kernels > $OUT/warm_$d.txt 2>&1 & pids="$pids $!"
  done
  MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/ss2d_module.py --check-only --dtypes bf16 \
    --ways "$MWAYS" > $OUT/warm_module.txt 2>&1 & pids="$pids $!"
  wait $pids; t warm; } > $OUT/warm.txt 2>&1
wait $build
export PYTHONPATH=$PYTHONPATH:/tmp/mamba_cuda/build
{ t start; for d in fp32 bf16; do TRITON_PRINT_AUTOTUNING=1 timeout 130 python benchmarks/ss2d_fused.py \
    --dtypes $d --baseline .devcarry/prev/kernels --ways $WAYS,unfused-cuda --json $OUT/ss2d_$d.json; t $d
  done; } > $OUT/ss2d.txt 2>&1
left=$(( 570 - ($(date +%s) - s) ))
{ t start $left; timeout $left python benchmarks/ss2d_module.py --dtypes bf16 --ways "$MWAYS" \
    --json $OUT/module_bf16.json; t done; } > $OUT/module.txt 2>&1
cat /tmp/build.log > $OUT/logs.txt
cd $OUT && tar czf all.tgz *
t end
