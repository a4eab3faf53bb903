"""Triton kernels of layer_norm (kernels/layer_norm.py has the dispatch): LayerNorm over the last dim of a
(rows, C) matrix, optionally times silu(gate), written in the output's dtype.

Under bf16 autocast PyTorch runs LayerNorm in fp32: a cast of the input to fp32, the norm writing fp32, and
the next matrix product's cast back to bf16 (and SS2D's gate multiply in fp32 between them), each a pass
over memory, forwards and backwards. These kernels read the input once and write bf16 once, with the same
fp32 arithmetic, so the next product sees the values autocast would have given it (kernels/NOTES.md, v1.10).

Forward: a program takes BLOCK_R whole rows (BLOCK_C >= C); two passes over the tile in registers (mean,
then the squared deviations: no E[x^2] - E[x]^2 cancellation); mean and rstd kept per row for the backward.
Backward: a program walks TILES consecutive row tiles, writes dx (and dgate) per row and its partial sums of
dweight / dbias, which the host adds up.
SHUFFLE (PatchExpand2D): the input is a (B, H, W, 4C) map whose channels split as (p1, p2, c), read as
(B*H*W*4, C) rows; input row (b, h, w, p1, p2) is output row (b, 2h + p1, 2w + p2) of the (B, 2H, 2W, C)
result. The forward writes there, the backward reads the output's gradient there: the pixel shuffle's copy
is never made. The gate's silu is rounded to the gate's dtype, and its gradient's
product too, where autocast's F.silu and the multiply's backward round them.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _rows(tile, C, rows, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """Row indices (int64), column indices and masks of one tile of BLOCK_R rows."""
    r = tile * BLOCK_R + tl.arange(0, BLOCK_R)
    c = tl.arange(0, BLOCK_C)
    rmask = r < rows
    cmask = c < C
    return r.to(tl.int64), c, rmask, cmask, rmask[:, None] & cmask[None, :]


@triton.jit
def _out_rows(r, W, SHUFFLE: tl.constexpr):
    """The output rows of input rows r (int64): r itself, or their place after the 2 x 2 pixel shuffle."""
    if SHUFFLE:
        p2 = r % 2
        p1 = (r // 2) % 2
        w = (r // 4) % W
        bh = r // (4 * W)  # b * H + h
        return (2 * bh + p1) * (2 * W) + 2 * w + p2
    return r


@triton.jit
def _silu_rounded(z_ptr, at_z, mask):
    """silu(z) rounded to z's dtype (autocast's F.silu output), and sigmoid(z), both fp32."""
    z = tl.load(z_ptr + at_z, mask=mask, other=0.0).to(tl.float32)
    sig = 1.0 / (1.0 + tl.exp(-z))
    return (z * sig).to(z_ptr.dtype.element_ty).to(tl.float32), sig, z


@triton.jit
def _ln_fwd_kernel(x_ptr, w_ptr, b_ptr, z_ptr, out_ptr, mean_ptr, rstd_ptr, rows, C, sx, sz, so, eps, W,
                   BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, GATE: tl.constexpr, SHUFFLE: tl.constexpr):
    r, c, rmask, cmask, mask = _rows(tl.program_id(0), C, rows, BLOCK_R, BLOCK_C)
    x = tl.load(x_ptr + r[:, None] * sx + c[None, :], mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1) / C
    dev = tl.where(mask, x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(dev * dev, axis=1) / C + eps)
    w = tl.load(w_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    y = dev * rstd[:, None] * w[None, :] + b[None, :]
    if GATE:
        s, _, _ = _silu_rounded(z_ptr, r[:, None] * sz + c[None, :], mask)
        y = y * s
    o = _out_rows(r, W, SHUFFLE)
    tl.store(out_ptr + o[:, None] * so + c[None, :], y.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(mean_ptr + r, mean, mask=rmask)
    tl.store(rstd_ptr + r, rstd, mask=rmask)


@triton.jit
def _ln_bwd_kernel(x_ptr, w_ptr, b_ptr, z_ptr, go_ptr, mean_ptr, rstd_ptr, dx_ptr, dz_ptr, dw_ptr, db_ptr,
                   rows, C, sx, sz, sg, sdx, sdz, TILES, W,
                   BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, GATE: tl.constexpr, SHUFFLE: tl.constexpr):
    pid = tl.program_id(0)
    c = tl.arange(0, BLOCK_C)
    cmask = c < C
    w = tl.load(w_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK_C], tl.float32)
    db = tl.zeros([BLOCK_C], tl.float32)
    for i in range(TILES):
        r, c, rmask, cmask, mask = _rows(pid * TILES + i, C, rows, BLOCK_R, BLOCK_C)
        x = tl.load(x_ptr + r[:, None] * sx + c[None, :], mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(mean_ptr + r, mask=rmask, other=0.0)
        rstd = tl.load(rstd_ptr + r, mask=rmask, other=0.0)
        xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.0)
        o = _out_rows(r, W, SHUFFLE)
        g = tl.load(go_ptr + o[:, None] * sg + c[None, :], mask=mask, other=0.0).to(tl.float32)
        if GATE:  # out = ln * s: d ln = g * s; d s = g * ln (in s's dtype), then silu's derivative
            at_z = r[:, None] * sz + c[None, :]
            s, sig, z = _silu_rounded(z_ptr, at_z, mask)
            ds = (g * (xhat * w[None, :] + b[None, :])).to(dz_ptr.dtype.element_ty).to(tl.float32)
            dz = ds * sig * (1.0 + z * (1.0 - sig))
            tl.store(dz_ptr + r[:, None] * sdz + c[None, :], dz.to(dz_ptr.dtype.element_ty), mask=mask)
            g = g * s
        dw += tl.sum(g * xhat, axis=0)
        db += tl.sum(g, axis=0)
        gw = g * w[None, :]
        mean_gw = tl.sum(gw, axis=1) / C
        mean_gwx = tl.sum(gw * xhat, axis=1) / C
        dx = rstd[:, None] * (gw - mean_gw[:, None] - xhat * mean_gwx[:, None])
        tl.store(dx_ptr + r[:, None] * sdx + c[None, :], dx.to(dx_ptr.dtype.element_ty), mask=mask)
    tl.store(dw_ptr + pid * C + c, dw, mask=cmask)
    tl.store(db_ptr + pid * C + c, db, mask=cmask)
