"""Independent branches on CUDA streams of their own while a step is being captured as a CUDA graph.

At batch 16 most of a step's kernels fill a fraction of an H200, one after another. The LSS module's two
local conv branches do not depend on its HSS chain, so while engine/graphs.py captures a step they are
recorded on two other streams: the graph then runs the three branches side by side, forward and backward
(autograd runs each backward op on its forward op's stream). Eager calls keep one stream, as before: there
the host launches one kernel at a time anyway.

Tensors that cross streams are marked with ``record_stream`` both ways, forward and backward, so that the
caching allocator, which hands a freed block only to its own stream, never gives a block to a kernel of one
stream while a kernel of another may still read it (during a capture it holds such blocks until the
capture ends). ``MAMBAAD_BRANCH_STREAMS=0`` captures on one stream.

One process only: data-parallel steps (a process group initialised) stay on one stream. DDP makes its
AccumulateGrad nodes on the capture's stream when it is built, and autograd syncs and warns at each gradient
reaching one of them from another stream.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch

KNOB = "MAMBAAD_BRANCH_STREAMS"

_STREAMS: dict[tuple[torch.device, int], torch.cuda.Stream] = {}


def branch_streams_on(x: torch.Tensor) -> bool:
    """Whether branches run on streams of their own: a CUDA tensor, a capture under way on this thread's
    current stream, no process group, and the knob not 0."""
    if not x.is_cuda or torch.compiler.is_compiling() or os.environ.get(KNOB, "1").strip() == "0":
        return False  # (torch.compile'd modules are never captured: engine/graphs.py)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return False
    return torch.cuda.is_current_stream_capturing()


def branch_stream(device: torch.device, i: int) -> torch.cuda.Stream:
    """The i-th branch stream of `device`, made once and kept: torch.cuda.Stream() hands out PyTorch's pooled
    streams in turn, so asking again each time would in the end return the capture's own stream."""
    key = (device, i)
    if key not in _STREAMS:
        _STREAMS[key] = torch.cuda.Stream(device=device)
    return _STREAMS[key]


class _CrossStreams(torch.autograd.Function):
    """Identity where a tensor made on stream `source` passes to the current stream (a branch's input to its
    stream, its output back to the main one): forward marks the tensor used by the current stream; backward,
    which autograd runs on the current stream, marks the gradient it hands back as used by `source`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, source: torch.cuda.Stream) -> torch.Tensor:
        ctx.source = source
        x.record_stream(torch.cuda.current_stream(x.device))
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad.record_stream(ctx.source)
        return grad, None


def run_beside(
    main: Callable[[], torch.Tensor],
    branches: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    x: torch.Tensor,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(main(), [branch(x) for each branch]): during a CUDA capture (branch_streams_on) each branch on a
    stream of its own beside main's on the current one, joined before returning; else in that order on the
    current stream. The results are the same bits either way (the same kernels run)."""
    if not branch_streams_on(x):
        return main(), [branch(x) for branch in branches]
    current = torch.cuda.current_stream(x.device)
    streams = [branch_stream(x.device, i) for i in range(len(branches))]
    side_out = []
    for stream, branch in zip(streams, branches, strict=True):
        stream.wait_stream(current)  # x and everything before it are ready
        with torch.cuda.stream(stream):
            side_out.append(branch(_CrossStreams.apply(x, current)))
    out = main()
    joined = []
    for stream, y in zip(streams, side_out, strict=True):
        current.wait_stream(stream)
        joined.append(_CrossStreams.apply(y, stream))
    return out, joined
