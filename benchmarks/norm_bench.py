"""instance_norm_silu on the LSS local branches' maps: the Triton kernels against PyTorch's path.

Times forward and forward + backward of silu(instance_norm(x)) on channels-last maps of the decoder's three
resolutions (resnet34 widths: 64 x 64 x 64, 128 x 32 x 32, 256 x 16 x 16 at --batch), both backends side by
side in one process, as wall time and as GPU time alone (the profiler's kernel times), and prints the
largest difference between them. On CPU (no timing) it only runs the
comparison, under TRITON_INTERPRET=1 at --batch 1 --small.

    python benchmarks/norm_bench.py --batch 64 --json norm.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kernels.instance_norm import instance_norm_silu  # noqa: E402
from mambaad_cli.engine.gpu_time import gpu_ms  # noqa: E402

SHAPES = ((64, 64), (128, 32), (256, 16))  # (channels, side)


def step(x, dy, backend):
    y = instance_norm_silu(x, backend=backend)
    return torch.autograd.grad(y, x, dy)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--small", action="store_true", help="8 x 8 maps (interpreter smoke test)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    timing = device == "cuda"
    if device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        parser.exit(2, "norm_bench.py: needs a CUDA GPU, or TRITON_INTERPRET=1 for the CPU smoke test "
                       "(--batch 1 --small)\n")
    rows = []
    for dtype in [getattr(torch, name) for name in args.dtypes.split(",")]:
        for channels, side in SHAPES:
            side = 8 if args.small else side
            x = torch.randn(args.batch, channels, side, side, device=device).to(dtype)
            x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
            dy = torch.randn_like(x)
            out = {b: (instance_norm_silu(x, backend=b), step(x, dy, b)) for b in ("torch", "triton")}
            row = {"batch": args.batch, "channels": channels, "side": side, "dtype": str(dtype)[6:],
                   "rows_knob": os.environ.get("MAMBAAD_NORM_ROWS", "256"),
                   "max_diff_y": (out["torch"][0].float() - out["triton"][0].float()).abs().max().item(),
                   "max_diff_dx": (out["torch"][1].float() - out["triton"][1].float()).abs().max().item()}
            if timing:
                import triton

                for b in ("torch", "triton"):
                    with torch.no_grad():
                        row[f"{b}_fwd_ms"] = triton.testing.do_bench(
                            lambda b=b, x=x: instance_norm_silu(x, backend=b))
                    row[f"{b}_fwd_bwd_ms"] = triton.testing.do_bench(lambda b=b, x=x, dy=dy: step(x, dy, b))
                    row[f"{b}_gpu_fwd_bwd_ms"] = gpu_ms(lambda b=b, x=x, dy=dy: step(x, dy, b))
                row["speedup_fwd_bwd"] = row["torch_fwd_bwd_ms"] / row["triton_fwd_bwd_ms"]
                row["speedup_gpu"] = row["torch_gpu_fwd_bwd_ms"] / row["triton_gpu_fwd_bwd_ms"]
                # bytes the four kernels move: x read twice and y written (forward); x and dy read twice
                # and dx written (backward)
                row["fused_GBps"] = 8 * x.numel() * x.element_size() / row["triton_gpu_fwd_bwd_ms"] / 1e6
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
