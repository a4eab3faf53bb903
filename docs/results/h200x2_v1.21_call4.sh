#!/usr/bin/env bash
# session 23 call 4 (x2 host): v1.21's defaults (1x1 convs as GEMMs, dt_proj's rank padded to 8) against
# v1.20's (+v120), both orders on the two GPUs at once; then 2-GPU DDP of v1.21; then the GPU tests of the
# changed parts split over the two GPUs.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
mt="python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 --variants"
b=bf16+cl+graphs
{ t start; CUDA_VISIBLE_DEVICES=0 timeout 200 $mt $b,$b+v120,$b; t done; } > $OUT/gpu0_model.log 2>&1 &
p0=$!
{ t start; CUDA_VISIBLE_DEVICES=1 timeout 200 $mt $b+v120,$b,$b+v120; t done; } > $OUT/gpu1_model.log 2>&1 &
p1=$!
wait $p0; wait $p1
{ t "ddp start"; timeout 150 torchrun --standalone --nproc-per-node 2 benchmarks/model_throughput.py --backend triton \
  --steps 8 --variants $b --batch-size 64,16; t "ddp done"; } > $OUT/ddp.log 2>&1
left=$(( 500 - ($(date +%s) - s) ))
CUDA_VISIBLE_DEVICES=0 timeout -s INT $left python -m pytest -rfE --tb=short -q -p no:cacheprovider \
  tests/test_dt_proj.py tests/test_conv_bias.py tests/test_graphs.py tests/test_scoring_weights.py \
  > $OUT/pytest_gpu0.log 2>&1 &
q0=$!
CUDA_VISIBLE_DEVICES=1 timeout -s INT $left python -m pytest -rfE --tb=short -q -p no:cacheprovider \
  tests/test_training_weights.py tests/test_model.py tests/test_norm_conv_bias.py tests/test_branch_streams.py \
  > $OUT/pytest_gpu1.log 2>&1 &
q1=$!
wait $q0; echo "rc $? at $(( $(date +%s) - s )) s" >> $OUT/pytest_gpu0.log
wait $q1; echo "rc $? at $(( $(date +%s) - s )) s" >> $OUT/pytest_gpu1.log
