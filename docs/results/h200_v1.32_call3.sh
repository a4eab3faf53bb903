#!/usr/bin/env bash
# session 34 call 3 (one H200): the bf16 graphed model at batch 16 with v1.32's kernels, the fused core at the
# maps of up to 32 x 32 (the default) and everywhere, one process; then v1.31's tree (git archive d918222 |
# tar x -C .devcarry/v131) with its default in a second process; then the fp32 SS2D module per stage, default
# order against the fused core (the 64 x 64 decision for fp32).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
b=bf16+cl+graphs
{ t start; timeout 250 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+fusedat8+16+32+64 --json $OUT/model_new.json; t new
  left=$(( 420 - ($(date +%s) - s) ))
  (cd .devcarry/v131 && PYTHONPATH=$PWD:/tmp/site timeout $left python benchmarks/model_throughput.py \
    --backend triton --batch-size 16 --steps 8 --variants $b --json $OUT/model_old.json); t old
} > $OUT/model.log 2>&1
left=$(( 575 - ($(date +%s) - s) ))
{ t start $left; timeout $left python benchmarks/ss2d_module.py --dtypes fp32 \
    --ways "triton@MAMBAAD_SS2D_FUSED_SIDES=none,triton-fused" --json $OUT/module_fp32.json
  t done; } > $OUT/module.txt 2>&1
cd $OUT && tar czf all.tgz *
t end
