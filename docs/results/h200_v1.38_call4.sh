#!/usr/bin/env bash
# session 40 call 4 (one H200): the model at batch 64 with v1.38's defaults against v1.37's lane forward rules
# (+v137: no pairs, and fp32's lane kernels from 128 steps), fp32 and channels-last bf16, CUDA graphs, each
# dtype in one process (benchmarks/model_throughput.py).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; timeout 290 python benchmarks/model_throughput.py --backend triton --batch-size 64 --steps 8 \
    --variants fp32+graphs,fp32+graphs+v137 --json $OUT/model_b64_fp32.json; t done; } > $OUT/model_fp32.log 2>&1
tail -6 $OUT/model_fp32.log
{ t start; timeout $(( 585 - ($(date +%s) - s) )) python benchmarks/model_throughput.py --backend triton \
    --batch-size 64 --steps 8 --variants bf16+cl+graphs,bf16+cl+graphs+v137 --json $OUT/model_b64_bf16.json; t done
} > $OUT/model_bf16.log 2>&1
tail -6 $OUT/model_bf16.log
t end
