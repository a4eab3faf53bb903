#!/usr/bin/env bash
# session 21 call 3: v1.19 (trainw + norm kernels + conv bias product) against its bias knob and the v1.18
# tree, batch 16 and 64; then the GPU tests of the changed parts
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl
export NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
NEW=$PWD; OLD=$PWD/.devcarry/old
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{
t "model new"
PYTHONPATH=$NEW:/tmp/site python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 \
  --variants bf16+cl+graphs,bf16+cl+graphs+biassum,bf16+cl+graphs
t "model old (v1.18 tree)"; cd $OLD
PYTHONPATH=$OLD:/tmp/site python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 \
  --variants bf16+cl+graphs
cd $NEW; t done
} > $OUT/model.log 2>&1
left=$(( 425 - ($(date +%s) - s) ))
PYTHONPATH=$NEW:/tmp/site timeout -s INT $left python -m pytest -rf --tb=short -q -p no:cacheprovider \
  tests/test_conv_bias.py tests/test_training_weights.py tests/test_branch_streams.py tests/test_instance_norm.py \
  > $OUT/pytest.log 2>&1
echo "pytest rc $? at $(( $(date +%s) - s )) s" >> $OUT/pytest.log
