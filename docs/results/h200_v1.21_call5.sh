#!/usr/bin/env bash
# session 23 call 5 (one H200): the real-data run on v1.21's defaults, alone on the GPU
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site TRITON_CACHE_DIR=/tmp/tcache
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
timeout -s INT 270 python benchmarks/real_dev.py --root .devcarry/real-dev --epochs 80 --device cuda --precision bf16 \
  --channels-last --cuda-graphs --cache-images --workers 8 > $OUT/real_dev.log 2>&1
echo "rc $?" >> $OUT/real_dev.log
cp runs/folder/real-dev/*.json runs/folder/real-dev/*.csv $OUT/ 2>/dev/null; ls runs/folder/real-dev >> $OUT/real_dev.log
