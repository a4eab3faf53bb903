"""Triton kernels of instance_norm_silu on channels-last maps (kernels/instance_norm.py has the dispatch).

A channels-last (B, C, H, W) map is, per image, an (H*W, C) matrix with contiguous rows: a program takes
BLOCK_C channels of one image and ROWS of its positions, in tiles of SUB rows. Each pass reads whole rows,
so no layout change is needed (PyTorch's instance_norm copies a channels-last map to NCHW and back).

Forward: _stats_kernel writes each chunk's mean and sum of squared deviations (Welford per tile row in
registers, rows and chunks merged by Chan's formula: no E[x^2] - E[x]^2 cancellation); _norm_silu_kernel
merges the chunks of its image and writes silu((x - mean) * rstd), and the program of chunk 0 keeps mean
/ rstd for the backward. Backward (g = dy * silu'(xhat)): _bwd_sums_kernel writes each chunk's sums of g
and of g * xhat; _bwd_dx_kernel writes rstd * (g - mean(g) - xhat * mean(g * xhat)). Statistics in fp32,
maps in the input's dtype.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _tile(b, stride_b, r0, cols, HW, C, SUB: tl.constexpr):
    """Offsets and masks of SUB rows from r0 (all maps share x's strides: the dispatch makes sure)."""
    rows = r0 + tl.arange(0, SUB)
    mask = (rows < HW)[:, None] & (cols < C)[None, :]
    offs = b.to(tl.int64) * stride_b + rows[:, None] * C + cols[None, :]
    return offs, mask, rows < HW


@triton.jit
def _store_parts(part_ptr, b, chunk, cols, C, n_chunks, first, second):
    """Chunk `chunk` of image b's two per-channel statistics, into part [B, n_chunks, 2, C]."""
    out = part_ptr + ((b * n_chunks + chunk) * 2) * C + cols
    tl.store(out, first, mask=cols < C)
    tl.store(out + C, second, mask=cols < C)


@triton.jit
def _load_parts(part_ptr, b, cols, C, n_chunks, NCH: tl.constexpr):
    """All chunks' two statistics of image b as [NCH, BLOCK_C] tiles (0 past the last chunk), the mask."""
    ch = tl.arange(0, NCH)
    mask = (ch < n_chunks)[:, None] & (cols < C)[None, :]
    ptrs = part_ptr + ((b * n_chunks + ch[:, None]) * 2) * C + cols[None, :]
    return tl.load(ptrs, mask=mask, other=0.0), tl.load(ptrs + C, mask=mask, other=0.0), mask


@triton.jit
def _silu_parts(x, mean, rstd, mask):
    """xhat, silu(xhat) and its derivative, elementwise (xhat = 0 off the map: no exp overflow there)."""
    xhat = tl.where(mask, (x - mean[None, :]) * rstd[None, :], 0.0)
    sig = 1.0 / (1.0 + tl.exp(-xhat))
    return xhat, xhat * sig, sig * (1.0 + xhat * (1.0 - sig))


@triton.jit
def _stats_kernel(x_ptr, part_ptr, HW, C, stride_b, n_chunks,
                  ROWS: tl.constexpr, SUB: tl.constexpr, BLOCK_C: tl.constexpr):
    chunk, cb, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    cols = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    # Welford per tile slot (row of the tile) in registers; the slots are merged once at the end (Chan's
    # formula), so the loop has no cross-warp reduction (v1.19: one per tile before)
    count = tl.zeros([SUB, 1], tl.float32)
    mean = tl.zeros([SUB, BLOCK_C], tl.float32)
    m2 = tl.zeros([SUB, BLOCK_C], tl.float32)
    for r in tl.static_range(0, ROWS, SUB):
        offs, mask, rmask = _tile(b, stride_b, chunk * ROWS + r, cols, HW, C, SUB)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        count += rmask[:, None].to(tl.float32)
        delta = tl.where(mask, x - mean, 0.0)
        mean += delta / tl.maximum(count, 1.0)
        m2 += tl.where(mask, delta * (x - mean), 0.0)
    total = tl.maximum(tl.sum(count, axis=0), 1.0)  # [1]: every column has the same rows
    chunk_mean = tl.sum(mean * count, axis=0) / total
    dev = mean - chunk_mean[None, :]
    chunk_m2 = tl.sum(m2 + count * dev * dev, axis=0)
    _store_parts(part_ptr, b, chunk, cols, C, n_chunks, chunk_mean, chunk_m2)


@triton.jit
def _merged(part_ptr, b, cols, HW, C, n_chunks, ROWS: tl.constexpr, NCH: tl.constexpr):
    """Mean and M2 over all positions of image b, merged from its chunks' (Chan's formula)."""
    p_mean, p_m2, mask = _load_parts(part_ptr, b, cols, C, n_chunks, NCH)
    counts = tl.minimum(HW - tl.arange(0, NCH) * ROWS, ROWS).to(tl.float32)[:, None]
    counts = tl.where(mask, counts, 0.0)
    mean = tl.sum(p_mean * counts, axis=0) / HW
    dev = tl.where(mask, p_mean - mean[None, :], 0.0)
    m2 = tl.sum(p_m2 + counts * dev * dev, axis=0)
    return mean, m2


@triton.jit
def _norm_silu_kernel(x_ptr, y_ptr, part_ptr, stats_ptr, HW, C, stride_b, n_chunks, eps,
                      ROWS: tl.constexpr, SUB: tl.constexpr, BLOCK_C: tl.constexpr, NCH: tl.constexpr):
    chunk, cb, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    cols = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    mean, m2 = _merged(part_ptr, b, cols, HW, C, n_chunks, ROWS, NCH)
    rstd = 1.0 / tl.sqrt(m2 / HW + eps)
    if chunk == 0:
        tl.store(stats_ptr + (b * 2) * C + cols, mean, mask=cols < C)
        tl.store(stats_ptr + (b * 2 + 1) * C + cols, rstd, mask=cols < C)
    for r in tl.static_range(0, ROWS, SUB):
        offs, mask, _ = _tile(b, stride_b, chunk * ROWS + r, cols, HW, C, SUB)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        _, y, _ = _silu_parts(x, mean, rstd, mask)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _load_stats(stats_ptr, b, cols, C):
    mean = tl.load(stats_ptr + (b * 2) * C + cols, mask=cols < C, other=0.0)
    rstd = tl.load(stats_ptr + (b * 2 + 1) * C + cols, mask=cols < C, other=0.0)
    return mean, rstd


@triton.jit
def _bwd_sums_kernel(x_ptr, dy_ptr, stats_ptr, part_ptr, HW, C, stride_b, n_chunks,
                     ROWS: tl.constexpr, SUB: tl.constexpr, BLOCK_C: tl.constexpr):
    chunk, cb, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    cols = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    mean, rstd = _load_stats(stats_ptr, b, cols, C)
    sum_g = tl.zeros([SUB, BLOCK_C], tl.float32)  # per tile slot, reduced once after the loop
    sum_gx = tl.zeros([SUB, BLOCK_C], tl.float32)
    for r in tl.static_range(0, ROWS, SUB):
        offs, mask, _ = _tile(b, stride_b, chunk * ROWS + r, cols, HW, C, SUB)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        xhat, _, dsilu = _silu_parts(x, mean, rstd, mask)
        g = tl.where(mask, dy * dsilu, 0.0)
        sum_g += g
        sum_gx += g * xhat
    _store_parts(part_ptr, b, chunk, cols, C, n_chunks, tl.sum(sum_g, axis=0), tl.sum(sum_gx, axis=0))


@triton.jit
def _bwd_dx_kernel(x_ptr, dy_ptr, dx_ptr, stats_ptr, part_ptr, HW, C, stride_b, n_chunks,
                   ROWS: tl.constexpr, SUB: tl.constexpr, BLOCK_C: tl.constexpr, NCH: tl.constexpr):
    chunk, cb, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    cols = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    mean, rstd = _load_stats(stats_ptr, b, cols, C)
    sums_g, sums_gx, _ = _load_parts(part_ptr, b, cols, C, n_chunks, NCH)
    mean_g = tl.sum(sums_g, axis=0) / HW
    mean_gx = tl.sum(sums_gx, axis=0) / HW
    for r in tl.static_range(0, ROWS, SUB):
        offs, mask, _ = _tile(b, stride_b, chunk * ROWS + r, cols, HW, C, SUB)
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        xhat, _, dsilu = _silu_parts(x, mean, rstd, mask)
        dx = rstd[None, :] * (dy * dsilu - mean_g[None, :] - xhat * mean_gx[None, :])
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
