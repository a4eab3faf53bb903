"""The lane forward with B / C L-major (the (batch, G, N, L) contiguous tensors mamba_ssm takes) against the
same values N-major ((batch, G, L, N) underneath: state stride 1, the forward's NMAJOR), side by side in one
process: GPU ms of the training forward (with checkpoints), the inference forward and the backward, the
forward's % of its floor by GPU time (the bench's floors, rates measured in the same run), and the outputs
of the two layouts compared (the same sums in the same order: they should be bitwise equal). With
--bc-dtype float32, B and C are given to the scan in fp32 whatever u's dtype (the lane kernels convert rows
to fp32 anyway: 16-bit rows cost a conversion an element and state in the forward's loop), and the cast's own
GPU time is reported beside, since a caller would pay it.

    python benchmarks/bc_layout.py --batch 16,64 --json bc_layout.json      # on the GPU machine
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from scan_gpu_dev import SHAPES, channels_last, n_major  # noqa: E402

from kernels import triton_scan  # noqa: E402
from mambaad_cli.engine.bench import (  # noqa: E402
    GROUPS,
    N_STATE,
    floors,
    measure_copy_bandwidth,
    measure_exp2_rate,
    scan_inputs,
)
from mambaad_cli.engine.gpu_time import gpu_ms  # noqa: E402


def runners(x: dict[str, torch.Tensor], B: torch.Tensor, C: torch.Tensor):
    args = (x["u"], x["delta"], x["A"], B, C, x["D"], None, x["delta_bias"], True)

    def train():
        return triton_scan.selective_scan_fwd(*args, need_ckpt=True)

    def infer():
        return triton_scan.selective_scan_fwd(*args, need_ckpt=False)

    out, ckpt, T = train()
    dout = torch.randn_like(out)

    def backward():
        return triton_scan.selective_scan_bwd(dout, x["u"], x["delta"], x["A"], B, C, x["D"], None,
                                              x["delta_bias"], True, ckpt, T)

    return {"train_fwd": train, "infer_fwd": infer, "bwd": backward}, (out, ckpt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="16", help="batch sizes, comma-separated")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--shapes", default=",".join(f"{d}:{n}" for d, n in SHAPES))
    parser.add_argument("--no-backward", action="store_true", help="time the forwards only")
    parser.add_argument("--u-layout", choices=("mamba", "cl"), default="mamba",
                        help="u and delta (batch, D, L) as mamba_ssm takes them, or channels-last underneath")
    parser.add_argument("--bc-dtype", choices=("same", "float32"), default="same",
                        help="B and C in u's dtype (as the model gives them) or in fp32")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = torch.device("cuda")
    bandwidth, exp_rate = measure_copy_bandwidth(device), measure_exp2_rate(device)
    print(f"{torch.cuda.get_device_name()}: copy {bandwidth / 1e9:.0f} GB/s, exp2 {exp_rate / 1e12:.2f} T/s")
    rows = []
    for batch in (int(b) for b in args.batch.split(",")):
        for dtype in args.dtypes.split(","):
            for dim, length in (tuple(int(v) for v in s.split(":")) for s in args.shapes.split(",")):
                x = scan_inputs(batch, dim, length, {"float32": "fp32", "bfloat16": "bf16"}[dtype], device)
                if args.u_layout == "cl":  # the same values, stride 1 over channels
                    x.update({k: channels_last(x[k]) for k in ("u", "delta")})
                size = x["u"].element_size()
                floor = floors(batch, dim, length, N_STATE, GROUPS, size, bandwidth, exp_rate)
                row = {"batch": batch, "dtype": dtype, "dim": dim, "length": length, "u": args.u_layout,
                       "bc": args.bc_dtype, "floor_us": floor["floor_us"]}
                if args.bc_dtype == "float32" and x["B"].dtype != torch.float32:
                    # the cast a caller pays, into each layout: B's and C's together
                    row["cast L-major ms"] = round(2 * gpu_ms(lambda b=x["B"]: b.float()), 4)
                    row["cast N-major ms"] = round(2 * gpu_ms(lambda b=x["B"]: n_major(b.float())), 4)
                    x.update({k: x[k].float() for k in ("B", "C")})
                outs = {}
                for layout, (B, C) in (("L-major", (x["B"], x["C"])), ("N-major", (n_major(x["B"]),
                                                                                   n_major(x["C"])))):
                    fns, outs[layout] = runners(x, B, C)
                    for name, fn in fns.items():
                        if name == "bwd" and args.no_backward:
                            continue
                        row[f"{layout} {name} ms"] = round(gpu_ms(fn), 4)
                    fwd_us = row[f"{layout} train_fwd ms"] * 1e3
                    row[f"{layout} fwd %floor"] = round(100 * floor["floor_us"] / fwd_us, 1)
                (o1, c1), (o2, c2) = outs["L-major"], outs["N-major"]
                row["out max diff"] = (o1.float() - o2.float()).abs().max().item()
                row["ckpt max diff"] = (c1 - c2).abs().max().item()
                rows.append(row)
                print(json.dumps(row), flush=True)
                del x, outs
                torch.cuda.empty_cache()
    print(f"\n{'batch':>5} {'dtype':>9} {'D x L':>12} {'fwd L-major':>12} {'fwd N-major':>12} {'ratio':>6} "
          f"{'%floor L':>9} {'%floor N':>9} {'infer L':>8} {'infer N':>8} {'bwd L':>7} {'bwd N':>7}")
    nan = float("nan")
    for r in rows:
        tl_, tn = r["L-major train_fwd ms"], r["N-major train_fwd ms"]
        print(f"{r['batch']:>5} {r['dtype']:>9} {r['dim']:>5} x {r['length']:<5} {tl_:>12.4f} {tn:>12.4f} "
              f"{tl_ / tn:>6.3f} {r['L-major fwd %floor']:>9} {r['N-major fwd %floor']:>9} "
              f"{r['L-major infer_fwd ms']:>8.4f} {r['N-major infer_fwd ms']:>8.4f} "
              f"{r.get('L-major bwd ms', nan):>7.3f} {r.get('N-major bwd ms', nan):>7.3f} "
              f"{r.get('cast L-major ms', nan):>7.4f} {r.get('cast N-major ms', nan):>7.4f}")
    if args.json:
        args.json.write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
