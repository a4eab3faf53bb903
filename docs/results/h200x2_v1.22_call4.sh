#!/usr/bin/env bash
# session 24 call 4 (x2 host): v1.22's defaults on the two GPUs at once (one process each, v1.21's in the same
# process), then both GPUs under torchrun (DDP, v1.22's defaults)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
mt="python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 --variants"
b=bf16+cl+graphs
{ t start; CUDA_VISIBLE_DEVICES=0 timeout 200 $mt $b,$b+v121,$b; t done; } > $OUT/gpu0_model.log 2>&1 &
p0=$!
{ t start; CUDA_VISIBLE_DEVICES=1 timeout 200 $mt $b+v121,$b,$b+v121; t done; } > $OUT/gpu1_model.log 2>&1 &
p1=$!
wait $p0; wait $p1
{ t "ddp start"; timeout 180 torchrun --standalone --nproc-per-node 2 benchmarks/model_throughput.py --backend triton \
  --steps 8 --variants $b --batch-size 64,16; t "ddp done"; } > $OUT/ddp.log 2>&1
