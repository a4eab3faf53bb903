#!/usr/bin/env bash
# session 39 call 5 (one H200): what one warp's global load costs the L1's data pipe by access pattern
# (benchmarks/l1_wavefronts.py under Nsight Compute: the lane forward's B / C loads L-major and N-major, and
# the extremes), after calls 1 and 4 found the forward's wavefronts unmoved by 4 lines -> 1 a load and by
# L1 misses 50.6 M -> 18.9 M sectors.
export PYTHONPATH=$PWD TRITON_CACHE_DIR=/tmp/tcache
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
M=l1tex__data_pipe_lsu_wavefronts.sum,l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum
M=$M,l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum
M=$M,l1tex__t_output_wavefronts_pipe_lsu_mem_global_op_ld.sum,l1tex__data_bank_reads.sum,gpu__time_duration.sum
timeout 200 ncu --clock-control none --kernel-name regex:_loads --metrics $M python benchmarks/l1_wavefronts.py \
  > $OUT/l1_wavefronts.txt 2>&1
