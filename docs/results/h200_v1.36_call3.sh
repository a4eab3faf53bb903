#!/usr/bin/env bash
# session 38 call 3 (one H200): the model with v1.35's defaults where it had not been timed: batch 64 in bf16
# (against v1.33's lane forward, +v133fwd, and with the opt-in two channel sets a lane, +pairs), then fp32
# at batch 16 (against +v133fwd); channels-last bf16 / fp32, CUDA graphs, one process each.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
b=bf16+cl+graphs
{ t start; timeout 330 python benchmarks/model_throughput.py --backend triton --batch-size 64 --steps 8 \
    --variants $b,$b+v133fwd,$b+pairs --json $OUT/model_b64_bf16.json; t done; } > $OUT/model_b64.log 2>&1
{ t start; timeout $(( 575 - ($(date +%s) - s) )) python benchmarks/model_throughput.py --backend triton \
    --batch-size 16 --steps 8 --variants fp32+graphs,fp32+graphs+v133fwd --json $OUT/model_b16_fp32.json; t done; } \
  > $OUT/model_fp32.log 2>&1
cd $OUT && tar czf all.tgz *
t end
