"""The SS2D glue on MambaAD's shapes: cross_scan and cross_merge in Triton against PyTorch, one process.

    python benchmarks/glue_bench.py --batch 16 --dtype fp32,bf16 --json glue.json

For each HSS stage of the mvtec preset ((D, H, W) = (128, 64, 64), (256, 32, 32), (512, 16, 16),
(1024, 8, 8), K = 8 hilbert directions), it first checks that the two agree, then times each op (CUDA
events, median of repeats) and reports GB/s against the fewest bytes it must move (gather: read x once,
write K copies; merge: read K copies, write one map). Needs a GPU.
"""

from __future__ import annotations

import argparse
import functools
import json

import torch

from kernels.direction_glue import cross_merge, cross_scan, direction_plan
from mambaad_cli.model.scans import direction_tables

STAGES = ((128, 64, 64), (256, 32, 32), (512, 16, 16), (1024, 8, 8))
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def time_ms(fn, repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dtype", default="fp32,bf16")
    parser.add_argument("--scan", default="hilbert")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    print(f"{torch.cuda.get_device_name()}; batch {args.batch}, {args.scan}, K = 8")
    for dtype_name in args.dtype.split(","):
        dtype = DTYPES[dtype_name]
        for dim, H, W in STAGES:
            L, K = H * W, 8
            plan = direction_plan(direction_tables(args.scan, H, W, K).cuda())
            # the conv's output layout in the model: channels-last (batch, L, D) seen as (batch, D, L)
            x = torch.randn(args.batch, L, dim, device="cuda", dtype=dtype).transpose(1, 2)
            ys = torch.randn(args.batch, K, dim, L, device="cuda", dtype=dtype)
            for op in ("cross_scan", "cross_merge"):
                outs, times = {}, {}
                for backend in ("triton", "torch"):
                    if op == "cross_scan":
                        fn = functools.partial(cross_scan, x, plan, backend=backend)
                    else:
                        fn = functools.partial(cross_merge, ys, plan, channels_last=True, backend=backend)
                    outs[backend] = fn()
                    times[backend] = time_ms(fn)
                tol = 0 if op == "cross_scan" else (1e-5 if dtype == torch.float32 else 1e-2)
                err = (outs["triton"].float() - outs["torch"].float()).abs().max().item()
                small, big = args.batch * dim * L, args.batch * K * dim * L
                nbytes = (small + big) * x.element_size()
                row = {"op": op, "dtype": dtype_name, "D": dim, "H": H, "W": W, "batch": args.batch,
                       "max_abs_diff": err, "ok": err <= tol * max(1.0, outs["torch"].abs().max().item()),
                       **{f"{b}_ms": times[b] for b in times},
                       **{f"{b}_GBps": nbytes / times[b] / 1e6 for b in times},
                       "speedup": times["torch"] / times["triton"]}
                rows.append(row)
                print(f"{op:11s} {dtype_name} D={dim:4d} {H}x{W}: triton {times['triton']:.3f} ms "
                      f"({row['triton_GBps']:.0f} GB/s), torch {times['torch']:.3f} ms "
                      f"({row['torch_GBps']:.0f} GB/s), {row['speedup']:.2f}x, ok={row['ok']}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
