"""The input and weight gradients of the decoder's biased 1x1 convs on channels-last bf16 maps, two ways:
aten.convolution_backward (cuDNN: wgrad2d_c1_k1_nhwc and dgrad2d_c1_k1_nhwc, 74 and 35 us a call on average
in v1.20's batch-16 training trace on an H200) against two GEMMs on the maps' rows (gemm_grads here; v1.22
tried it in model/conv_bias.py and removed it: level or slower in the model). GPU times from replayed CUDA
graphs (triton.testing.do_bench_cudagraph), each way's largest error against a float64 product, and the
ratio. One JSON line per shape.

    python benchmarks/conv1x1_bwd_bench.py --batch 16,64
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kernels.channel_sums import map_rows  # noqa: E402

# (in, out, side): the LSS local branches' C -> C convs and `fuse` (3C -> C), dims 512 .. 64 at 8 .. 64
SHAPES = [(c, c, s) for c, s in ((512, 8), (256, 16), (128, 32), (64, 64))]
SHAPES += [(3 * c, c, s) for c, s in ((512, 8), (256, 16), (128, 32), (64, 64))]


def gemm_grads(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor):
    """The input and weight gradients of a 1x1 conv of channels-last maps: rows(grad) @ W as a channels-last
    map, and rows(grad)^T @ rows(x) as the (C_out, C_in, 1, 1) weight."""
    g = map_rows(grad)
    b, _, h, w = grad.shape
    grad_x = torch.mm(g, weight.flatten(1)).view(b, h, w, -1).permute(0, 3, 1, 2)
    return grad_x, torch.mm(g.t(), map_rows(x)).view_as(weight)


def ways(x: torch.Tensor, w: torch.Tensor, g: torch.Tensor) -> dict:
    def conv():
        return torch.ops.aten.convolution_backward(
            g, x, w, None, (1, 1), (0, 0), (1, 1), False, [0, 0], 1, [True, True, False])[:2]

    return {"conv": conv, "gemm": lambda: gemm_grads(g, x, w)}


def errors(result, exact_x, exact_w) -> float:
    gx, gw = result
    return max((gx.double() - exact_x).abs().max().item() / exact_x.abs().max().item(),
               (gw.double() - exact_w).abs().max().item() / exact_w.abs().max().item())


def main() -> None:
    import triton.testing

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", default="16,64", help="comma-separated batch sizes")
    args = parser.parse_args()
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__}))
    cl = torch.channels_last
    for batch in (int(b) for b in args.batch.split(",")):
        for cin, cout, side in SHAPES:
            x = torch.randn(batch, cin, side, side, device="cuda").to(torch.bfloat16)
            g = torch.randn(batch, cout, side, side, device="cuda").to(torch.bfloat16)
            x, g = x.contiguous(memory_format=cl), g.contiguous(memory_format=cl)
            w = (torch.randn(cout, cin, 1, 1, device="cuda") / cin**0.5).to(torch.bfloat16)
            gr, xr = map_rows(g).double(), map_rows(x).double()
            exact_x = (gr @ w.flatten(1).double()).view(batch, side, side, cin).permute(0, 3, 1, 2)
            exact_w = (gr.t() @ xr).view(cout, cin, 1, 1)
            row = {"batch": batch, "in": cin, "out": cout, "side": side}
            for name, fn in ways(x, w, g).items():
                row[name + "_rel_err"] = float(f"{errors(fn(), exact_x, exact_w):.3g}")
                row[name + "_us"] = round(1e3 * triton.testing.do_bench_cudagraph(fn, rep=50), 2)
            row["conv_over_gemm"] = round(row["conv_us"] / row["gemm_us"], 3)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
