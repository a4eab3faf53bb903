"""``instance_norm_silu``: SiLU(InstanceNorm(x)) (no affine, biased variance), the LSS local branches' tail.

Backends: ``torch`` (the reference: F.instance_norm then F.silu, any layout and device) and ``triton``
(kernels/triton_norm.py: channels-last CUDA tensors, or CPU tensors under TRITON_INTERPRET=1). ``auto``
picks Triton for channels-last CUDA maps: PyTorch's instance_norm runs batch_norm on a contiguous
(1, B*C, H, W) view, so a channels-last map is copied to NCHW on the way in and back by the next
convolution, forwards and backwards (kernels/NOTES.md, v1.7). Developer knob MAMBAAD_NORM_BACKEND=torch
turns the Triton path off, for side-by-side timing.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .dispatch import use_triton_kernel
from .launch import cdiv, next_power_of_2


def instance_norm_silu_torch(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    if x.dim() == 4 and x.shape[0] == 1 and not x.is_contiguous() and x.shape[2] * x.shape[3] > 1:
        # torch 2.14.1 on CPU: instance_norm's input gradient is wrong for one channels-last image whose
        # upstream gradient is channels-last too (the NCHW copy it normalises and that gradient disagree);
        # tests/test_instance_norm.py checks this path against float64. Plain ops keep any layout right.
        var, mean = torch.var_mean(x.float(), dim=(2, 3), unbiased=False, keepdim=True)
        return F.silu(((x.float() - mean) * torch.rsqrt(var + eps)).to(x.dtype))
    return F.silu(F.instance_norm(x, eps=eps))


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)


MAX_CHUNKS = 64  # every program merges its image's chunk statistics: a [chunks, channels] tile
MAX_ROWS = 1024  # the row loop is unrolled: 32 tiles at most
MIN_ROWS = 32  # one tile
# Programs a launch should have at least, for shorter chunks on small launches: 0, off. On the H200 (v1.19)
# 512 made the kernels alone faster at batch 16's 32 x 32 and 16 x 16 maps (22 and 18 us against 31 and 30
# for forward + backward), but the model at batch 16, where they run beside the HSS chain, trained faster
# with none (425.2 img/s) than with 1024 (421.2), and 512 was level (v1.20: -0.3 % training,
# +1.0 % inference at batch 16); developer knob MAMBAAD_NORM_MIN_PROGRAMS
MIN_PROGRAMS = 0


def _layout(x: torch.Tensor) -> tuple[int, int, int, int, int, int]:
    """B, C, H*W, rows per program, tile rows, channels per program. 256 rows per program; more on maps over
    128 x 128 so that an image has at most MAX_CHUNKS chunks, up to MAX_ROWS (256 x 256 maps, a 1024-pixel
    input; larger maps get more chunks); fewer (down to one tile) while the launch has under the
    MIN_PROGRAMS target and an image stays within MAX_CHUNKS chunks. Developer knobs: MAMBAAD_NORM_ROWS
    fixes the rows (tests' chunks), MAMBAAD_NORM_MIN_PROGRAMS the target."""
    batch, channels, h, w = x.shape
    hw = h * w
    block_c = min(64, max(2, next_power_of_2(channels)))
    fixed = os.environ.get("MAMBAAD_NORM_ROWS")
    rows = int(fixed) if fixed else 256
    rows = min(max(rows, next_power_of_2(cdiv(hw, MAX_CHUNKS))), MAX_ROWS)
    rows = min(rows, next_power_of_2(hw))
    if not fixed:
        target = int(os.environ.get("MAMBAAD_NORM_MIN_PROGRAMS", MIN_PROGRAMS))
        per_chunk = cdiv(channels, block_c) * batch
        while rows > MIN_ROWS and cdiv(hw, rows) * per_chunk < target and cdiv(hw, rows // 2) <= MAX_CHUNKS:
            rows //= 2
    sub = min(32, rows)
    return batch, channels, hw, rows, sub, block_c


def _launch_plan(x: torch.Tensor):
    """What the forward's and the backward's kernel pairs share: the grid (chunk, channel block, image), the
    per-chunk statistics buffer [B, n_chunks, 2, C], the sizes passed after the tensors, the tiling
    constants, and the merging kernel's NCH (n_chunks as a power of two)."""
    batch, channels, hw, rows, sub, block_c = _layout(x)
    n_chunks = cdiv(hw, rows)
    grid = (n_chunks, cdiv(channels, block_c), batch)
    part = torch.empty((batch, n_chunks, 2, channels), device=x.device, dtype=torch.float32)
    sizes = (hw, channels, x.stride(0), n_chunks)
    tiles = dict(ROWS=rows, SUB=sub, BLOCK_C=block_c)
    return grid, part, sizes, tiles, max(2, next_power_of_2(n_chunks))


class _InstanceNormSiLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, eps):
        from .triton_norm import _norm_silu_kernel, _stats_kernel

        grid, part, sizes, tiles, nch = _launch_plan(x)
        stats = torch.empty((x.shape[0], 2, x.shape[1]), device=x.device, dtype=torch.float32)
        y = torch.empty_like(x, memory_format=torch.channels_last)
        _stats_kernel[grid](x, part, *sizes, **tiles)
        _norm_silu_kernel[grid](x, y, part, stats, *sizes, eps, **tiles, NCH=nch)
        ctx.save_for_backward(x, stats)
        return y

    @staticmethod
    def backward(ctx, dy):
        from .triton_norm import _bwd_dx_kernel, _bwd_sums_kernel

        x, stats = ctx.saved_tensors
        dy = dy.contiguous(memory_format=torch.channels_last)  # the kernels read it with x's strides
        grid, part, sizes, tiles, nch = _launch_plan(x)
        dx = torch.empty_like(x, memory_format=torch.channels_last)
        _bwd_sums_kernel[grid](x, dy, stats, part, *sizes, **tiles)
        _bwd_dx_kernel[grid](x, dy, dx, stats, part, *sizes, **tiles, NCH=nch)
        return dx, None


def _use_triton(x: torch.Tensor, backend: str) -> bool:
    fits = _is_channels_last(x) and x.shape[2] * x.shape[3] > 1  # one position: let instance_norm raise
    return use_triton_kernel(
        "instance_norm_silu", backend, fits, x.is_cuda, os.environ.get("MAMBAAD_NORM_BACKEND") != "torch",
        "a channels-last (B, C, H, W) map with H*W > 1 on a CUDA device (or TRITON_INTERPRET=1)")


# an explicit backend="triton" inside a torch.compile'd region runs eagerly, as the scan does
_instance_norm_silu_triton = torch.compiler.disable(_InstanceNormSiLU.apply)


def instance_norm_silu(x: torch.Tensor, eps: float = 1e-5, backend: str = "auto") -> torch.Tensor:
    """silu(instance_norm(x)) for a (B, C, H, W) map, statistics per image and channel in fp32, the result
    in x's dtype and layout. Under torch.compile (train.compile) ``auto`` leaves it to the compiler, which
    generates its own fused kernels, as before v1.7; the Triton path is for eager and CUDA-graphed runs."""
    if not (backend == "auto" and torch.compiler.is_compiling()) and _use_triton(x, backend):
        return _instance_norm_silu_triton(x, eps)
    return instance_norm_silu_torch(x, eps)
