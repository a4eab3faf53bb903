"""``layer_norm``: an nn.LayerNorm over the last dim, optionally times silu(gate) (SS2D's out_norm and gate).

Backends: ``torch`` (the reference: the module, then ``* F.silu(gate)``: exactly the model's ops) and
``triton`` (kernels/triton_layer_norm.py: CUDA tensors, or CPU tensors under TRITON_INTERPRET=1). ``auto``
picks Triton for CUDA tensors under bf16 autocast only. There PyTorch runs LayerNorm in fp32 and the next
matrix product rounds its result to bf16; the kernels do the same fp32 arithmetic and write that bf16 result
themselves, so a following Linear (which autocast runs in bf16) sees the same values, without the casts'
and the fp32 tensors' passes over memory. So the result is in the autocast dtype, where PyTorch's would
be fp32: use it only where a bf16 product reads it next. fp32 (the paper's recipe) and tf32 keep PyTorch's
LayerNorm. Developer knob MAMBAAD_LN_BACKEND=torch turns the Triton path off, for side-by-side timing.

``layer_norm_pixel_shuffle``: PatchExpand2D's 2 x 2 pixel shuffle and LayerNorm in one (v1.23): the kernels
read the (B, H, W, 4C) map's rows as they are and write each at its shuffled place, so the shuffle's copy is
never made, forward or backward.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from .dispatch import autocast_dtype, use_triton_kernel
from .launch import cdiv, next_power_of_2

TILE = 4096  # elements per program's tile: 64 rows of 64 channels, 4 of 1024
BWD_PROGRAMS = 1024  # the backward's programs at most (each sums its rows' dweight / dbias; the host adds)


def layer_norm_torch(x: torch.Tensor, norm: nn.LayerNorm, gate: torch.Tensor | None = None) -> torch.Tensor:
    y = norm(x)
    return y if gate is None else y * F.silu(gate)


def _tiles(C: int) -> tuple[int, int, int]:
    block_c = next_power_of_2(C)
    block_r = max(1, TILE // block_c)
    return block_r, block_c, 8 if block_c >= 2048 else 4


def _rows_view(t: torch.Tensor, C: int) -> torch.Tensor:
    """(rows, C) with unit column stride: a view where the leading dims merge (SS2D's gate, half of
    in_proj's output, does), else a copy."""
    t = t.reshape(-1, C)
    return t if t.stride(1) == 1 else t.contiguous()


def pixel_shuffle_2x2(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 4C) with channels split as (p1, p2, c) -> (B, 2H, 2W, C): PatchExpand2D's rearrangement."""
    B, H, W, C4 = x.shape
    C = C4 // 4
    return x.view(B, H, W, 2, 2, C).permute(0, 1, 3, 2, 4, 5).reshape(B, 2 * H, 2 * W, C)


def _out_shape(x: torch.Tensor, shuffle: bool) -> tuple[int, ...]:
    if not shuffle:
        return tuple(x.shape)
    B, H, W, C4 = x.shape
    return B, 2 * H, 2 * W, C4 // 4


def _shuffle_width(shape: torch.Size, shuffle: bool) -> int:
    """The kernels' W argument: the input map's width where rows are shuffled (unused, 1, elsewhere)."""
    return shape[2] if shuffle else 1


def _ln_forward(x, weight, bias, gate, eps, out_dtype, shuffle=False):
    """The forward kernel's launch: the result, and what the backward reads (rows views, mean, rstd).
    shuffle: x is (B, H, W, 4C) and the result norm(pixel_shuffle_2x2(x)), its rows written in place."""
    from .triton_layer_norm import _ln_fwd_kernel

    C = weight.shape[0]
    x2 = _rows_view(x, C)
    z2 = _rows_view(gate, C) if gate is not None else x2
    rows = x2.shape[0]
    out = torch.empty((rows, C), device=x.device, dtype=out_dtype)
    mean = torch.empty(rows, device=x.device, dtype=torch.float32)
    rstd = torch.empty_like(mean)
    block_r, block_c, warps = _tiles(C)
    _ln_fwd_kernel[(cdiv(rows, block_r),)](
        x2, weight, bias, z2, out, mean, rstd, rows, C, x2.stride(0), z2.stride(0), out.stride(0), eps,
        _shuffle_width(x.shape, shuffle),
        BLOCK_R=block_r, BLOCK_C=block_c, GATE=gate is not None, SHUFFLE=shuffle, num_warps=warps)
    return out.view(_out_shape(x, shuffle)), (x2, z2, mean, rstd)


class _LayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, gate, eps, out_dtype, shuffle=False):
        out, (x2, z2, mean, rstd) = _ln_forward(x, weight, bias, gate, eps, out_dtype, shuffle)
        ctx.save_for_backward(x2, weight, bias, z2, mean, rstd)
        ctx.gated, ctx.shape = gate is not None, x.shape  # a gate has x's shape (_use_triton checks)
        ctx.shuffle = shuffle
        return out

    @staticmethod
    def backward(ctx, dout):
        from .triton_layer_norm import _ln_bwd_kernel

        x2, weight, bias, z2, mean, rstd = ctx.saved_tensors
        rows, C = x2.shape
        g2 = _rows_view(dout, C)
        dx = torch.empty((rows, C), device=x2.device, dtype=x2.dtype)
        dz = torch.empty((rows, C), device=x2.device, dtype=z2.dtype) if ctx.gated else dx
        block_r, block_c, warps = _tiles(C)
        n_tiles = cdiv(rows, block_r)
        per_program = cdiv(n_tiles, BWD_PROGRAMS)
        programs = cdiv(n_tiles, per_program)
        parts = torch.empty((2, programs, C), device=x2.device, dtype=torch.float32)  # dweight's, dbias's
        _ln_bwd_kernel[(programs,)](
            x2, weight, bias, z2, g2, mean, rstd, dx, dz, parts[0], parts[1], rows, C, x2.stride(0),
            z2.stride(0), g2.stride(0), dx.stride(0), dz.stride(0), per_program,
            _shuffle_width(ctx.shape, ctx.shuffle),
            BLOCK_R=block_r, BLOCK_C=block_c, GATE=ctx.gated, SHUFFLE=ctx.shuffle, num_warps=warps)
        dw, db = parts.sum(1)  # one reduction for both
        dgate = dz.view(ctx.shape) if ctx.gated else None
        return dx.view(ctx.shape), dw.to(weight.dtype), db.to(bias.dtype), dgate, None, None, None


