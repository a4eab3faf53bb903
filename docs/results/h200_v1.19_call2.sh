#!/usr/bin/env bash
# session 21 call 2: instance norm kernels (v1.19 tree, row targets; v1.18 tree), bias-grad reductions,
# model throughput v1.19 defaults / norm256 / v1.18 tree at batch 16 and 64; GPU tests of the changed parts
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl
export NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
NEW=$PWD; OLD=$PWD/.devcarry/old
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
{
for mp in 0 512 1024 2048; do t "norm new MIN_PROGRAMS=$mp"
  for b in 16 64; do MAMBAAD_NORM_MIN_PROGRAMS=$mp PYTHONPATH=$NEW:/tmp/site python benchmarks/norm_bench.py --batch $b --dtypes bfloat16; done
done
t "norm old"; cd $OLD
for b in 16 64; do PYTHONPATH=$OLD:/tmp/site python benchmarks/norm_bench.py --batch $b --dtypes bfloat16; done
cd $NEW; t "bias grad"
PYTHONPATH=$NEW:/tmp/site python benchmarks/bias_grad_bench.py --batch 16
t done
} > $OUT/micro.log 2>&1
{
t "model new"
PYTHONPATH=$NEW:/tmp/site python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 \
  --variants bf16+cl+graphs,bf16+cl+graphs+norm256,bf16+cl+graphs+notrainw
t "model old"; cd $OLD
PYTHONPATH=$OLD:/tmp/site python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 \
  --variants bf16+cl+graphs
cd $NEW; t "model new again"
PYTHONPATH=$NEW:/tmp/site python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 \
  --variants bf16+cl+graphs
t done
} > $OUT/model.log 2>&1
left=$(( 575 - ($(date +%s) - s) ))
PYTHONPATH=$NEW:/tmp/site timeout -s INT $left python -m pytest -rf --tb=short -q -p no:cacheprovider \
  tests/test_instance_norm.py tests/test_training_weights.py > $OUT/pytest.log 2>&1
echo "pytest rc $? at $(( $(date +%s) - s )) s" >> $OUT/pytest.log
