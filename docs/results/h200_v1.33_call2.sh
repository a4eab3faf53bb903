#!/usr/bin/env bash
# session 35 call 2 (one H200): the lane forward at 4 lanes a channel with 128 registers (MAXNREG), so that
# 16 one-warp programs share an SM: at 64 x 64 (batch 16) the grid at 2 lanes is 1024 warps, 7.75 an SM, and
# the forward waits on memory (fp32 long scoreboard 48 %, v1.32 call 1); local sm_90 compiles at split 4 /
# 128 registers: fp32 8:4 no stack, 8:6 8 bytes; bf16 8:6 and 16:0 none. The fused SS2D core, every map,
# each spec against mamba_ssm's unfused path (built here) in one process; then the plain scan (scan_ab.py).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; MAX_JOBS=6 timeout 330 python benchmarks/build_mamba_cuda.py \
    --sdist .devcarry/mamba_ssm-2.3.2.post1.tar.gz --out /tmp/mamba_cuda; t built; } > /tmp/build.log 2>&1 &
build=$!
S4=LANE_SPLIT=4
FP32="auto;$S4;$S4&LANE_CONFIGS=32:1:3:1:8:4:128;$S4&LANE_CONFIGS=32:1:3:1:8:6:128;$S4&LANE_CONFIGS=32:1:3:1:16:6:128"
BF16="auto;$S4;$S4&LANE_CONFIGS=32:1:3:1:8:6:128;$S4&LANE_CONFIGS=32:1:3:1:16:0:128;$S4&LANE_CONFIGS=32:1:3:1:8:4:128"
warm() {  # dtype, spec: compile that spec's kernels (fused core, every map) with the autotuner's cache off
  local env_args=() kv p; if [ "$2" != auto ]; then IFS='&' read -ra kv <<< "$2"
    for p in "${kv[@]}"; do env_args+=("MAMBAAD_SCAN_$p"); done; fi
  env MAMBAAD_SCAN_TUNE_CACHE=0 "${env_args[@]}" timeout 200 python benchmarks/ss2d_fused.py --check-only \
    --dtypes $1 --ways fused-lane > /dev/null 2>&1
}
{ t start; pids=""
  for d in fp32 bf16; do v=${d^^}; IFS=';' read -ra specs <<< "${!v}"
    for spec in "${specs[@]}"; do warm $d "$spec" & pids="$pids $!"; done; done
  wait $pids; t warm; } > $OUT/warm.txt 2>&1
wait $build
export PYTHONPATH=$PYTHONPATH:/tmp/mamba_cuda/build
{ t start; timeout 150 python benchmarks/ss2d_fused.py --dtypes fp32 --ways fused-lane,unfused-cuda \
    --configs "$FP32" --json $OUT/sweep_fp32.json; t fp32
  timeout 130 python benchmarks/ss2d_fused.py --dtypes bf16 --ways fused-lane,unfused-cuda \
    --configs "$BF16" --json $OUT/sweep_bf16.json; t bf16; } > $OUT/sweep.txt 2>&1
left=$(( 570 - ($(date +%s) - s) ))
{ t start $left; timeout $left python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels \
    --shapes 1024:4096,2048:1024 --configs "auto;$S4&LANE_CONFIGS=32:1:3:1:8:4:128;$S4&LANE_CONFIGS=32:1:3:1:8:6:128" \
    --json $OUT/scan_ab.json; t done; } > $OUT/scan_ab.txt 2>&1
cat /tmp/build.log > $OUT/logs.txt
cd $OUT && tar czf all.tgz *
t end
