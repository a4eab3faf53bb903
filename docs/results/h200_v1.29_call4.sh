#!/usr/bin/env bash
# session 31 call 4 (call 3's H200, still held): the model at batch 16 with v1.29's lane forward space
# (PREFETCH 6 and 8-step blocks with 4) against the same tree with v1.28's space (+v128fwd), one process.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site TRITON_CACHE_DIR=/tmp/tcache
b=bf16+cl+graphs
timeout 270 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
  --variants $b,$b+v128fwd --json $OUT/model.json
