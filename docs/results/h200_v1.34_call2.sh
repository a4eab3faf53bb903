#!/usr/bin/env bash
# session 36 call 2 (one H200): v1.34's tentative default (the lane forward's step shares where 2 lanes a
# channel leave at most 8 warps an SM: the 64 x 64 maps and 1024 x 4096 at batch 16) against v1.33's kernels
# (git archive a7f0343 kernels | tar x -C .devcarry/prev) and mamba_ssm's unfused path, the SS2D core at
# every map, one process per dtype; then 4 lanes with shares where the default keeps 2 (the plain scan at
# 1024 x 4096, the bf16 fused core at 64 x 64, the fp32 one at 32 x 32).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; MAX_JOBS=6 timeout 330 python benchmarks/build_mamba_cuda.py \
    --sdist .devcarry/mamba_ssm-2.3.2.post1.tar.gz --out /tmp/mamba_cuda; t built; } > /tmp/build.log 2>&1 &
build=$!
S4="LANE_SPLIT=4&LANE_SHARES=1"
warm() {  # script, spec, then the script's other arguments: that spec's kernels compiled
  local sc=$1 env_args=() kv p; shift; local spec=$1; shift
  if [ "$spec" != auto ]; then IFS='&' read -ra kv <<< "$spec"
    for p in "${kv[@]}"; do env_args+=("MAMBAAD_SCAN_$p"); done; fi
  env MAMBAAD_SCAN_TUNE_CACHE=0 "${env_args[@]}" timeout 230 python benchmarks/$sc --check-only "$@" \
    > /dev/null 2>&1
}
{ t start; pids=""
  for d in fp32 bf16; do warm ss2d_fused.py auto --dtypes $d --ways fused-lane,fused-baseline \
    --baseline .devcarry/prev/kernels & pids="$pids $!"; done
  warm ss2d_fused.py "$S4" --dtypes bf16 --sides 64 --ways fused-lane & pids="$pids $!"
  warm ss2d_fused.py "$S4" --dtypes fp32 --sides 32 --ways fused-lane & pids="$pids $!"
  for spec in auto "$S4"; do warm scan_ab.py "$spec" --baseline .devcarry/prev/kernels --shapes 1024:4096 \
    & pids="$pids $!"; done
  wait $pids; t warm; } > $OUT/warm.txt 2>&1
wait $build
export PYTHONPATH=$PYTHONPATH:/tmp/mamba_cuda/build
{ t start; for d in fp32 bf16; do TRITON_PRINT_AUTOTUNING=1 timeout 130 python benchmarks/ss2d_fused.py \
    --dtypes $d --baseline .devcarry/prev/kernels --ways fused-lane,fused-baseline,unfused-cuda \
    --json $OUT/ss2d_$d.json; t $d; done; } > $OUT/ss2d.txt 2>&1
{ t start; timeout 100 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels --shapes 1024:4096 \
    --configs "auto;$S4" --json $OUT/scan_ab.json; t done; } > $OUT/scan_ab.txt 2>&1
left=$(( 565 - ($(date +%s) - s) ))
{ t start $left; timeout $left python benchmarks/ss2d_fused.py --dtypes bf16 --sides 64 --ways fused-lane \
    --configs "auto;$S4" --json $OUT/sweep_bf16.json; t bf16
  left=$(( 565 - ($(date +%s) - s) )); timeout $left python benchmarks/ss2d_fused.py --dtypes fp32 --sides 32 \
    --ways fused-lane --configs "auto;$S4" --json $OUT/sweep_fp32.json; t fp32; } > $OUT/sweep.txt 2>&1
cat /tmp/build.log > $OUT/logs.txt
cd $OUT && tar czf all.tgz *.txt *.json
t end
