#!/usr/bin/env bash
# session 33 call 4 (one H200): v1.31's default (the fused SS2D core at maps of up to 32 x 32) against the
# fused core nowhere (v1.30's default), in the bf16 graphed model at batch 64, then the fp32 eager model (the
# paper's recipe) at batch 16, one process each.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
b=bf16+cl+graphs
{ t start; timeout 220 python benchmarks/model_throughput.py --backend triton --batch-size 64 --steps 6 \
    --variants $b,$b+fusedatnone --json $OUT/model_b64.json; t done; } > $OUT/model_b64.log 2>&1
left=$(( 370 - ($(date +%s) - s) ))
{ t start $left; timeout $left python benchmarks/model_throughput.py --backend triton --batch-size 16 \
    --steps 6 --variants fp32,fp32+fusedatnone --json $OUT/model_fp32.json; t done; } > $OUT/model_fp32.log 2>&1
cd $OUT && tar czf all.tgz *
t end
