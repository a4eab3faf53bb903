"""Host time of the Triton scan's eager calls: where Python spends a forward + backward when the GPU is not
the limit (MambaAD's short sequences, where `mambaad bench`'s wall clock exceeds the kernels' GPU time).

    python benchmarks/scan_host.py --dim 4096 --length 256 --dtype bf16 --top 30

Times the host side of --calls direct calls (selective_scan_fwd + selective_scan_bwd, as the bench's
"direct" column) without waiting for the GPU between them, then profiles the same calls with cProfile
(tottime and cumtime tables). GPU only (the kernels must launch for the host path to be the real one).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from scan_gpu_dev import inputs  # noqa: E402

from kernels import triton_scan  # noqa: E402


def step(xs) -> None:
    u, delta, A, B, C, D, bias = xs
    out, ckpt, T = triton_scan.selective_scan_fwd(u, delta, A, B, C, D, None, bias, True, True)
    triton_scan.selective_scan_bwd(torch.ones_like(out), u, delta, A, B, C, D, None, bias, True, ckpt, T)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    xs = inputs(args.batch, args.dim, args.length, dtype)
    for _ in range(3):  # compile, tune, warm
        step(xs)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.calls):
        step(xs)
    host = (time.perf_counter() - t0) / args.calls * 1e3
    torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / args.calls * 1e3
    print(f"{args.batch} x {args.dim} x {args.length} {args.dtype}: host {host:.3f} ms a forward + backward "
          f"(launches queued), wall {wall:.3f} ms with the GPU's tail")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.calls):
        step(xs)
    profiler.disable()
    torch.cuda.synchronize()
    for key in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(key).print_stats(args.top)
        print(text.getvalue())


if __name__ == "__main__":
    main()
