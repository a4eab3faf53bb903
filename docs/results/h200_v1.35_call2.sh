#!/usr/bin/env bash
# session 37 call 2 (one H200): the model with v1.34's lane forward (4 lanes, step shares) against v1.33's
# (2 lanes, none: MAMBAAD_SCAN_LANE_SPLIT=2 MAMBAAD_SCAN_LANE_SHARES=0), bf16, channels-last, CUDA graphs,
# batch 16, one process; then Nsight Compute's raw L1 / L2 / pipe counters of the plain fp32 forward at
# 1024 x 4096 (the autotuner's pick, 8:4:128), where call 1 found L1 at 91 % of its throughput.
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site NCCL_NVLS_ENABLE=0 TRITON_CACHE_DIR=/tmp/tcache
s=$(date +%s); t() { echo "== $* at $(( $(date +%s) - s )) s"; }
nvidia-smi --query-gpu=name,driver_version --format=csv > $OUT/gpu.txt
(MAMBAAD_SCAN_TUNE_CACHE=0 timeout 100 python benchmarks/scan_ncu.py --dim 1024 --length 4096 --dtype fp32 \
   --rounds 1 > /dev/null 2>&1) &
b=bf16+cl+graphs
{ t start; timeout 330 python benchmarks/model_throughput.py --backend triton --batch-size 16 --steps 8 \
    --variants $b,$b+v133fwd --json $OUT/model.json; t done; } > $OUT/model.log 2>&1
wait
TRITON_PRINT_AUTOTUNING=1 timeout 60 python benchmarks/scan_ncu.py --dim 1024 --length 4096 --dtype fp32 \
  --rounds 1 > $OUT/tune_plain_fp32.log 2>&1
n=plain_fwd_fp32
{ t start $n; timeout 90 ncu --clock-control none --kernel-name regex:_scan_fwd_lane --launch-count 1 \
    --set full --import-source yes -o /tmp/$n python benchmarks/scan_ncu.py --dim 1024 --length 4096 \
    --dtype fp32 --rounds 1; t done; } > $OUT/ncu_$n.log 2>&1
timeout 40 ncu -i /tmp/$n.ncu-rep --page raw --csv > /tmp/raw.csv 2>&1
python - <<'PY' > $OUT/ncu_${n}_raw.txt 2>&1
import csv
rows = list(csv.reader(open("/tmp/raw.csv")))
head = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
names, units, values = rows[head], rows[head + 1], rows[head + 2]
for n, u, v in zip(names, units, values):
    if any(k in n for k in ("l1tex__", "lts__t_", "smsp__inst_executed_op", "sm__inst_executed_pipe",
                            "smsp__sass_inst_executed_op", "sm__sass_data", "smsp__pcsamp", "dram__bytes",
                            "sm__throughput", "l1tex__throughput", "smsp__inst_executed.sum")):
        print(n, u, v)
PY
timeout 40 ncu -i /tmp/$n.ncu-rep --page source --print-source sass --csv > /tmp/${n}_sass.csv 2>&1
gzip -c /tmp/${n}_sass.csv > $OUT/ncu_${n}_sass.csv.gz
cd $OUT && tar czf all.tgz *.txt *.json *.log *.gz 2>/dev/null
t end
