#!/usr/bin/env bash
# session 35 call 1 (one H200): sweep of the fused SS2D core's lane configs at 64 x 64 (fp32, then bf16): the
# backward's 8-step blocks with PREFETCH 5 (181 registers, no stack in the local fp32 compile, against 255 and
# 72 bytes for 16:5), with and without 8-step checkpoints (MAMBAAD_SCAN_LANE_CKPT=8, new: one block a chunk,
# so pass 1 is skipped), and 4 lanes a channel; --profile for each kernel's GPU time. Then every map in fp32
# against mamba_ssm's unfused path (built here), the default and the first sweep's candidate side by side.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; MAX_JOBS=6 timeout 330 python benchmarks/build_mamba_cuda.py \
    --sdist .devcarry/mamba_ssm-2.3.2.post1.tar.gz --out /tmp/mamba_cuda; t built; } > /tmp/build.log 2>&1 &
build=$!
B85=LANE_BWD_CONFIGS=32:1:3:1:8:5
SWEEP="auto;$B85;LANE_CKPT=8&$B85;LANE_CKPT=8;LANE_BWD_SPLIT=4;LANE_CKPT=8&$B85&LANE_BWD_SPLIT=4"
SWEEP_BF16="auto;LANE_CKPT=8&$B85;$B85"
{ t start; pids=""
  IFS=';' read -ra specs <<< "$SWEEP"
  for spec in "${specs[@]}"; do
    env_args=(); if [ "$spec" != auto ]; then IFS='&' read -ra kv <<< "$spec"
      for p in "${kv[@]}"; do env_args+=("MAMBAAD_SCAN_$p"); done; fi
    env MAMBAAD_SCAN_TUNE_CACHE=0 "${env_args[@]}" timeout 240 python benchmarks/ss2d_fused.py --check-only \
      --dtypes fp32 --sides 64 --ways fused-lane > $OUT/warm_fp32_${#pids}.txt 2>&1 & pids="$pids $!"
  done
  for spec in "LANE_CKPT=8&$B85" "$B85"; do
    env_args=(); IFS='&' read -ra kv <<< "$spec"; for p in "${kv[@]}"; do env_args+=("MAMBAAD_SCAN_$p"); done
    env MAMBAAD_SCAN_TUNE_CACHE=0 "${env_args[@]}" timeout 240 python benchmarks/ss2d_fused.py --check-only \
      --dtypes bf16 --sides 64 --ways fused-lane > $OUT/warm_bf16_${#pids}.txt 2>&1 & pids="$pids $!"
  done
  wait $pids; t warm; } > $OUT/warm.txt 2>&1
{ t start; timeout 150 python benchmarks/ss2d_fused.py --dtypes fp32 --sides 64 --ways fused-lane \
    --configs "$SWEEP" --profile --json $OUT/sweep_fp32.json; t fp32
  timeout 70 python benchmarks/ss2d_fused.py --dtypes bf16 --sides 64 --ways fused-lane \
    --configs "$SWEEP_BF16" --profile --json $OUT/sweep_bf16.json; t bf16; } > $OUT/sweep.txt 2>&1
wait $build
export PYTHONPATH=$PYTHONPATH:/tmp/mamba_cuda/build
left=$(( 575 - ($(date +%s) - s) ))
{ t start $left; timeout $left python benchmarks/ss2d_fused.py --dtypes fp32 --ways fused-lane,unfused-cuda \
    --configs "auto;LANE_CKPT=8&$B85" --json $OUT/ss2d_fp32.json; t done; } > $OUT/ss2d.txt 2>&1
cat /tmp/build.log > $OUT/logs.txt
cd $OUT && tar czf all.tgz *
t end
