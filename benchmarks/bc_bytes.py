"""Is the fp32 lane forward bound by its B / C rows' L1 traffic? The same fp32 scan (inference forward,
batch 16) with B / C given in bf16 (half the bytes each lane receives a state and step, plus a conversion
per value; both runs use the same bf16-rounded values, so the outputs agree), GPU ms of each.

    python benchmarks/bc_bytes.py          # on the GPU machine (kernels/NOTES.md v1.35)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from scan_gpu_dev import inputs, rel  # noqa: E402

from kernels import triton_scan  # noqa: E402
from mambaad_cli.engine.gpu_time import gpu_ms  # noqa: E402


def forward(xs, B, C):
    u, delta, A, _, _, D, bias = xs
    with torch.no_grad():
        return triton_scan.selective_scan_triton(u, delta, A, B, C, D=D, delta_bias=bias, delta_softplus=True)


def main() -> None:
    for dim, length in ((1024, 4096), (2048, 1024)):
        xs = inputs(16, dim, length, torch.float32)
        Bh, Ch = xs[3].bfloat16(), xs[4].bfloat16()
        rows = {"fp32 rows": (Bh.float(), Ch.float()), "bf16 rows": (Bh, Ch)}
        outs = {name: forward(xs, *bc) for name, bc in rows.items()}
        ms = {name: round(gpu_ms(lambda bc=bc, xs=xs: forward(xs, *bc)), 4) for name, bc in rows.items()}
        print(dim, length, ms, "diff", rel(outs["bf16 rows"], outs["fp32 rows"]), flush=True)


if __name__ == "__main__":
    main()
