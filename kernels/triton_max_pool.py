"""Triton kernel of max_pool2d (kernels/max_pool.py has the dispatch): a forward-only max pool over a
channels-last map, seen as (B*H*W, C) input rows and (B*OH*OW, C) output rows.

A program takes BLOCK_P output pixels times BLOCK_C channels; for each of the KH * KW window taps it loads the
input pixel's channel vector (contiguous in channels-last: one coalesced row per pixel), -inf where the tap
falls in the padding or beyond the edge, and takes the max in the input's dtype (exact). A NaN anywhere in a
window gives NaN, as in PyTorch (tl.maximum with PropagateNan.ALL). Pixel indices are int32 (the host checks
that B*H*W and B*OH*OW fit), element offsets int64.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _max_pool_fwd_kernel(x_ptr, y_ptr, H, W, OH, OW, C, P,
                         KH: tl.constexpr, KW: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
                         PH: tl.constexpr, PW: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # output pixels: rows of y
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p_ok = p < P
    c_ok = (c < C)[None, :]
    ow = p % OW
    oh = (p // OW) % OH
    b = p // (OW * OH)
    ih0 = oh * SH - PH
    iw0 = ow * SW - PW
    # -inf in fp32, cast (a constant on the GPU): Triton's interpreter has no bf16 constants
    acc = tl.full((BLOCK_P, BLOCK_C), float("-inf"), tl.float32).to(x_ptr.dtype.element_ty)
    for kh in tl.static_range(KH):
        ih = ih0 + kh
        row_ok = p_ok & (ih >= 0) & (ih < H)
        row = (b * H + ih) * W  # the input pixel index of (b, ih, 0)
        for kw in tl.static_range(KW):
            iw = iw0 + kw
            ok = row_ok & (iw >= 0) & (iw < W)
            offs = (row + iw).to(tl.int64)[:, None] * C + c[None, :]
            v = tl.load(x_ptr + offs, mask=ok[:, None] & c_ok, other=float("-inf"))
            acc = tl.maximum(acc, v, propagate_nan=tl.PropagateNan.ALL)
    y_offs = p.to(tl.int64)[:, None] * C + c[None, :]
    tl.store(y_ptr + y_offs, acc, mask=p_ok[:, None] & c_ok)
