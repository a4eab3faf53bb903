#!/usr/bin/env bash
# session 33 call 3 (one H200): v1.31's default, the fused SS2D core at maps of up to 32 x 32 in bf16
# (hss._fused_core) with dt_proj's products per (batch, direction), against the fused core nowhere (v1.30's
# default) and everywhere, in the model at batch 16 (bf16, channels-last, CUDA graphs), one process; then the
# SS2D module per stage: default order, fused core, fused core with v1.30's dt_proj einsum; bf16 and fp32.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
b=bf16+cl+graphs
{ t start; timeout 330 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+fusedatnone,$b+fusedat8+16+32+64 --json $OUT/model.json; t done; } > $OUT/model.log 2>&1
WAYS="triton@MAMBAAD_SS2D_FUSED_SIDES=none,triton-fused,triton-fused@MAMBAAD_DT_PROJ_TOKENS=einsum"
{ t start; timeout 100 python benchmarks/ss2d_module.py --dtypes bf16 --ways "$WAYS" --json $OUT/module_bf16.json
  t bf16; left=$(( 575 - ($(date +%s) - s) )); timeout $left python benchmarks/ss2d_module.py --dtypes fp32 \
    --ways "$WAYS" --json $OUT/module_fp32.json; t fp32; } > $OUT/module.txt 2>&1
cd $OUT && tar czf all.tgz *
t end
