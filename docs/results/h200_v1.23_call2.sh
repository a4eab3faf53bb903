#!/usr/bin/env bash
# session 25 call 2 (one H200): v1.23's defaults against v1.22's and fp32 eager (the paper's recipe) in one
# process; the real-data run on v1.23's defaults, alone on the GPU; then the tests of the new defaults.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
mt="python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 --variants"
b=bf16+cl+graphs
{ t start; timeout 260 $mt $b,$b+v122,$b,fp32; t done; } > $OUT/model.log 2>&1
left=$(( 500 - ($(date +%s) - s) ))
timeout -s INT $left python benchmarks/real_dev.py --root .devcarry/real-dev --epochs 80 --device cuda --precision bf16 \
  --channels-last --cuda-graphs --cache-images --workers 8 > $OUT/real_dev.log 2>&1
echo "rc $?" >> $OUT/real_dev.log; t real_dev >> $OUT/real_dev.log
cp runs/folder/real-dev/*.json runs/folder/real-dev/*.csv $OUT/ 2>/dev/null; ls runs/folder/real-dev >> $OUT/real_dev.log
left=$(( 575 - ($(date +%s) - s) ))
pt="python -m pytest -q -rfE --tb=short -p no:cacheprovider"
{ timeout -s INT $left $pt tests/test_conv_bias.py tests/test_layer_norm.py tests/test_model.py tests/test_graphs.py \
    tests/test_scoring_weights.py tests/test_norm_conv_bias.py; t tests; } > $OUT/pytest.log 2>&1
