#!/usr/bin/env bash
# Two model_throughput variants side by side on a host with two GPUs: A on GPU 0 and B on GPU 1 at once,
# then swapped, so that each variant ran on each GPU and each round's pair shared the host's CPU and
# clocks. How v1.18's branch streams were measured
# (docs/results/h200x2_branch_streams_v1.18_2026-11-29.jsonl.log).
#
#   benchmarks/ab_two_gpus.sh bf16+cl+graphs bf16+cl+graphs+nobranch [OUT_DIR] [batch sizes]
#
# Writes OUT_DIR/r{1,2}_gpu{0,1}.log (one JSON row per batch size) and prints, per batch size, each round's
# ratios A / B of training and inference images/s.
set -euo pipefail
a=${1:?variant A}
b=${2:?variant B}
out=${3:-ab_out}
batches=${4:-16,64}
mkdir -p "$out"
run() {  # GPU variant file
  CUDA_VISIBLE_DEVICES=$1 python benchmarks/model_throughput.py --backend triton --batch-size "$batches" \
    --steps 8 --variants "$2" > "$3" 2>&1
}
for round in 1 2; do
  if [ "$round" = 1 ]; then v0=$a; v1=$b; else v0=$b; v1=$a; fi
  run 0 "$v0" "$out/r${round}_gpu0.log" & p0=$!
  run 1 "$v1" "$out/r${round}_gpu1.log" & p1=$!
  wait "$p0"; wait "$p1"
done
python - "$out" "$a" "$b" <<'EOF'
import json, pathlib, sys
out, a, b = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows = [{**json.loads(line), "round": f.name[1]} for f in sorted(out.glob("r*_gpu*.log"))
        for line in f.read_text().splitlines() if line.startswith("{")]
for row in rows:
    if "error" in row:
        print(f"{row['variant']} batch {row['batch']}: {row['error']}")
for batch in sorted({r["batch"] for r in rows}):
    for rnd in ("1", "2"):
        pick = {r["variant"]: r for r in rows if r["batch"] == batch and r.get("round") == rnd}
        if a in pick and b in pick and "error" not in pick[a] and "error" not in pick[b]:
            ratios = [pick[a][f"{k}_images_per_s"] / pick[b][f"{k}_images_per_s"] for k in ("train", "infer")]
            print(f"batch {batch}, round {rnd}: {a} / {b} = {ratios[0]:.4f} train, {ratios[1]:.4f} infer")
EOF
