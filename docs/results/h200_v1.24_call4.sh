#!/usr/bin/env bash
# session 26 call 4 (one H200): the GPU tests of the files v1.24 touched (scan kernels, direction glue, SS2D)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ timeout -s INT 270 python -m pytest -q -rfE --tb=short -p no:cacheprovider tests/test_directions_glue.py tests/test_model.py \
    tests/test_triton_scan.py -k "lanes or glue or ss2d or fused or test_model"; t tests; } > $OUT/pytest.log 2>&1
