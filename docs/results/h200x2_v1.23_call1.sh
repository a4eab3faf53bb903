#!/usr/bin/env bash
# session 25 call 1 (x2 host): v1.23's candidates, one process per GPU in opposite orders, each against the
# defaults in the same process (now: cosine kernel on the model's maps + Triton stem max pool); then profiles
# of a graphed batch-16 step (defaults on GPU 0, gemmall+lnshuffle on GPU 1), the max pool bench and the
# touched tests on GPU 0.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
mt="python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 --variants"
b=bf16+cl+graphs
v0=$b,$b+v122,$b+torchpool,$b+gemmall,$b+lnshuffle,$b+gemmall+lnshuffle,$b,$b+v122
v1=$b+v122,$b,$b+gemmall+lnshuffle,$b+lnshuffle,$b+gemmall,$b+torchpool,$b+v122,$b
{ t start; CUDA_VISIBLE_DEVICES=0 TRITON_CACHE_DIR=/tmp/tc0 timeout 380 $mt $v0; t done; } > $OUT/gpu0_model.log 2>&1 &
p0=$!
{ t start; CUDA_VISIBLE_DEVICES=1 TRITON_CACHE_DIR=/tmp/tc1 timeout 380 $mt $v1; t done; } > $OUT/gpu1_model.log 2>&1 &
p1=$!
wait $p0; wait $p1
left=$(( 480 - ($(date +%s) - s) ))
prof() {  # $1 gpu, $2 variant, $3 tag
  CUDA_VISIBLE_DEVICES=$1 TRITON_CACHE_DIR=/tmp/tc$1 timeout $left python benchmarks/model_throughput.py --backend triton \
    --batch-size 16 --steps 2 --variants $2 --profile $2 --profile-phases train,infer --trace /tmp/tr_$3_{phase}.json \
    > /tmp/prof_$3.log 2>&1
  for ph in train infer; do python benchmarks/trace_gaps.py /tmp/tr_$3_$ph.json --top 45 | tail -62; done >> /tmp/prof_$3.log 2>&1
  cp /tmp/prof_$3.log $OUT/
}
prof 0 $b defaults & q0=$!
prof 1 $b+gemmall+lnshuffle optins & q1=$!
wait $q0; wait $q1; t profiles >> $OUT/gpu0_model.log
CUDA_VISIBLE_DEVICES=0 TRITON_CACHE_DIR=/tmp/tc0 timeout 40 python benchmarks/max_pool_bench.py --batch 16 64 \
  > $OUT/max_pool_bench.log 2>&1
left=$(( 570 - ($(date +%s) - s) ))
pt="python -m pytest -q -rfE --tb=short -p no:cacheprovider"
{ CUDA_VISIBLE_DEVICES=0 TRITON_CACHE_DIR=/tmp/tc0 timeout -s INT $left $pt tests/test_max_pool.py \
    tests/test_cosine_distance.py tests/test_layer_norm.py tests/test_conv_bias.py tests/test_encoder_fold.py \
    tests/test_model.py; t tests; } > $OUT/pytest.log 2>&1
