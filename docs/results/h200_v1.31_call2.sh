#!/usr/bin/env bash
# session 33 call 2 (one H200): the model at batch 16 (bf16, channels-last, CUDA graphs) with the default
# order everywhere and with the fused SS2D core at the stages where call 1's module timing had it faster
# (MAMBAAD_SS2D_FUSED_SIDES: 8, 16, 32; and 8, 16), one process; then the SS2D module per stage again with
# both backends' kernels at 64 x 64 printed, and in fp32.
# Ran at a tree with v1.30's dt_proj einsum and no default choice by map size: on a later tree add
# MAMBAAD_DT_PROJ_TOKENS=einsum, and ss2d_module's first way is triton@MAMBAAD_SS2D_FUSED_SIDES=none.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
b=bf16+cl+graphs
{ t start; timeout 330 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+fusedat8+16+32,$b+fusedat8+16 --json $OUT/model.json; t done; } > $OUT/model.log 2>&1
{ t start; timeout 130 python benchmarks/ss2d_module.py --dtypes bf16 --profile 64 --json $OUT/module_bf16.json
  t bf16; left=$(( 570 - ($(date +%s) - s) )); timeout $left python benchmarks/ss2d_module.py --dtypes fp32 \
    --json $OUT/module_fp32.json; t fp32; } > $OUT/module.txt 2>&1
cd $OUT && tar czf all.tgz *
t end
