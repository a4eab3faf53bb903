#!/usr/bin/env bash
# session 21 call 1: trainw timing at b16 (ABAB in one process), a timeline of the graphed b16 step,
# then the GPU tests not yet run on a GPU
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $OUT/gpu.txt
s=$(date +%s)
V=bf16+cl+graphs; T=bf16+cl+graphs+trainw
timeout 300 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
  --variants $V,$T,$V,$T --profile $V --profile-phases train,infer --trace $OUT/trace_{phase}.json \
  > $OUT/bench.log 2>&1
echo "bench rc $? in $(( $(date +%s) - s )) s" >> $OUT/bench.log
gzip -f $OUT/trace_*.json
for f in $OUT/trace_*.json.gz; do python benchmarks/trace_gaps.py $f --top 45 > ${f%.json.gz}_gaps.txt 2>&1; done
left=$(( 560 - ($(date +%s) - s) ))
echo "pytest budget $left s" > $OUT/pytest.log
timeout -s INT $left python -m pytest -rf --tb=short -q -p no:cacheprovider --durations=15 \
  tests/test_training_weights.py tests/test_branch_streams.py tests/test_ddp_graphs.py \
  tests/test_visualize.py tests/test_triton_scan.py >> $OUT/pytest.log 2>&1
echo "pytest rc $? at $(( $(date +%s) - s )) s" >> $OUT/pytest.log
