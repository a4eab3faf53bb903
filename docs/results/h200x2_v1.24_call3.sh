#!/usr/bin/env bash
# session 26 call 3 (x2 host): the real-data run as a user launches it on two GPUs (`mambaad train --gpus 2`,
# global batch 16), which in v1.23 showed two bugs fixed since on the CPU only (the scorer's capture, the exit
# delay), each output line stamped with its second; then v1.24's defaults under torchrun (DDP) at batch 16, 64.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
stamp() { while IFS= read -r l; do echo "$(( $(date +%s) - s )) $l"; done; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t "train start"; timeout -s INT 300 python -m mambaad_cli train --preset folder --data-root .devcarry/real-dev \
  --set model.encoder.name=tf_efficientnet_lite0 --set model.encoder.weights=bundled --epochs 80 --precision bf16 \
  --channels-last --set data.cache_images=true --set data.num_workers=8 --gpus 2 --output-dir runs \
  --run-name real-dev-2gpu 2>&1 | stamp; echo "rc ${PIPESTATUS[0]}"; t "train done"; } > $OUT/real_dev_2gpu.log 2>&1
d=runs/folder/real-dev-2gpu; cp $d/metrics.json $d/metrics.csv $d/log.csv $OUT/ 2>/dev/null; ls $d >> $OUT/real_dev_2gpu.log
left=$(( 560 - ($(date +%s) - s) ))
b=bf16+cl+graphs
{ t "ddp start"; timeout $left torchrun --standalone --nproc-per-node 2 benchmarks/model_throughput.py --backend triton \
  --steps 8 --variants $b --batch-size 16,64; t "ddp done"; } > $OUT/ddp.log 2>&1
