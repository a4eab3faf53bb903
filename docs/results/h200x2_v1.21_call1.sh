#!/usr/bin/env bash
# session 23 call 1 (x2 host): v1.20's two untimed opt-ins (projconv, gemm1x1), each order on its own GPU
# with the defaults in the same process; then the real-data run on v1.20 (GPU 0) beside the GPU tests of
# the opt-ins (GPU 1).
# As run, its timing half failed at once ("timeout: failed to run command mt": a shell function cannot run
# under timeout); call 2 repeated it with the command in a variable. The real-data run and the tests ran.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
mt() { python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 --variants "$1"; }
b=bf16+cl+graphs
{ t start; CUDA_VISIBLE_DEVICES=0 timeout 330 mt $b,$b+projconv,$b+gemm1x1,$b+projconv+gemm1x1,$b; t done; } \
  > $OUT/gpu0_model.log 2>&1 &
p0=$!
{ t start; CUDA_VISIBLE_DEVICES=1 timeout 330 mt $b+projconv+gemm1x1,$b+gemm1x1,$b+projconv,$b,$b+projconv+gemm1x1; t done; } \
  > $OUT/gpu1_model.log 2>&1 &
p1=$!
wait $p0; wait $p1
left=$(( 540 - ($(date +%s) - s) ))
{ t "real-dev start"; CUDA_VISIBLE_DEVICES=0 timeout $left python benchmarks/real_dev.py --root .devcarry/real-dev \
  --epochs 80 --device cuda --precision bf16 --channels-last --cuda-graphs --cache-images --workers 8; t "real-dev done"; } \
  > $OUT/real_dev.log 2>&1 &
q0=$!
CUDA_VISIBLE_DEVICES=1 timeout -s INT $left python -m pytest -rfE --tb=short -q -p no:cacheprovider \
  tests/test_conv_bias.py tests/test_ss2d_proj_conv.py tests/test_norm_conv_bias.py tests/test_graphs.py \
  tests/test_training_weights.py tests/test_scoring_weights.py tests/test_branch_streams.py \
  > $OUT/pytest_gpu1.log 2>&1 &
q1=$!
wait $q0; echo "rc $? at $(( $(date +%s) - s )) s" >> $OUT/real_dev.log
wait $q1; echo "rc $? at $(( $(date +%s) - s )) s" >> $OUT/pytest_gpu1.log
