#!/usr/bin/env bash
# (PREFETCH 5 and 3 were level or lower and were removed after the call, with their variants +bwdpf5only
# and +fwdpf3; kernels/NOTES.md v1.25)
# session 27 call 3 (one H200): v1.25's lane backward space (PREFETCH 4) against v1.24's, and two L1 prefetch
# variants (the backward's next block: PREFETCH 5; the forward's: PREFETCH 3) in one process at batch 16;
# then mamba_ssm's selective_scan_cuda built for sm_90 (sdist copied into .devcarry) and the table,
# `mambaad bench --scan hilbert --batch 16`, against it.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
b=bf16+cl+graphs
{ t start; timeout 250 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+v124,$b+bwdpf5only,$b+fwdpf3,$b,$b+v124,$b+bwdpf5only --json $OUT/model.json; t done; } \
    > $OUT/model.log 2>&1
{ t start; MAX_JOBS=16 timeout 200 python benchmarks/build_mamba_cuda.py --sdist .devcarry/mamba_ssm-2.3.2.post1.tar.gz \
    --out /tmp/mamba_cuda; t built; } > $OUT/build.log 2>&1
left=$(( 575 - ($(date +%s) - s) ))
{ t start; echo "command: mambaad bench --scan hilbert --batch 16 --json bench16.json"
  PYTHONPATH=$PYTHONPATH:/tmp/mamba_cuda/build timeout $left python -m mambaad_cli bench --scan hilbert --batch 16 \
    --json $OUT/bench16.json; t done; } > $OUT/bench16.txt 2>&1
