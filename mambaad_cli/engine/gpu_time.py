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


def kernel_table(fn: Callable[[], object], steps: int = 3, row_limit: int = 25) -> str:
    """torch.profiler's table of the kernels of `steps` calls of fn by self CUDA time: where its time goes."""
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=row_limit,
                                     max_name_column_width=70)
