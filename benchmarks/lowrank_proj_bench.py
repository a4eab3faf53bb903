"""SS2D's per-direction projections on the decoder's maps, forward and forward + backward, several ways: which
cuBLAS kernels they get and how long they take. dt_proj at the 64 x 64 maps has rank R = 4: its weight
(K, D, 4) as a row-major operand has 8-byte rows, and a cutlass `align2` GEMM (about 78 us at batch 16, three
a scoring step) showed up in every profile since v1.5.

Ways:
  matmul  torch.matmul(W (K, D, R), dts (B, K, R, L)), the weights broadcast over the batch (v1.20;
          MAMBAAD_DT_PROJ=matmul)
  kmajor  the same product with W stored (K, R, D) and passed transposed (its rows 2*D bytes long)
  pad8    R padded to a multiple of 8: zero columns on W, and dts read as the first R8 rows of x_proj's
          output (the extra rows are B's first rows, multiplied by zeros): model/hss.py _dt_proj, the
          default since v1.21
On the H200 (session 23) kmajor got the same align2 kernels as matmul; pad8 got cuBLAS's nvjet kernels.
x_proj (matmul, the same broadcast) is timed too, for scale.

    python benchmarks/lowrank_proj_bench.py --batch 16,64
"""

from __future__ import annotations

import argparse
import json
import math

import torch

from mambaad_cli.model.hss import _dt_proj

K, N = 8, 16
DEVICE = "cuda"
LEVELS = ((64, 64), (128, 32), (256, 16), (512, 8))  # (dim, side): D = 2 dim, R = ceil(dim / 16)


def dt_proj(way: str, W: torch.Tensor, x_dbl: torch.Tensor, R: int) -> torch.Tensor:
    """kmajor here; matmul and pad8 are the model's dt_proj (model/hss.py _dt_proj) without and with pad."""
    if way == "kmajor":
        return torch.matmul(W.transpose(1, 2).contiguous().transpose(1, 2), x_dbl[:, :, :R])
    return _dt_proj(W, x_dbl[:, :, :R], x_dbl, pad=way == "pad8")


def kernels(fn, steps: int = 5) -> list[tuple[str, int, float]]:
    """(name, calls per step, mean us) of the GPU kernels of `steps` calls, longest first."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        total = getattr(e, "self_device_time_total", 0) or getattr(e, "self_cuda_time_total", 0)
        if total > 0 and e.count >= steps:
            rows.append((e.key[:70], e.count // steps, round(total / e.count, 1)))
    return sorted(rows, key=lambda r: -r[1] * r[2])[:5]


def level_rows(batch: int, dim: int, side: int):
    """One JSON row per way at one decoder level: errors against float64, times, kernels."""
    import triton.testing

    dev, dt = DEVICE, torch.bfloat16
    D, R, L = 2 * dim, math.ceil(dim / 16), side * side
    xs = torch.randn(batch, K, D, L, device=dev, dtype=dt, requires_grad=True)
    Wx = (torch.randn(K, R + 2 * N, D, device=dev, dtype=dt) * D**-0.5).requires_grad_()
    W = (torch.randn(K, D, R, device=dev, dtype=dt) * R**-0.5).requires_grad_()
    x_dbl = torch.matmul(Wx, xs).detach().requires_grad_()
    g = torch.randn(batch, K, D, L, device=dev, dtype=dt)
    ref = torch.matmul(W.double(), x_dbl[:, :, :R].double())
    gw_ref = torch.matmul(g.double(), x_dbl[:, :, :R].double().transpose(-1, -2)).sum(0)
    ways = {f"dt_{w}": (lambda w=w: dt_proj(w, W, x_dbl, R)) for w in ("matmul", "kmajor", "pad8")}
    ways["x_proj"] = lambda: torch.matmul(Wx, xs)
    for name, fwd in ways.items():
        inputs = (Wx, xs) if name == "x_proj" else (W, x_dbl)
        grad = g[:, :, : R + 2 * N] if name == "x_proj" else g

        def both(fwd=fwd, inputs=inputs, grad=grad):
            return torch.autograd.grad(fwd(), inputs, grad)

        row = {"batch": batch, "dim": dim, "side": side, "R": R, "way": name}
        if name != "x_proj":
            row["max_err"] = float(f"{(fwd().double() - ref).abs().max().item():.3g}")
            gw = both()[0].double()
            row["dW_rel_err"] = float(f"{((gw - gw_ref).norm() / gw_ref.norm()).item():.3g}")
        with torch.no_grad():
            row["fwd_us"] = round(1e3 * triton.testing.do_bench(fwd, rep=50), 1)
        row["fwd_bwd_us"] = round(1e3 * triton.testing.do_bench(both, rep=50), 1)
        with torch.no_grad():
            row["fwd_kernels"] = kernels(fwd)
        row["fwd_bwd_kernels"] = kernels(both)
        yield row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", default="16,64")
    args = parser.parse_args()
    for batch in (int(b) for b in args.batch.split(",")):
        for dim, side in LEVELS:
            for row in level_rows(batch, dim, side):
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
