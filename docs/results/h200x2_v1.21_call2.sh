#!/usr/bin/env bash
# session 23 call 2 (x2 host): v1.20's two untimed opt-ins (projconv, gemm1x1), the two orders on the two
# GPUs at once, each with the defaults in the same process; then a profile + trace of the defaults' graphed
# batch-16 step (GPU 0) and of the projconv+gemm1x1 one (GPU 1).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
mt="python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 --variants"
b=bf16+cl+graphs
{ t start; CUDA_VISIBLE_DEVICES=0 timeout 360 $mt $b,$b+projconv,$b+gemm1x1,$b+projconv+gemm1x1,$b; t done; } \
  > $OUT/gpu0_model.log 2>&1 &
p0=$!
{ t start; CUDA_VISIBLE_DEVICES=1 timeout 360 $mt $b+projconv+gemm1x1,$b+gemm1x1,$b+projconv,$b,$b+projconv+gemm1x1; t done; } \
  > $OUT/gpu1_model.log 2>&1 &
p1=$!
wait $p0; wait $p1
left=$(( 530 - ($(date +%s) - s) ))
prof() {  # $1 gpu, $2 variant, $3 tag
  CUDA_VISIBLE_DEVICES=$1 timeout $left python benchmarks/model_throughput.py --backend triton --batch-size 16 \
    --steps 2 --variants $2 --profile $2 --profile-phases train,infer --trace /tmp/tr_$3_{phase}.json > /tmp/prof_$3.log 2>&1
  for ph in train infer; do python benchmarks/trace_gaps.py /tmp/tr_$3_$ph.json --top 40 | tail -60; done >> /tmp/prof_$3.log 2>&1
  cp /tmp/prof_$3.log $OUT/
}
prof 0 $b defaults & q0=$!
prof 1 $b+projconv+gemm1x1 optins & q1=$!
wait $q0; wait $q1; t end >> $OUT/gpu0_model.log
