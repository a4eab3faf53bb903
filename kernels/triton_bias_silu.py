"""Triton kernels of bias_silu (kernels/bias_silu.py has the dispatch): silu(x + bias) over the rows of a
channels-last map seen as an (M, C) matrix, the bias per column.

The SS2D depthwise conv's bias is otherwise added by its own elementwise pass (PyTorch's convolution adds it
after cuDNN's kernel, a broadcast add that does not vectorise: 10-20 us at batch 16's 64 x 64 maps on the
H200, more than the conv), and SiLU is a third pass. Forward: one read of x, one write of y. Backward: one
read of x and dy, one write of dz = dy * silu'(x + bias); the bias's gradient is dz's column sums, taken by
the host as a product with ones. Arithmetic in fp32, outputs in x's dtype.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _tile(x_ptr, b_ptr, M, C, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    """Offsets, mask and z = x + bias (fp32) of this program's [BLOCK_M, BLOCK_C] tile."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (rows < M)[:, None] & (cols < C)[None, :]
    offs = rows.to(tl.int64)[:, None] * C + cols[None, :]
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=cols < C, other=0.0).to(tl.float32)
    return offs, mask, x + b[None, :]


@triton.jit
def _bias_silu_fwd_kernel(x_ptr, b_ptr, y_ptr, M, C, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    offs, mask, z = _tile(x_ptr, b_ptr, M, C, BLOCK_M, BLOCK_C)
    y = z / (1.0 + tl.exp(-z))
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bias_silu_bwd_kernel(x_ptr, b_ptr, dy_ptr, dz_ptr, M, C, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    offs, mask, z = _tile(x_ptr, b_ptr, M, C, BLOCK_M, BLOCK_C)
    dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    sig = 1.0 / (1.0 + tl.exp(-z))
    dz = dy * sig * (1.0 + z * (1.0 - sig))
    tl.store(dz_ptr + offs, dz.to(dz_ptr.dtype.element_ty), mask=mask)
