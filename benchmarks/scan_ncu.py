"""One forward (training), one forward (inference) and one backward of the Triton scan, for Nsight Compute.

    MAMBAAD_SCAN_CONFIGS=2:1:3:1:1:1 ncu --clock-control none --kernel-name regex:_scan_ --launch-skip 3 \
        --launch-count 3 --set full -o scan python benchmarks/scan_ncu.py --dim 1024 --length 4096 --rounds 2

Pin one config (MAMBAAD_SCAN_CONFIGS) so that the autotuner launches nothing to profile but the three
kernels. Each round launches three: the forward in training, the backward, the forward at inference. The
first round compiles; ``--launch-skip 3 --launch-count 3`` then profiles the second (with --rounds R, skip
3 * (R - 1) for the last).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from scan_gpu_dev import channels_last, inputs, n_major  # noqa: E402

from kernels import triton_scan  # noqa: E402


def one_round(xs) -> None:
    u, delta, A, B, C, D, bias = (t.detach().clone().requires_grad_() if t.dim() > 1 else t for t in xs)
    out = triton_scan.selective_scan_triton(u, delta, A, B, C, D=D, delta_bias=bias, delta_softplus=True)
    torch.autograd.grad(out, (u, delta, A, B, C), torch.ones_like(out))
    with torch.no_grad():
        triton_scan.selective_scan_triton(u, delta, A, B, C, D=D, delta_bias=bias, delta_softplus=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--nmajor", action="store_true",
                        help="B / C N-major in memory (state stride 1: the lane forward's NMAJOR)")
    parser.add_argument("--channels-last", action="store_true", help="u and delta stride 1 over channels")
    args = parser.parse_args()
    dtype = torch.float32 if args.dtype == "fp32" else torch.bfloat16
    device = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: TRITON_INTERPRET=1, a smoke test
    xs = inputs(args.batch, args.dim, args.length, dtype, device=device)
    if args.nmajor:
        xs = (*xs[:3], n_major(xs[3]), n_major(xs[4]), *xs[5:])
    if args.channels_last:
        xs = (channels_last(xs[0]), channels_last(xs[1]), *xs[2:])
    for _ in range(args.rounds):
        one_round(xs)
    if device == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
