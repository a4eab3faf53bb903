#!/usr/bin/env bash
# session 32 call 2 (one H200): the model at batch 16 (bf16, channels-last, CUDA graphs) with the plain path
# (glue + scan, the default) and with the fused SS2D core after call 1's change, in one process; then each
# one's training step profiled (eager, torch.profiler kernel tables) to see where the fused one loses.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
b=bf16+cl+graphs
{ t start; timeout 330 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+fused --json $OUT/model.json; t done; } > $OUT/model.log 2>&1
for v in bf16+cl+fused bf16+cl; do
  left=$(( 560 - ($(date +%s) - s) ))
  { t start $v $left; timeout $(( left / 2 )) python benchmarks/model_throughput.py --backend triton \
      --batch-size 16 --variants "" --profile $v --profile-phases train; t done; } > $OUT/profile_$v.txt 2>&1
done
cd $OUT && tar czf all.tgz *
t end
