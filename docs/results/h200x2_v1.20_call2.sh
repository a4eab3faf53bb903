#!/usr/bin/env bash
# session 22 call 2 (x2 host): GPU 0 times v1.20's defaults (bias+SiLU pass and B / C views on) against
# v1.19's and the LSS 1x1 convs without their cancelled bias, then runs test_triton_scan; GPU 1 runs the
# rest of the suite (test_distributed first, with tracebacks).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
pt() { timeout -s INT $(( 548 - ($(date +%s) - s) )) python -m pytest -rfE --tb=short -q -p no:cacheprovider "$@"; }
{
  t start
  CUDA_VISIBLE_DEVICES=0 python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 \
    --variants bf16+cl+graphs,bf16+cl+graphs+v119,bf16+cl+graphs+normbias,bf16+cl+graphs
  t "model done"
  CUDA_VISIBLE_DEVICES=0 pt tests/test_triton_scan.py tests/test_norm_conv_bias.py tests/test_bias_silu.py
  echo "pytest rc $? at $(( $(date +%s) - s )) s"
} > $OUT/gpu0.log 2>&1 &
p0=$!
{
  t start
  CUDA_VISIBLE_DEVICES=1 OMP_NUM_THREADS=8 pt tests/test_distributed.py
  echo "pytest rc $? at $(( $(date +%s) - s )) s"
  CUDA_VISIBLE_DEVICES=1 OMP_NUM_THREADS=8 pt --ignore=tests/test_triton_scan.py --ignore=tests/test_distributed.py \
    --ignore=tests/test_norm_conv_bias.py --ignore=tests/test_bias_silu.py tests
  echo "pytest rc $? at $(( $(date +%s) - s )) s"
} > $OUT/gpu1.log 2>&1 &
p1=$!
wait $p0; wait $p1
