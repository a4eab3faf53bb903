"""The Triton kernel of kernels/cosine_distance.py: 1 - cos(e, d) along channels, fp32 out."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _cosine_distance_kernel(
    e_ptr, d_ptr, out_ptr, C, W, HW,
    se_b, se_c, se_h, se_w,
    sd_b, sd_c, sd_h, sd_w,
    eps,
    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Program (pixel block, image): BLOCK_P pixels of one image, the channels in blocks of BLOCK_C, with the
    dot product and both squared norms summed in fp32. Strides as given, so NCHW and channels-last maps
    (and a mix) are read in place. cos = (e / max(|e|, eps)) . (d / max(|d|, eps)), as F.cosine_similarity
    computes it."""
    pb = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    p = pb * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < HW
    row = p // W
    col = p % W
    at_e = b * se_b + row * se_h + col * se_w
    at_d = b * sd_b + row * sd_h + col * sd_w
    # sums kept per tile element, reduced over the channels once at the end: in a channels-last map the
    # channels lie across the lanes, and a reduction per block of channels would shuffle at every block
    dot = tl.zeros([BLOCK_C, BLOCK_P], tl.float32)
    ne = tl.zeros([BLOCK_C, BLOCK_P], tl.float32)
    nd = tl.zeros([BLOCK_C, BLOCK_P], tl.float32)
    for c0 in range(0, C, BLOCK_C):
        c = c0 + tl.arange(0, BLOCK_C)
        m = (c < C)[:, None] & pmask[None, :]
        x = tl.load(e_ptr + c[:, None] * se_c + at_e[None, :], mask=m, other=0.0).to(tl.float32)
        y = tl.load(d_ptr + c[:, None] * sd_c + at_d[None, :], mask=m, other=0.0).to(tl.float32)
        dot += x * y
        ne += x * x
        nd += y * y
    norms = tl.maximum(tl.sqrt(tl.sum(ne, axis=0)), eps) * tl.maximum(tl.sqrt(tl.sum(nd, axis=0)), eps)
    cos = tl.sum(dot, axis=0) / norms
    tl.store(out_ptr + b * HW + p, 1.0 - cos, mask=pmask)
