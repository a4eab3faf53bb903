#!/usr/bin/env bash
# session 39 call 4 (one H200): the lane forward in programs of several warps (BD = 32 x warps, v1.37: each
# program's warps are channels of one (batch, group), so they read the same B / C lines, where one-warp
# programs of a group land on different SMs and every warp misses them in L1: 50.6 M of 83.9 M sectors
# missed in call 1's counters). One config pinned a process (MAMBAAD_SCAN_LANE_CONFIGS): the 1-warp pick of
# the autotuner (fp32 8:4, bf16 16:0) against 4 and 16 warps, benchmarks/bc_layout.py forwards at batch 16
# and 64 (B / C L-major and N-major), sequential; then Nsight Compute's L1 counters at fp32 1024 x 4096.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache MAMBAAD_SCAN_TUNE_CACHE=0
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
cfg() { echo "$(( 32 * $1 )):$1:3:1:$2:128"; }  # warps, E:PREFETCH
runs="float32,1,8:4 float32,4,8:4 float32,16,8:4 bfloat16,1,16:0 bfloat16,4,16:0 bfloat16,16,16:0"
{ t start; pids=""
  for r in $runs; do IFS=, read d w ep <<< "$r"
    MAMBAAD_SCAN_LANE_CONFIGS=$(cfg $w $ep) timeout 150 python benchmarks/bc_layout.py --batch 16 --dtypes $d \
      --shapes 1024:4096 --no-backward > /dev/null 2>&1 & pids="$pids $!"
  done; wait $pids; t warm; } > $OUT/warm.log 2>&1
for r in $runs; do IFS=, read d w ep <<< "$r"
  { t start $r; MAMBAAD_SCAN_LANE_CONFIGS=$(cfg $w $ep) timeout 60 python benchmarks/bc_layout.py --batch 16,64 \
      --dtypes $d --no-backward --shapes 1024:4096,2048:1024,4096:256 --json $OUT/rows_${d}_w$w.json; t done; } \
    > $OUT/rows_${d}_w$w.txt 2>&1
done
M=l1tex__data_pipe_lsu_wavefronts.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum
M=$M,l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum,l1tex__t_sectors_pipe_lsu_mem_global_op_ld_lookup_miss.sum
M=$M,l1tex__throughput.avg.pct_of_peak_sustained_elapsed,smsp__issue_active.avg.pct_of_peak_sustained_active
M=$M,smsp__inst_executed.sum,gpu__time_duration.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed
for w in 1 16; do
  { t start ncu $w; MAMBAAD_SCAN_LANE_CONFIGS=$(cfg $w 8:4) timeout $(( 500 - ($(date +%s) - s) )) ncu \
      --clock-control none --kernel-name regex:_scan_fwd_lane --launch-count 1 --metrics $M \
      python benchmarks/scan_ncu.py --dim 1024 --length 4096 --dtype fp32 --rounds 1; t done; } >> $OUT/ncu_rows.txt 2>&1
done
t end
