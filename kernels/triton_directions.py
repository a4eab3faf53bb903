"""The SS2D glue in Triton: the K direction copies of a feature map, and their merge back to natural order.

Two memory-bound kernels (kernels/direction_glue.py holds the PyTorch versions with the same signatures
and the autograd that pairs the gather with the merge, each the other's adjoint):

* ``gather_directions_triton(x, table)``: xs[b, k, d, t] = x[b, d, table[k, t]], x of any strides
  (channel-first or channels-last), xs contiguous (batch, K, D, L): the scan's layout. The permute kernel's
  gather, x read through a zero stride over the directions.
* ``merge_directions_triton(ys, order, rel, out)``: out[b, d, order[j]] = sum_k ys[b, k, d, rel[k, j]], the
  K outputs put back in natural order and summed in fp32 registers, written once in ``out``'s layout.
  Walking natural positions in direction 0's order (``order`` = table[0], ``rel[k, j]`` = the step of
  direction k at that position) makes direction 0's reads contiguous and keeps every curve's reads local,
  where walking image rows would scatter them over the whole sequence. With ``out`` channels-last, each
  position's store is D contiguous values.
* ``permute_steps_triton(x, table, out, to_steps)``: each direction's own rows (the fused scan's B / C and
  their gradients) between natural order and that direction's step order, cast to ``out``'s dtype:
  out[.., k, r, t] = x[.., k, r, table[k, t]] (to_steps) or out[.., k, r, table[k, t]] = x[.., k, r, t].
  The tables are permutations, so the scatter form writes every element once and needs no inverse table.

Neither has a scan or a reduction over lanes, so the gathered addresses cost no layout conversions (the
fused scan's problem, kernels/NOTES.md); Triton moves the tile between the load and store layouts.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import cdiv, next_power_of_2

BLOCK_D = 32
BLOCK_L = 64


@triton.jit
def _merge_directions_kernel(ys_ptr, order_ptr, rel_ptr, out_ptr, D, L, so_b, so_d, so_l,
                             K: tl.constexpr, BD: tl.constexpr, BL: tl.constexpr, F64: tl.constexpr):
    j = tl.program_id(0) * BL + tl.arange(0, BL)
    d = tl.program_id(1) * BD + tl.arange(0, BD)
    b = tl.program_id(2).to(tl.int64)
    jmask = j < L
    mask = (d[:, None] < D) & jmask[None, :]
    acc = tl.zeros((BD, BL), dtype=tl.float64 if F64 else tl.float32)  # fp64 only in the CPU tests
    for k in tl.static_range(K):
        step = tl.load(rel_ptr + k * L + j, mask=jmask, other=0)
        rows = ((b * K + k) * D + d[:, None]) * L
        acc += tl.load(ys_ptr + rows + step[None, :], mask=mask, other=0.0).to(acc.dtype)
    pos = tl.load(order_ptr + j, mask=jmask, other=0).to(tl.int64)
    dst = out_ptr + b * so_b + d[:, None].to(tl.int64) * so_d + pos[None, :] * so_l
    tl.store(dst, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _permute_steps_kernel(x_ptr, table_ptr, out_ptr, R, L, NB, sx_p, sx_b, sx_k, sx_r, sx_l,
                          so_p, so_b, so_k, so_r, so_l, K: tl.constexpr, BR: tl.constexpr, BL: tl.constexpr,
                          TO_STEPS: tl.constexpr):
    t = tl.program_id(0) * BL + tl.arange(0, BL)
    r = tl.program_id(1) * BR + tl.arange(0, BR)
    pbk = tl.program_id(2)  # (pair, batch, direction), direction fastest
    k = pbk % K
    pb = pbk // K
    p = (pb // NB).to(tl.int64)
    b = (pb % NB).to(tl.int64)
    tmask = t < L
    mask = (r[:, None] < R) & tmask[None, :]
    pos = tl.load(table_ptr + k * L + t, mask=tmask, other=0).to(tl.int64)
    x_rows = x_ptr + p * sx_p + b * sx_b + k * sx_k + r[:, None].to(tl.int64) * sx_r
    o_rows = out_ptr + p * so_p + b * so_b + k * so_k + r[:, None].to(tl.int64) * so_r
    if TO_STEPS:  # gather: scattered reads, step-order writes
        vals = tl.load(x_rows + pos[None, :] * sx_l, mask=mask)
        tl.store(o_rows + t[None, :].to(tl.int64) * so_l, vals.to(out_ptr.dtype.element_ty), mask=mask)
    else:  # scatter: step-order reads, each natural position written once (a permutation)
        vals = tl.load(x_rows + t[None, :].to(tl.int64) * sx_l, mask=mask)
        tl.store(o_rows + pos[None, :] * so_l, vals.to(out_ptr.dtype.element_ty), mask=mask)


def permute_steps_triton(x: torch.Tensor, table: torch.Tensor, out: torch.Tensor,
                         to_steps: bool) -> torch.Tensor:
    """x and out (batch, K, R, L) or (P, batch, K, R, L) (P stacked tensors, one launch), any strides; table
    (K, L) int32. Writes out[.., k, r, t] = x[.., k, r, table[k, t]] (to_steps) or the inverse; returns
    out."""
    x5 = x if x.dim() == 5 else x.unsqueeze(0)
    o5 = out if out.dim() == 5 else out.unsqueeze(0)
    pairs, batch, K, rows, length = x5.shape
    block_rows = min(BLOCK_D, next_power_of_2(rows))
    grid = (cdiv(length, BLOCK_L), cdiv(rows, block_rows), pairs * batch * K)
    _permute_steps_kernel[grid](x5, table, o5, rows, length, batch, *x5.stride(), *o5.stride(), K=K,
                                BR=block_rows, BL=BLOCK_L, TO_STEPS=to_steps, num_warps=4)
    return out


def gather_directions_triton(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(batch, D, L) any strides, table (K, L) int32 -> (batch, K, D, L) contiguous."""
    batch, dim, length = x.shape
    K = table.shape[0]
    out = torch.empty((batch, K, dim, length), device=x.device, dtype=x.dtype)
    # every direction gathers from the same map: permute_steps' gather with a zero stride over directions
    return permute_steps_triton(x.unsqueeze(1).expand(batch, K, dim, length), table, out, to_steps=True)


def merge_directions_triton(ys: torch.Tensor, order: torch.Tensor, rel: torch.Tensor,
                            out: torch.Tensor) -> torch.Tensor:
    """ys (batch, K, D, L) contiguous; order (L,), rel (K, L) int32; writes and returns out (batch, D, L)."""
    batch, K, dim, length = ys.shape
    grid = (cdiv(length, BLOCK_L), cdiv(dim, BLOCK_D), batch)
    _merge_directions_kernel[grid](ys, order, rel, out, dim, length, *out.stride(), K=K, BD=BLOCK_D,
                                   BL=BLOCK_L, F64=ys.dtype == torch.float64, num_warps=4)
    return out
