#!/usr/bin/env bash
# session 24 call 1 (x2 host): three untimed opt-ins (gemmbwd, lnexpand, dtrows) and gemmbwd+lnexpand, the two
# orders on the two GPUs at once, each with the defaults in the same process; then the 1x1 backward bench
# (GPU 0) and the touched tests (GPU 1).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
mt="python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 --variants"
b=bf16+cl+graphs
{ t start; CUDA_VISIBLE_DEVICES=0 timeout 400 $mt $b,$b+gemmbwd,$b+lnexpand,$b+dtrows,$b+gemmbwd+lnexpand,$b; t done; } \
  > $OUT/gpu0_model.log 2>&1 &
p0=$!
{ t start; CUDA_VISIBLE_DEVICES=1 timeout 400 $mt $b+gemmbwd+lnexpand,$b+dtrows,$b+lnexpand,$b+gemmbwd,$b,$b+gemmbwd+lnexpand; t done; } \
  > $OUT/gpu1_model.log 2>&1 &
p1=$!
wait $p0; wait $p1
left=$(( 540 - ($(date +%s) - s) ))
{ CUDA_VISIBLE_DEVICES=0 timeout $left python benchmarks/conv1x1_bwd_bench.py --batch 16,64; t bench; } > $OUT/conv1x1_bwd.jsonl.log 2>&1 &
q0=$!
{ CUDA_VISIBLE_DEVICES=1 timeout -s INT $left python -m pytest -q -rfE --tb=short -p no:cacheprovider \
    tests/test_conv_bias.py tests/test_layer_norm.py tests/test_dt_proj.py tests/test_model.py; t tests; } \
  > $OUT/pytest.log 2>&1 &
q1=$!
wait $q0; wait $q1
