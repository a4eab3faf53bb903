"""GPU time of a callable alone: the profiler's kernel times summed, per call.

Wall-clock medians (triton.testing.do_bench) of an eager call include the host's launch overhead wherever
it is larger than the GPU work; a CUDA-graphed model step does not pay it. This reports the GPU's side, so
both can be quoted (`mambaad bench`'s GPU columns, benchmarks/scan_ab.py, benchmarks/norm_bench.py). CUDA
only. CUDA-graph replay (triton.testing.do_bench_cudagraph) would be the other way; capturing
autograd.grad on a leaf tensor failed under graph capture on the H200 (kernels/NOTES.md, v1.7).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def gpu_ms(fn: Callable[[], object], reps: int = 20, warmup: int = 3) -> float:
    """Milliseconds of GPU kernels (and copies) per call of fn, averaged over reps calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    return sum(e.self_device_time_total for e in prof.key_averages()) / reps / 1000
