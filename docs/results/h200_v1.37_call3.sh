#!/usr/bin/env bash
# session 39 call 3 (one H200): do the lane forward's channel-row accesses (u, delta, the output: 8 channels'
# lines a warp) cost it L1 wavefronts? The same forwards with u / delta channels-last (stride 1 over
# channels: one line a warp a step), the output (batch, D, L) or channels-last too (MAMBAAD_SCAN_OUT_CL=1),
# against mamba_ssm's layout, each with B / C L-major and N-major (benchmarks/bc_layout.py, forwards only,
# batch 16 and 64, one process each, sequential); Nsight Compute's L1 counters of the fp32 training forward
# at 1024 x 4096 channels-last, with and without the channels-last output.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
{ t start; pids=""
  for oc in 0 1; do for d in float32 bfloat16; do for sh in 1024:4096,2048:1024 4096:256,8192:64; do
    MAMBAAD_SCAN_OUT_CL=$oc MAMBAAD_SCAN_TUNE_CACHE=0 timeout 170 python benchmarks/bc_layout.py --batch 16 \
      --dtypes $d --shapes $sh --no-backward --u-layout cl > /dev/null 2>&1 & pids="$pids $!"
  done; done; done
  wait $pids; t warm; } > $OUT/warm.log 2>&1
for v in "mamba 0" "cl 0" "cl 1"; do set -- $v
  { t start $v; MAMBAAD_SCAN_OUT_CL=$2 timeout 120 python benchmarks/bc_layout.py --batch 16,64 --no-backward \
      --u-layout $1 --json $OUT/bc_layout_u$1_out$2.json; t done; } > $OUT/bc_layout_u$1_out$2.txt 2>&1
done
M=l1tex__data_pipe_lsu_wavefronts.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum
M=$M,l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum,l1tex__t_sectors_pipe_lsu_mem_global_op_ld_lookup_miss.sum
M=$M,l1tex__throughput.avg.pct_of_peak_sustained_elapsed,smsp__issue_active.avg.pct_of_peak_sustained_active
M=$M,smsp__inst_executed.sum,gpu__time_duration.sum,l1tex__t_requests_pipe_lsu_mem_global_op_st.sum
for oc in 0 1; do
  { t start out_cl $oc; MAMBAAD_SCAN_OUT_CL=$oc timeout $(( 565 - ($(date +%s) - s) )) ncu --clock-control none \
      --kernel-name regex:_scan_fwd_lane --launch-count 1 --metrics $M python benchmarks/scan_ncu.py --dim 1024 \
      --length 4096 --dtype fp32 --rounds 1 --channels-last; t done; } >> $OUT/ncu_fp32_cl.txt 2>&1
done
t end
