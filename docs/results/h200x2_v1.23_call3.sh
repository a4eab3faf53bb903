#!/usr/bin/env bash
# session 25 call 3 (x2 host): v1.23's defaults on both GPUs under torchrun (DDP, model_throughput), then the
# real-data run as a user would launch it on two GPUs: `mambaad train --gpus 2` (global batch 16: 8 a GPU).
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
b=bf16+cl+graphs
{ t "ddp start"; timeout 170 torchrun --standalone --nproc-per-node 2 benchmarks/model_throughput.py --backend triton \
  --steps 8 --variants $b --batch-size 64,16; t "ddp done"; } > $OUT/ddp.log 2>&1
left=$(( 410 - ($(date +%s) - s) ))
{ t "train start"; timeout -s INT $left python -m mambaad_cli train --preset folder --data-root .devcarry/real-dev \
  --set model.encoder.name=tf_efficientnet_lite0 --set model.encoder.weights=bundled --epochs 80 --precision bf16 \
  --channels-last --set data.cache_images=true --set data.num_workers=8 --gpus 2 --output-dir runs \
  --run-name real-dev-2gpu; echo "rc $?"; t "train done"; } > $OUT/real_dev_2gpu.log 2>&1
d=runs/folder/real-dev-2gpu; cp $d/metrics.json $d/metrics.csv $d/log.csv $OUT/ 2>/dev/null; ls $d >> $OUT/real_dev_2gpu.log
