#!/usr/bin/env bash
# session 29 call 4 (the H200 of call 3, still held; the x2 host was not lent): v1.27 against v1.26's config
# space (+v126) in the model at batch 64, then the issue's table at batch 64 (`mambaad bench --scan hilbert
# --batch 64`) where call 3's build of selective_scan_cuda is still on the machine.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
{ ls /tmp/mamba_cuda/build 2>&1 | head -3; du -sh /tmp/tcache 2>&1; } > /tmp/state.txt
b=bf16+cl+graphs
{ t start; timeout 170 python benchmarks/model_throughput.py --backend triton --batch-size 64 --steps 8 \
    --variants $b,$b+v126,$b,$b+v126 --json $OUT/model64.json; t done; } > /tmp/model64.log 2>&1
left=$(( 440 - ($(date +%s) - s) ))
if [ -d /tmp/mamba_cuda/build ]; then
  { t start; echo "command: mambaad bench --scan hilbert --batch 64 --json bench64.json"
    PYTHONPATH=$PYTHONPATH:/tmp/mamba_cuda/build timeout $left python -m mambaad_cli bench --scan hilbert \
      --batch 64 --json $OUT/bench64.json; t done; } > $OUT/bench64.txt 2>&1
fi
cat /tmp/state.txt /tmp/model64.log > $OUT/logs.txt
