#!/usr/bin/env bash
# session 29 call 2 (one H200): the lane backward's B / C rows carried a state ahead in their own dtype
# (PREFETCH 5), with an L1 prefetch two states ahead (6), and with the block's loads a chunk ahead (7),
# against PREFETCH 4: at the scan's level (bf16, against v1.26's kernels in .devcarry/prev; and the lane
# forward pinned at 8- or 16-step blocks, for its inference picks) and in the model at batch 16, then Nsight
# Compute's stall samples at 1024 x 4096 with each new config pinned. Results are packed into one tar (the
# device returns a few files only).
# (ran on the v1.27pre tree: PREFETCH 6 and 7 and the +bwdpf5/6/7 variants were removed after this call,
# 5 became the default, +v126 is v1.26's space; kernels/NOTES.md v1.27 section 2)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
R=/tmp/res; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version --format=csv > $R/gpu.txt
P=LANE_BWD_CONFIGS=32:1:3:1:16
CONFIGS="auto;$P:4;$P:5;$P:6;$P:7;INFER_CKPT=0&LANE_CONFIGS=32:1:3:1:8:0;INFER_CKPT=0&LANE_CONFIGS=32:1:3:1:16:0"
SHAPES=1024:4096,2048:1024,4096:256,8192:64
{ t start; IFS=';' read -ra entries <<< "$CONFIGS"
  for e in "${entries[@]}"; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels \
      --shapes $SHAPES --dtypes bfloat16 --check-only --configs "$e" > $R/warm_$(echo $e | tr -c 'a-z0-9\n' _).log 2>&1 &
  done
  for pf in 5 6 7; do
    MAMBAAD_SCAN_LANE_BWD_CONFIGS=32:1:3:1:16:$pf timeout 200 python benchmarks/scan_ncu.py --dim 1024 \
      --length 4096 --dtype bf16 --rounds 1 > /dev/null 2>&1 &
  done; wait; t warm; } > $R/warm.log 2>&1
b=bf16+cl+graphs
{ t start; timeout 300 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+bwdpf5,$b+bwdpf6,$b+bwdpf7,$b,$b+bwdpf5,$b+bwdpf6,$b+bwdpf7 --json $R/model.json; t done; } \
    > $R/model.log 2>&1
{ t start; timeout 120 python benchmarks/scan_ab.py --baseline .devcarry/prev/kernels --shapes $SHAPES \
    --dtypes bfloat16 --json $R/scan_ab.json --configs "$CONFIGS"; t done; } > $R/scan_ab.log 2>&1
for pf in 5 6 7; do
  { t start $pf; MAMBAAD_SCAN_LANE_BWD_CONFIGS=32:1:3:1:16:$pf timeout 60 ncu --clock-control none \
      --kernel-name regex:_scan_bwd_lane --launch-skip 1 --launch-count 1 --set full --import-source yes \
      -o /tmp/lane_bwd_pf$pf python benchmarks/scan_ncu.py --dim 1024 --length 4096 --dtype bf16 --rounds 2
    t done; } > $R/ncu_pf$pf.log 2>&1
  timeout 30 ncu -i /tmp/lane_bwd_pf$pf.ncu-rep --page source --print-source sass --csv > $R/lane_bwd_pf${pf}_sass.csv 2>&1
  timeout 30 ncu -i /tmp/lane_bwd_pf$pf.ncu-rep --page details > $R/lane_bwd_pf${pf}_details.txt 2>&1
done
t end > $R/end.txt
tar czf $OUT/res.tgz -C /tmp res
