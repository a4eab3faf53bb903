"""The whole SS2D module (in_proj to out_proj), forward + backward, with the model's default scan order
against the fused core, at every decoder stage's shape, side by side in one process, by GPU time:

    python benchmarks/ss2d_module.py --json ss2d_module.json       # GPU: bf16 autocast, batch 16
    python benchmarks/ss2d_module.py --dtypes fp32,bf16 --batch 64
    python benchmarks/ss2d_module.py --profile 64                  # and each way's kernels at 64 x 64
    python benchmarks/ss2d_module.py --ways "triton-fused,triton-fused@MAMBAAD_DT_PROJ_TOKENS=einsum"
    python benchmarks/ss2d_module.py --check-only                   # CPU: one tiny map (Triton's interpreter)

`benchmarks/ss2d_fused.py` times the SS2D core alone against the unfused CUDA path (the issue's target). In
the model the fused core competes with SS2D's own order instead: the Triton cross-scan of x, x_proj and
dt_proj on the K copies, the plain lane scan, the Triton merge (backend `triton`), where the fused one
(`triton-fused`) projects x in natural order and reads it through the tables. Which is faster can differ
by stage (map size and width), so this times both per stage with the same weights and input, checks that
they agree (output, the input's and every parameter's gradient), and sums each over the decoder's blocks
(MambaAD's 256 x 256 preset: stages of 3, 4, 6 and 3 HSS blocks at 8, 16, 32 and 64 pixels a side). GPU
time is what a CUDA-graphed step pays; the eager host time is left out (mambaad_cli/engine/gpu_time.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if not torch.cuda.is_available():  # Triton's interpreter, set before triton loads
    os.environ.setdefault("TRITON_INTERPRET", "1")

from mambaad_cli.engine.bench import relative_l2_error  # noqa: E402
from mambaad_cli.engine.gpu_time import gpu_ms, kernel_table  # noqa: E402
from mambaad_cli.model.hss import SS2D  # noqa: E402

STAGES = ((512, 8, 3), (256, 16, 4), (128, 32, 6), (64, 64, 3))  # (d_model, side, HSS blocks), decoder order
# the default order (on every map: hss._fused_core would take the fused core at the small maps), the fused
# core; the first is the reference
WAYS = "triton@MAMBAAD_SS2D_FUSED_SIDES=none,triton-fused"


def parse_way(way: str) -> tuple[str, dict[str, str]]:
    """`backend` or `backend@VAR=VALUE;VAR=VALUE`: (the SS2D scan backend, the environment it runs under)."""
    backend, _, env = way.partition("@")
    return backend, dict(item.split("=", 1) for item in env.split(";") if item)


def build(d_model: int, backend: str, device: torch.device, scan: str) -> SS2D:
    """An SS2D of the decoder's configuration, its weights drawn from one seed (the same for each backend)."""
    torch.manual_seed(0)
    return SS2D(d_model, d_state=16, directions=8, scan=scan, scan_backend=backend).to(device)


def step(module: SS2D, x: torch.Tensor, dout: torch.Tensor, bf16: bool):
    """One forward + backward: (output, gradients of x and of every parameter)."""
    leaf = x.detach().requires_grad_()
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = module(leaf)
    grads = torch.autograd.grad(out, [leaf, *module.parameters()], dout)
    return out, grads


def measure(d_model: int, side: int, batch: int, dtype: str, device: torch.device, scan: str,
            timed: bool, ways: list[str], profile: bool = False) -> dict[str, object]:
    """Each way's GPU ms per forward + backward (where timed; with profile, its kernel table printed), and
    each way's largest relative L2 error and time ratio against the first's (output and gradients)."""
    bf16 = dtype == "bf16"
    g = torch.Generator(device="cpu").manual_seed(1)
    x_dtype = torch.bfloat16 if bf16 else torch.float32  # under autocast the block's LayerNorm gives bf16
    x = torch.randn(batch, side, side, d_model, generator=g).to(device, x_dtype)
    dout = torch.randn(batch, side, side, d_model, generator=g).to(device, x.dtype)
    row: dict[str, object] = {}
    results = {}
    for way in ways:
        backend, env = parse_way(way)
        module = build(d_model, backend, device, scan)
        with mock.patch.dict(os.environ, env):
            results[way] = step(module, x, dout, bf16)
            if timed:
                row[f"{way}_gpu_ms"] = gpu_ms(lambda module=module: step(module, x, dout, bf16))
                if profile:
                    table = kernel_table(lambda module=module: step(module, x, dout, bf16))
                    print(f"kernels of {way}, 3 steps\n{table}", flush=True)
    ref_out, ref_grads = results[ways[0]]
    for way in ways[1:]:
        out, grads = results[way]
        row[f"{way}_rel"] = max([relative_l2_error(out, ref_out)]
                                + [relative_l2_error(a, b) for a, b in zip(grads, ref_grads, strict=True)])
        if timed:
            row[f"{way}_over_first"] = row[f"{way}_gpu_ms"] / row[f"{ways[0]}_gpu_ms"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="bf16", help="bf16 (autocast, as the model trains) and / or fp32")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--scan", default="hilbert")
    parser.add_argument("--check-only", action="store_true")
    parser.add_argument("--profile", default="", help="map sides whose kernels to print (GPU), e.g. 64,8")
    parser.add_argument("--ways", default=WAYS,
                        help="scan backends, each optionally with knobs: backend@VAR=VALUE;VAR=VALUE")
    parser.add_argument("--json")
    args = parser.parse_args()
    ways = [w for w in args.ways.split(",") if w]
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    stages = STAGES if cuda else ((4, 4, 1),)
    batch = args.batch if cuda else 1
    timed = cuda and not args.check_only
    rows = []
    for dtype in args.dtypes.split(","):
        totals = dict.fromkeys(ways, 0.0)
        for d_model, side, blocks in stages:
            row = {"dtype": dtype, "d_model": d_model, "side": side, "blocks": blocks, "batch": batch,
                   **measure(d_model, side, batch, dtype, device, args.scan, timed, ways,
                             str(side) in args.profile.split(","))}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if timed:
                for way in ways:
                    totals[way] += blocks * row[f"{way}_gpu_ms"]
        if timed:  # the decoder's SS2D modules, each stage's time times its blocks
            total = {"dtype": dtype, "batch": batch, "decoder_ss2d_gpu_ms": totals,
                     **{f"{way}_over_first": totals[way] / totals[ways[0]] for way in ways[1:]}}
            rows.append(total)
            print(json.dumps(total), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
