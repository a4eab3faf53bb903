"""``bias_silu``: silu(x + bias[c]) for a (B, C, H, W) map, the SS2D depthwise conv's bias and activation in
one pass (the default on GPUs since v1.20: +0.5 % training, +1.8 % inference at batch 16 on an H200;
MAMBAAD_BIAS_SILU at the call site, mambaad_cli/model/hss.py).

Backends: ``torch`` (the reference: F.silu(x + bias), any layout and device) and ``triton``
(kernels/triton_bias_silu.py: channels-last CUDA maps, or CPU maps under TRITON_INTERPRET=1). ``auto``
takes Triton for channels-last CUDA maps, the reference elsewhere and under torch.compile. The bias is added
in x's dtype's precision as autocast's conv adds it (cast to x's dtype first), then in fp32 with x, so the
Triton path rounds once where the reference rounds after the add and after the SiLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .channel_sums import channel_sums, map_rows
from .dispatch import use_triton_kernel
from .launch import cdiv, next_power_of_2


def bias_silu_torch(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return F.silu(x + bias.to(x.dtype).view(1, -1, 1, 1))


def _fits(x: torch.Tensor, bias: torch.Tensor) -> bool:
    return (x.dim() == 4 and x.numel() > 0 and x.is_contiguous(memory_format=torch.channels_last)
            and bias.dim() == 1 and bias.shape[0] == x.shape[1])


def _grid(M: int, C: int) -> tuple[tuple[int, int], dict[str, int]]:
    block_c = min(128, next_power_of_2(C))
    block_m = max(1, 4096 // block_c)
    return (cdiv(M, block_m), cdiv(C, block_c)), {"BLOCK_M": block_m, "BLOCK_C": block_c}


def _forward(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    from .triton_bias_silu import _bias_silu_fwd_kernel

    y = torch.empty_like(x, memory_format=torch.channels_last)
    rows = map_rows(x)
    grid, tiles = _grid(*rows.shape)
    _bias_silu_fwd_kernel[grid](rows, bias, map_rows(y), *rows.shape, **tiles)
    return y


class _BiasSiLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, bias):
        ctx.save_for_backward(x, bias)
        return _forward(x, bias)

    @staticmethod
    def backward(ctx, dy):
        from .triton_bias_silu import _bias_silu_bwd_kernel

        x, bias = ctx.saved_tensors
        dy = dy.contiguous(memory_format=torch.channels_last)  # read with x's strides
        dz = torch.empty_like(x, memory_format=torch.channels_last)
        rows, dz_rows = map_rows(x), map_rows(dz)
        grid, tiles = _grid(*rows.shape)
        _bias_silu_bwd_kernel[grid](rows, bias, map_rows(dy), dz_rows, *rows.shape, **tiles)
        return dz, channel_sums(dz).to(bias.dtype) if ctx.needs_input_grad[1] else None


# an explicit backend="triton" inside a torch.compile'd region runs eagerly, as the scan does
_bias_silu_triton = torch.compiler.disable(_BiasSiLU.apply)


def bias_silu(x: torch.Tensor, bias: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """silu(x + bias) per channel of a (B, C, H, W) map, in x's dtype and layout (module docstring)."""
    if not (backend == "auto" and torch.compiler.is_compiling()) and use_triton_kernel(
            "bias_silu", backend, _fits(x, bias), x.is_cuda, True,
            "a channels-last (B, C, H, W) map and a (C,) bias on a CUDA device (or TRITON_INTERPRET=1)"):
        bias = bias.to(x.dtype)  # autocast's cast of the conv bias (a no-op for bf16 weight copies)
        if torch.is_grad_enabled():
            return _bias_silu_triton(x, bias)
        return _forward(x, bias)  # inference: the launch alone, without autograd's host work
    return bias_silu_torch(x, bias)
