#!/usr/bin/env bash
# session 22 call 1 (x2 host): v1.19's two untimed opt-ins and the norm512 knob, two processes at once
# (each with the defaults before and after in the same process); then 2-GPU DDP scaling of the v1.19
# defaults; then the GPU test suite split over the two GPUs.
# (run on the v1.19 tree, 8029975; its variants +biassilu / +bcviews were renamed in v1.20: the
# defaults now, and +nobiassilu / +nobcviews / +v119 turn them off)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
mt() { python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 --variants "$1"; }
{ t start; CUDA_VISIBLE_DEVICES=0 mt bf16+cl+graphs,bf16+cl+graphs+biassilu,bf16+cl+graphs+bcviews,bf16+cl+graphs; t done; } \
  > $OUT/gpu0_model.log 2>&1 &
p0=$!
{ t start; CUDA_VISIBLE_DEVICES=1 mt bf16+cl+graphs,bf16+cl+graphs+biassilu+bcviews,bf16+cl+graphs+norm512,bf16+cl+graphs; t done; } \
  > $OUT/gpu1_model.log 2>&1 &
p1=$!
wait $p0; wait $p1
{ t "ddp start"; timeout 150 torchrun --standalone --nproc-per-node 2 benchmarks/model_throughput.py --backend triton \
  --steps 8 --variants bf16+cl+graphs --batch-size 64,16; t "ddp done"; } > $OUT/ddp.log 2>&1
left=$(( 545 - ($(date +%s) - s) ))
CUDA_VISIBLE_DEVICES=0 timeout -s INT $left python -m pytest -rf --tb=short -q -p no:cacheprovider \
  tests/test_bias_silu.py tests/test_scan_bc_views.py tests/test_conv_bias.py tests/test_triton_scan.py \
  > $OUT/pytest_gpu0.log 2>&1 &
q0=$!
CUDA_VISIBLE_DEVICES=1 timeout -s INT $left python -m pytest -rf --tb=short -q -p no:cacheprovider \
  --ignore=tests/test_triton_scan.py --ignore=tests/test_bias_silu.py --ignore=tests/test_scan_bc_views.py \
  --ignore=tests/test_conv_bias.py tests > $OUT/pytest_gpu1.log 2>&1 &
q1=$!
wait $q0; echo "rc $? at $(( $(date +%s) - s )) s" >> $OUT/pytest_gpu0.log
wait $q1; echo "rc $? at $(( $(date +%s) - s )) s" >> $OUT/pytest_gpu1.log