def _autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    return autocast_dtype(x.device.type)


def _use_triton(x: torch.Tensor, norm: nn.LayerNorm, gate: torch.Tensor | None, backend: str) -> bool:
    fits = (norm.elementwise_affine and norm.bias is not None and len(norm.normalized_shape) == 1
            and x.shape[-1] == norm.normalized_shape[0] and x.numel() > 0
            and (gate is None or gate.shape == x.shape))
    auto = _autocast_dtype(x) == torch.bfloat16 and os.environ.get("MAMBAAD_LN_BACKEND") != "torch"
    return use_triton_kernel(
        "layer_norm", backend, fits, x.is_cuda, auto,
        "an affine LayerNorm over the last dim (a gate of x's shape) on a CUDA device "
        "(or TRITON_INTERPRET=1)")


# an explicit backend="triton" inside a torch.compile'd region runs eagerly, as the scan does
_layer_norm_triton = torch.compiler.disable(_LayerNorm.apply)


def layer_norm(x: torch.Tensor, norm: nn.LayerNorm, gate: torch.Tensor | None = None,
               backend: str = "auto", out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """norm(x), times silu(gate) when a gate is given. The Triton path writes ``out_dtype``, by default the
    autocast dtype when autocast is on (else x's dtype); statistics and products in fp32. out_dtype=float32
    under autocast gives what PyTorch's LayerNorm writes there, for a result that stays fp32 (the decoder's
    residual stream after PatchExpand2D). Under torch.compile ``auto`` leaves it to the compiler, which
    fuses the casts itself."""
    if not (backend == "auto" and torch.compiler.is_compiling()) and _use_triton(x, norm, gate, backend):
        return _run_triton(x, norm, gate, out_dtype, shuffle=False)
    return layer_norm_torch(x, norm, gate)


def _run_triton(x, norm, gate, out_dtype, shuffle):
    """The Triton path of layer_norm and layer_norm_pixel_shuffle: through autograd where a gradient may be
    taken, else the forward launch alone."""
    out_dtype = out_dtype or _autocast_dtype(x) or x.dtype
    if torch.is_grad_enabled() or torch.compiler.is_compiling():
        return _layer_norm_triton(x, norm.weight, norm.bias, gate, norm.eps, out_dtype, shuffle)
    # inference (no_grad / inference_mode): the launch alone, without autograd's host work
    return _ln_forward(x, norm.weight, norm.bias, gate, norm.eps, out_dtype, shuffle)[0]


def layer_norm_pixel_shuffle(x: torch.Tensor, norm: nn.LayerNorm, backend: str = "auto",
                             out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """norm(pixel_shuffle_2x2(x)) for a (B, H, W, 4C) map: PatchExpand2D's rearrangement and LayerNorm. On
    the Triton path the kernels read x's rows as they are and write each at its shuffled place (and read
    the gradient there), so the shuffled copy is never made; elsewhere the copy, then ``layer_norm``."""
    B, H, W, C4 = x.shape
    C = norm.normalized_shape[0] if len(norm.normalized_shape) == 1 else -1
    shuffles = C4 == 4 * C and x.numel() > 0
    # _use_triton sees the rows as (..., 4, C), the shape the kernels normalise
    if (not (backend == "auto" and torch.compiler.is_compiling()) and shuffles
            and _use_triton(x.view(B, H, W, 4, C), norm, None, backend)):
        return _run_triton(x, norm, None, out_dtype, shuffle=True)
    return layer_norm(pixel_shuffle_2x2(x), norm, backend=backend, out_dtype=out_dtype)
