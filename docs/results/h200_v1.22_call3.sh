#!/usr/bin/env bash
# session 24 call 3 (one H200): v1.22's in_proj (halves in scoring) against halves in training too (now through
# one stack) and never, one process; then the real-data run on v1.22's defaults, alone on the GPU.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
mt="python benchmarks/model_throughput.py --backend triton --batch-size 16,64 --steps 8 --variants"
b=bf16+cl+graphs
{ t start; timeout 250 $mt $b,$b+inhalves,$b+inchunk,$b; t done; } > $OUT/model.log 2>&1
left=$(( 570 - ($(date +%s) - s) ))
timeout -s INT $left python benchmarks/real_dev.py --root .devcarry/real-dev --epochs 80 --device cuda --precision bf16 \
  --channels-last --cuda-graphs --cache-images --workers 8 > $OUT/real_dev.log 2>&1
echo "rc $?" >> $OUT/real_dev.log; t real_dev >> $OUT/real_dev.log
cp runs/folder/real-dev/*.json runs/folder/real-dev/*.csv $OUT/ 2>/dev/null; ls runs/folder/real-dev >> $OUT/real_dev.log
