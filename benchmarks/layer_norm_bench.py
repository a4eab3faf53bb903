"""layer_norm under bf16 autocast on the decoder's maps: the Triton kernels against PyTorch's LayerNorm.

Times forward and forward + backward of the HSS block's norm (fp32 residual stream in, what in_proj reads
out) and of SS2D's out_norm with its silu gate (bf16 in, what out_proj reads out) at the four resolutions
(resnet34 widths at --batch), both backends side by side in one process, as wall time and as GPU time alone
(the profiler's kernel times). Both end in bf16, as the next Linear's input: PyTorch's fp32 result pays that
cast, which autocast adds in the model too. Prints the largest differences between the backends. On CPU (no
timing) it only runs the comparison, under TRITON_INTERPRET=1 with --batch 1 --small.

    python benchmarks/layer_norm_bench.py --batch 64 --json ln.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kernels.layer_norm import layer_norm  # noqa: E402
from mambaad_cli.engine.gpu_time import gpu_ms  # noqa: E402

# (what, channels, side, input dtype): the block norm on d_model, out_norm on d_inner = 2 d_model
SHAPES = [("norm", c, s, torch.float32) for c, s in ((64, 64), (128, 32), (256, 16), (512, 8))]
SHAPES += [("out_norm+gate", 2 * c, s, torch.bfloat16) for c, s in ((64, 64), (128, 32), (256, 16), (512, 8))]


def forward(x, norm, gate, backend):
    with torch.autocast(x.device.type, dtype=torch.bfloat16):
        return layer_norm(x, norm, gate, backend=backend).to(torch.bfloat16)


def step(x, norm, gate, dy, backend):
    leaves = [x, norm.weight, norm.bias] + ([gate] if gate is not None else [])
    return torch.autograd.grad(forward(x, norm, gate, backend), leaves, dy)


def timings(x, norm, gate, dy, backend) -> dict[str, float]:
    import triton

    with torch.no_grad():
        fwd = triton.testing.do_bench(lambda: forward(x, norm, gate, backend))
    return {f"{backend}_fwd_ms": fwd,
            f"{backend}_fwd_bwd_ms": triton.testing.do_bench(lambda: step(x, norm, gate, dy, backend)),
            f"{backend}_gpu_fwd_bwd_ms": gpu_ms(lambda: step(x, norm, gate, dy, backend))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--small", action="store_true", help="4 x 4 maps (interpreter smoke test)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        parser.exit(2, "layer_norm_bench.py: needs a CUDA GPU, or TRITON_INTERPRET=1 for the CPU smoke test "
                       "(--batch 1 --small)\n")
    rows = []
    for what, channels, side, dtype in SHAPES:
        side = 4 if args.small else side
        x = torch.randn(args.batch, side, side, channels, device=device).to(dtype).requires_grad_()
        gate = torch.randn_like(x).requires_grad_() if "gate" in what else None
        norm = nn.LayerNorm(channels).to(device)
        dy = torch.randn(x.shape, device=device, dtype=torch.bfloat16)
        out = {b: (forward(x, norm, gate, b), step(x, norm, gate, dy, b)) for b in ("torch", "triton")}
        row = {"what": what, "batch": args.batch, "channels": channels, "side": side, "dtype": str(dtype)[6:],
               "max_diff_y": (out["torch"][0].float() - out["triton"][0].float()).abs().max().item(),
               "max_diff_grads": max((a.float() - b.float()).abs().max().item()
                                     for a, b in zip(out["torch"][1], out["triton"][1], strict=True))}
        if device == "cuda":
            for b in ("torch", "triton"):
                row.update(timings(x, norm, gate, dy, b))
            row["speedup_fwd_bwd"] = row["torch_fwd_bwd_ms"] / row["triton_fwd_bwd_ms"]
            row["speedup_gpu"] = row["torch_gpu_fwd_bwd_ms"] / row["triton_gpu_fwd_bwd_ms"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
