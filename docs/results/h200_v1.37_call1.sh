#!/usr/bin/env bash
# session 39 call 1 (one H200): B / C N-major ((batch, G, L, N) underneath; the lane forward's NMAJOR, one
# vector load a step for a lane's states) against the L-major rows, side by side in one process
# (benchmarks/bc_layout.py: GPU ms of the training and inference forwards and of the backward, batch 16 and
# 64, MambaAD's four shapes, fp32 and bf16, outputs compared); the N-major tests compiled on the GPU; then
# Nsight Compute's L1 counters of the fp32 training forward at 1024 x 4096, both layouts.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; pids=""
  for d in float32 bfloat16; do for sh in 1024:4096,2048:1024 4096:256,8192:64; do
    MAMBAAD_SCAN_TUNE_CACHE=0 timeout 200 python benchmarks/bc_layout.py --batch 16 --dtypes $d --shapes $sh \
      > /dev/null 2>&1 & pids="$pids $!"
  done; done
  ( MAMBAAD_SCAN_TUNE_CACHE=0 MAMBAAD_SCAN_LANE_CONFIGS=32:1:3:1:8:4:128,32:1:3:1:8:4 timeout 200 \
      python -m pytest -q -rfE -p no:cacheprovider tests/test_triton_scan.py -k n_major > $OUT/pytest_nmajor.txt 2>&1 ) &
  pids="$pids $!"
  wait $pids; t warm; } > $OUT/warm.log 2>&1
{ t start; timeout 240 python benchmarks/bc_layout.py --batch 16,64 --json $OUT/bc_layout.json; t done; } \
  > $OUT/bc_layout.txt 2>&1
M=l1tex__data_pipe_lsu_wavefronts.sum,l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum,l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum
M=$M,l1tex__throughput.avg.pct_of_peak_sustained_elapsed,smsp__issue_active.avg.pct_of_peak_sustained_active
M=$M,smsp__inst_executed.sum,gpu__time_duration.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed
for lay in "" --nmajor; do
  { t start $lay; timeout $(( 560 - ($(date +%s) - s) )) ncu --clock-control none --kernel-name regex:_scan_fwd_lane \
      --launch-count 1 --metrics $M python benchmarks/scan_ncu.py --dim 1024 --length 4096 --dtype fp32 \
      --rounds 1 $lay; t done; } >> $OUT/ncu_fp32_1024x4096.txt 2>&1
done
t end
