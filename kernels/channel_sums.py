"""Per-channel sums of a (B, C, H, W) map over batch, height and width: a conv bias's gradient.

PyTorch's reduction over (0, 2, 3) of a channels-last map, a column sum of its (B*H*W, C) rows, runs at a
fraction of the copy bandwidth; ones(1, B*H*W) @ rows in cuBLAS took 3.6-8.7 us against 7.4-62.8 at
batch 16's decoder maps on the H200 (benchmarks/bias_grad_bench.py, kernels/NOTES.md v1.19). Used by
mambaad_cli/model/conv_bias.py and kernels/bias_silu.py.
"""

from __future__ import annotations

import torch


def map_rows(t: torch.Tensor) -> torch.Tensor:
    """A channels-last (B, C, H, W) map as its (B*H*W, C) rows: a view."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def channel_sums(grad: torch.Tensor) -> torch.Tensor:
    """(C,) sums of a (B, C, H, W) map in its dtype (float32 accumulation): ones(1, B*H*W) @ its rows on
    channels-last maps, PyTorch's sum otherwise."""
    if grad.is_contiguous(memory_format=torch.channels_last):
        rows = map_rows(grad)
        ones = torch.ones(1, rows.shape[0], device=rows.device, dtype=rows.dtype)
        return torch.mm(ones, rows).view(-1)
    return grad.sum((0, 2, 3))
