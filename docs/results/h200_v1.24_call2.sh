#!/usr/bin/env bash
# session 26 call 2 (one H200): v1.24's defaults (the lane kernels' state split, auto) against v1.23's
# kernels (+v123) in one process at batch 16 and 64; the real-data run on v1.24's defaults; the GPU tests.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
b=bf16+cl+graphs
{ t start; timeout 290 python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 \
    --variants $b,$b+v123,$b,$b+v123; t done; } > $OUT/model.log 2>&1
left=$(( 510 - ($(date +%s) - s) ))
timeout -s INT $left python benchmarks/real_dev.py --root .devcarry/real-dev --epochs 80 --device cuda --precision bf16 \
  --channels-last --cuda-graphs --cache-images --workers 8 > $OUT/real_dev.log 2>&1
echo "rc $?" >> $OUT/real_dev.log; t real_dev >> $OUT/real_dev.log
cp runs/folder/real-dev/*.json runs/folder/real-dev/*.csv $OUT/ 2>/dev/null; ls runs/folder/real-dev >> $OUT/real_dev.log
left=$(( 588 - ($(date +%s) - s) ))
{ timeout -s INT $left python -m pytest -q -rfE --tb=short -p no:cacheprovider tests/test_triton_scan.py \
    -k "eight_states or split_knob or bf16 or auto"; t tests; } > $OUT/pytest.log 2>&1
