#!/usr/bin/env bash
# session 31 call 1 (one H200): v1.29's int8 layout hint as an inline PTX copy (no per-element add) and the
# fused path's adds by inline `red` (no trip through shared memory), against v1.28's kernels (git archive
# HEAD kernels | tar x -C .devcarry/prev; the whole v1.28 tree in .devcarry/v128 for the model): the scan
# (scan_ab.py), the SS2D core (ss2d_fused.py, with mamba_ssm's kernel built meanwhile), the model at batch 16.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; MAX_JOBS=8 timeout 300 python benchmarks/build_mamba_cuda.py \
    --sdist .devcarry/mamba_ssm-2.3.2.post1.tar.gz --out /tmp/mamba_cuda; t built; } > /tmp/build.log 2>&1 &
build=$!
SHAPES=1024:4096,2048:1024,4096:256,8192:64
{ t start; pids=""
  for d in float32 bfloat16; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels \
      --shapes $SHAPES --dtypes $d --check-only > $OUT/check_$d.txt 2>&1 & pids="$pids $!"
  done
  for d in bf16 fp32; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/ss2d_fused.py --check-only --dtypes $d \
      --ways fused-lane,fused-baseline,unfused-triton --baseline .devcarry/prev/kernels > $OUT/warm_$d.txt 2>&1 &
    pids="$pids $!"
  done
  timeout 220 python -m pytest -q -x tests/test_triton_scan.py -k "fused or lane or directions or checkpoints or bf16" \
    > $OUT/pytest_scan.txt 2>&1
  wait $pids; t warm; } > /tmp/warm.log 2>&1
{ t start; timeout 150 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels --shapes $SHAPES \
    --dtypes float32,bfloat16 --json $OUT/scan_ab.json; t done; } > $OUT/scan_ab.log 2>&1
wait $build
export PYTHONPATH=$PYTHONPATH:/tmp/mamba_cuda/build
{ t start; for d in bf16 fp32; do timeout 90 python benchmarks/ss2d_fused.py --dtypes $d --baseline \
    .devcarry/prev/kernels --ways fused-lane,fused-baseline,unfused-triton,unfused-cuda --json $OUT/ss2d_$d.json; done
  t done; } > $OUT/ss2d.txt 2>&1
b=bf16+cl+graphs
left=$(( 560 - ($(date +%s) - s) ))
{ t start $left; timeout $(( left / 2 )) python benchmarks/model_throughput.py --backend triton --batch-size 16 \
    --steps 8 --variants $b,$b+fused --json $OUT/model_new.json; t new
  (cd .devcarry/v128 && PYTHONPATH=$PWD:/tmp/site timeout $(( left / 2 - 5 )) python benchmarks/model_throughput.py \
    --backend triton --batch-size 16 --steps 8 --variants $b,$b+fused --json $OUT/model_old.json); t old
} > $OUT/model.log 2>&1
cat /tmp/build.log /tmp/warm.log > $OUT/logs.txt
t end
