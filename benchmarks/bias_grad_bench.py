"""A conv bias's gradient, the sum of a channels-last bf16 gradient over (batch, H, W), several ways on the
decoder's batch-16 maps: what autograd runs (at::sum over dims 0, 2, 3: PyTorch's reduce kernel, 48 a
training step with ResNet-34, about 20 us each in v1.18's graphed batch-16 step) against a product with a
ones vector (cuBLAS) and a float32 sum. GPU times from replayed CUDA graphs (triton.testing.
do_bench_cudagraph) and each way's largest error against a float64 sum.

    python benchmarks/bias_grad_bench.py --batch 16
"""

from __future__ import annotations

import argparse
import json

import torch

from kernels.channel_sums import map_rows

# (channels, side): the HSS depthwise convs (2 * dim) and the LSS 1x1 convs (dim), dims 512 .. 64 at 8 .. 64
SHAPES = ((1024, 8), (512, 16), (256, 32), (128, 64), (512, 8), (256, 16), (128, 32), (64, 64))


def ways(g: torch.Tensor) -> dict:
    rows = map_rows(g)  # a view: (B*H*W, C) of the channels-last map
    ones_row = torch.ones(1, rows.shape[0], device=g.device, dtype=g.dtype)
    ones_col = torch.ones(rows.shape[0], device=g.device, dtype=g.dtype)
    return {
        "sum023": lambda: g.sum((0, 2, 3)),
        "rows_sum0": lambda: rows.sum(0),
        "sum023_fp32": lambda: g.sum((0, 2, 3), dtype=torch.float32),
        "mm_ones": lambda: torch.mm(ones_row, rows),
        "mv_ones": lambda: torch.mv(rows.t(), ones_col),
    }


def main() -> None:
    import triton.testing

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    for channels, side in SHAPES:
        g = torch.randn(args.batch, channels, side, side, device="cuda").to(torch.bfloat16)
        g = g.contiguous(memory_format=torch.channels_last)
        exact = g.double().sum((0, 2, 3))
        row = {"batch": args.batch, "channels": channels, "side": side}
        for name, fn in ways(g).items():
            err = (fn().double().flatten() - exact).abs().max().item()
            row[name + "_us"] = round(1e3 * triton.testing.do_bench_cudagraph(fn, rep=50), 2)
            row[name + "_err"] = float(f"{err:.3g}")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
