"""``max_pool2d``: a forward-only max pool for channels-last (B, C, H, W) maps, for the frozen ResNet
encoder's stem (nn.MaxPool2d(kernel_size=3, stride=2, padding=1) on (B, 64, 128, 128) fp16 / bf16 maps).

Why: PyTorch's channels-last kernel (``max_pool_forward_nhwc``) took 71 us a call at batch 16 in v1.20's
trace, H200, for about 42 MB of traffic (input + output): some 6x the time of a copy of those bytes. The
Triton kernel (kernels/triton_max_pool.py) reads each input pixel's channel vector once per window tap
(coalesced rows of the (B*H*W, C) matrix) and writes the output once. benchmarks/max_pool_bench.py, H200,
Triton 3.6, CUDA-graph replays, fp16 and bf16 alike: 9.4 us against PyTorch's 73 at batch 16, 43 against 272
at batch 64 (3.9 TB/s of input + output, near the copy's 4.3).

Forward only: the encoder is frozen, so the Triton path runs only where no gradient is needed (``auto``
under torch.no_grad / inference_mode, or on inputs that do not require one); elsewhere the reference runs.

Backends: ``torch`` (the reference: F.max_pool2d, any layout, device and setting) and ``triton``
(channels-last fp32 / fp16 / bf16 maps on CUDA, or CPU maps under TRITON_INTERPRET=1; dilation 1 and
floor mode only). ``auto`` takes Triton for channels-last CUDA maps that need no gradient, the reference
elsewhere and under torch.compile; env MAMBAAD_MAX_POOL=torch turns the Triton path off (A/B timing). The
max is exact, so both backends give the same values, NaN included (a NaN in a window gives NaN).
``MaxPool2dNHWC`` / ``from_module``: an nn.MaxPool2d that calls max_pool2d where its settings allow.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from .channel_sums import map_rows
from .dispatch import use_triton_kernel
from .launch import cdiv, next_power_of_2

KNOB = "MAMBAAD_MAX_POOL"  # auto (the default): Triton where it fits; torch: the reference always
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MAX_PIXELS = 2**30  # pixel indices in int32, with room for the last tile's and the taps' overshoot
_NEEDS = ("a channels-last (B, C, H, W) float32 / float16 / bfloat16 map that needs no gradient, on a CUDA "
          "device (or TRITON_INTERPRET=1), with padding <= kernel_size / 2 and a non-empty output")


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def max_pool2d_torch(x: torch.Tensor, kernel_size, stride=None, padding=0) -> torch.Tensor:
    """The reference: F.max_pool2d (dilation 1, floor mode)."""
    return F.max_pool2d(x, kernel_size, stride, padding)


def _out_size(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def _fits(x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int]) -> bool:
    if not (x.dim() == 4 and x.numel() > 0 and x.dtype in _DTYPES
            and x.is_contiguous(memory_format=torch.channels_last)):
        return False
    if torch.is_grad_enabled() and x.requires_grad:
        return False  # forward only: the result would carry no gradient
    if min(k) < 1 or min(s) < 1 or min(p) < 0 or 2 * p[0] > k[0] or 2 * p[1] > k[1]:
        return False  # F.max_pool2d's own checks (its error message on the reference path)
    B, _, H, W = x.shape
    OH, OW = _out_size(H, k[0], s[0], p[0]), _out_size(W, k[1], s[1], p[1])
    return OH > 0 and OW > 0 and B * H * W <= _MAX_PIXELS and B * OH * OW <= _MAX_PIXELS


def _tiles(C: int) -> dict[str, int]:
    """The default tile: 64 channels (one 128-byte row of fp16 / bf16 per pixel), 2048 elements: the best of
    benchmarks/max_pool_bench.py's configs on the stem's maps, or within 2 % of it (H200)."""
    block_c = min(64, next_power_of_2(C))
    return {"BLOCK_P": max(1, 2048 // block_c), "BLOCK_C": block_c, "num_warps": 4}


def _forward(x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int],
             tiles: dict[str, int] | None = None) -> torch.Tensor:
    """The Triton launch on a map that fits (_fits); ``tiles``: BLOCK_P, BLOCK_C, num_warps to use instead
    of _tiles' (benchmarks/max_pool_bench.py)."""
    from .triton_max_pool import _max_pool_fwd_kernel

    B, C, H, W = x.shape
    OH, OW = _out_size(H, k[0], s[0], p[0]), _out_size(W, k[1], s[1], p[1])
    y = torch.empty((B, C, OH, OW), device=x.device, dtype=x.dtype, memory_format=torch.channels_last)
    tiles = tiles or _tiles(C)
    P = B * OH * OW
    grid = (cdiv(P, tiles["BLOCK_P"]), cdiv(C, tiles["BLOCK_C"]))
    _max_pool_fwd_kernel[grid](map_rows(x), map_rows(y), H, W, OH, OW, C, P, KH=k[0], KW=k[1], SH=s[0],
                               SW=s[1], PH=p[0], PW=p[1], **tiles)
    return y


# an explicit backend="triton" inside a torch.compile'd region runs eagerly, as bias_silu's does
_forward_eager = torch.compiler.disable(_forward)


def max_pool2d(x: torch.Tensor, kernel_size, stride=None, padding=0, backend: str = "auto") -> torch.Tensor:
    """F.max_pool2d(x, kernel_size, stride, padding) (dilation 1, floor mode) of a (B, C, H, W) map, in its
    dtype; channels-last out of the Triton path (module docstring)."""
    k, p = _pair(kernel_size), _pair(padding)
    s = k if stride is None or (not isinstance(stride, int) and len(stride) == 0) else _pair(stride)
    compiling = torch.compiler.is_compiling()
    auto = os.environ.get(KNOB, "auto") != "torch"
    if not (backend == "auto" and compiling) and use_triton_kernel(
            "max_pool2d", backend, _fits(x, k, s, p), x.is_cuda, auto, _NEEDS):
        return (_forward_eager if compiling else _forward)(x, k, s, p)
    return max_pool2d_torch(x, kernel_size, stride, padding)


class MaxPool2dNHWC(nn.MaxPool2d):
    """nn.MaxPool2d whose forward is max_pool2d (backend auto) where its settings allow it (dilation 1, floor
    mode, no indices), nn.MaxPool2d's own forward otherwise."""

    def supported(self) -> bool:
        return _pair(self.dilation) == (1, 1) and not self.ceil_mode and not self.return_indices

    def forward(self, x: torch.Tensor):
        if self.supported():
            return max_pool2d(x, self.kernel_size, self.stride, self.padding)
        return super().forward(x)


def from_module(m: nn.MaxPool2d) -> nn.Module:
    """A MaxPool2dNHWC with m's settings (and training flag), to replace m in a model."""
    new = MaxPool2dNHWC(m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices, m.ceil_mode)
    return new.train(m.training)
