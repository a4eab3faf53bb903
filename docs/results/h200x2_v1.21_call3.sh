#!/usr/bin/env bash
# session 23 call 3 (x2 host): dt_proj's low-rank product (benchmarks/lowrank_proj_bench.py), then the model
# with v1.21's gemm1x1 default against v1.20's (+nogemm1x1) and the two dt_proj opt-ins, both orders on the
# two GPUs at once; then the GPU tests of the changed parts split over the two GPUs.
# (run on the tree before dt_proj's padding became the default: its +dtkmajor / +dtpad8 variants were removed
# after it; +nodtpad and +v120 turn the v1.21 defaults off)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
mt="python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 --variants"
b=bf16+cl+graphs
{ t start; CUDA_VISIBLE_DEVICES=0 timeout 120 python benchmarks/lowrank_proj_bench.py --batch 16,64; t bench done; } \
  > $OUT/lowrank.log 2>&1
{ t start; CUDA_VISIBLE_DEVICES=0 timeout 240 $mt $b,$b+nogemm1x1,$b+dtkmajor,$b+dtpad8,$b; t done; } \
  > $OUT/gpu0_model.log 2>&1 &
p0=$!
{ t start; CUDA_VISIBLE_DEVICES=1 timeout 240 $mt $b+dtpad8,$b+dtkmajor,$b+nogemm1x1,$b,$b+dtpad8; t done; } \
  > $OUT/gpu1_model.log 2>&1 &
p1=$!
wait $p0; wait $p1
left=$(( 520 - ($(date +%s) - s) ))
CUDA_VISIBLE_DEVICES=0 timeout -s INT $left python -m pytest -rfE --tb=short -q -p no:cacheprovider \
  tests/test_conv_bias.py tests/test_dt_proj.py tests/test_norm_conv_bias.py tests/test_graphs.py \
  tests/test_scoring_weights.py > $OUT/pytest_gpu0.log 2>&1 &
q0=$!
CUDA_VISIBLE_DEVICES=1 timeout -s INT $left python -m pytest -rfE --tb=short -q -p no:cacheprovider \
  tests/test_training_weights.py tests/test_branch_streams.py tests/test_model.py \
  > $OUT/pytest_gpu1.log 2>&1 &
q1=$!
wait $q0; echo "rc $? at $(( $(date +%s) - s )) s" >> $OUT/pytest_gpu0.log
wait $q1; echo "rc $? at $(( $(date +%s) - s )) s" >> $OUT/pytest_gpu1.log
