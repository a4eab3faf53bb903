#!/usr/bin/env bash
# session 37 call 8 (one H200): the model with the lane backward's step shares on by default (v1.35, where the
# backward splits a channel's states: the 64 x 64 maps' unfused scan at batch 16) against off (v1.34),
# bf16, channels-last, CUDA graphs, batch 16, one process.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
b=bf16+cl+graphs
{ t start; timeout 225 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+nobwdshares --json $OUT/model.json; t done; } > $OUT/model.log 2>&1
cd $OUT && tar czf all.tgz *
t end
