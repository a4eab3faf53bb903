"""CUDA graphs: a step of fixed shapes captured once and replayed, so the CPU launches nothing.

MambaAD's decoder runs thousands of small kernels per step (16 SS2D blocks with their projections,
norms, glue and scans, plus the local conv branches). At batch 16 on an H200 launching them costs about
as much as running them: the GPU waits on the CPU for much of a step. Replaying a captured graph launches
the whole step at once.

``GraphedStep`` wraps a function of one tensor whose work is all on the GPU (no host reads, no
``.item()``), such as a training iteration (forward, loss, backward, clipping, a capturable optimizer's
step) or a forward pass. The first calls run eagerly on a side stream (PyTorch's recipe: they compile
and autotune the Triton kernels and settle the allocator), then one call is captured; later calls with
an input of the same shape, dtype and strides copy it into the captured input and replay. Any other
input (a last, smaller batch) runs eagerly, which gives the same result. Outputs are returned as clones,
so they outlive the next replay.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

WARMUP_CALLS = 3  # eager calls before the capture (PyTorch's examples use 3 on a side stream)


def _signature(x: torch.Tensor) -> tuple:
    return tuple(x.shape), x.dtype, x.stride(), x.device


class GraphedStep:
    """Calls ``fn(x)``; from the ``warmup``+1-th call on, by replaying a CUDA graph of it."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], warmup: int = WARMUP_CALLS):
        self.fn = fn
        self.warmup = warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_input: torch.Tensor | None = None
        self.static_output: torch.Tensor | None = None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_cuda:
            return self.fn(x)
        if self.graph is not None:
            if _signature(x) == _signature(self.static_input):
                self.static_input.copy_(x)
                self.graph.replay()
                return self.static_output.clone()
            return self.fn(x)  # another shape: eager, same result
        self.calls += 1
        if self.calls <= self.warmup:
            return self._on_side_stream(x)
        return self._capture(x)

    def _on_side_stream(self, x: torch.Tensor) -> torch.Tensor:
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            out = self.fn(x)
        torch.cuda.current_stream(x.device).wait_stream(side)
        return out

    def _capture(self, x: torch.Tensor) -> torch.Tensor:
        self.static_input = x.clone(memory_format=torch.preserve_format)
        if self.static_input.stride() != x.stride():  # clone keeps dense strides; be exact
            self.static_input = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)
            self.static_input.copy_(x)
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(x.device)
        # thread_local: only this thread's unsafe calls break the capture. Under the default ("global") the
        # DataLoader's pin-memory thread, allocating pinned buffers for the next batch meanwhile, invalidated
        # it (seen on the H200 in real training; the synthetic benchmarks have no loader)
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.static_output = self.fn(self.static_input)
        self.graph = graph
        graph.replay()  # capturing records the work without running it
        return self.static_output.clone()
