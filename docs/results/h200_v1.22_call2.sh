#!/usr/bin/env bash
# session 24 call 2 (one H200: the x2 host was not lent): v1.22's defaults (PatchExpand2D's norm in the Triton
# kernels) against v1.21's and the untimed in_proj halves, in one process, both orders; fp32 eager (the
# paper's recipe) in the same process; then the touched tests.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl
export PYTHONPATH=$PWD:/tmp/site TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
mt="python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 --variants"
b=bf16+cl+graphs
{ t start; timeout 430 $mt $b,$b+inhalves,$b+v121,$b,$b+v121,$b+inhalves,fp32; t done; } > $OUT/model.log 2>&1
left=$(( 560 - ($(date +%s) - s) ))
pt="python -m pytest -q -rfE --tb=short -p no:cacheprovider"
{ timeout -s INT $left $pt tests/test_in_proj.py tests/test_layer_norm.py tests/test_model.py tests/test_graphs.py \
    tests/test_training_weights.py tests/test_scoring_weights.py; t tests; } > $OUT/pytest.log 2>&1
