"""The SS2D glue: the K direction copies of a feature map (cross-scan) and their merge back (cross-merge).

MambaAD's SS2D scans one (H, W) map along K directions. The unfused path materialises the K copies in
step order, projects and scans them as one (batch, K*D, L) scan, and merges the K outputs back in natural
order. ``cross_scan`` and ``cross_merge`` are that glue, each the other's adjoint, so the backward of one is
the forward of the other: no zero-filled buffer, no scatter-add with atomics, deterministic.

``permute_steps_torch`` moves each direction's own rows (the fused scan's B / C and their gradients)
between natural and step order. Each has a PyTorch version (CPU, the reference) and a Triton version
(kernels/triton_directions.py), with one signature; "auto" picks Triton for CUDA tensors.
``DirectionPlan`` holds the int32 tables both need, built once per (curve, H, W, K, device) by the model.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch

from .dispatch import check_triton, triton_ready

GLUE_BACKENDS = ("auto", "torch", "triton")


class DirectionPlan(NamedTuple):
    """Index tables of K scan directions over L positions (int32, one device)."""

    table: torch.Tensor  # (K, L): step t of direction k visits natural position table[k, t]
    order: torch.Tensor  # (L,) = table[0]: the order in which a merge walks the natural positions
    rel: torch.Tensor  # (K, L): rel[k, j] = the step of direction k at natural position order[j]


def direction_plan(table: torch.Tensor) -> DirectionPlan:
    """The plan of a (K, L) table whose rows are permutations of 0..L-1 (ValueError otherwise)."""
    index = table.to(torch.long)
    K, L = index.shape
    steps = torch.arange(L, device=index.device)
    if not torch.equal(index.sort(dim=1).values, steps.expand(K, L)):
        raise ValueError(f"direction_plan: every row of the ({K}, {L}) table must be a permutation of 0..L-1")
    inverse = torch.empty_like(index).scatter_(1, index, steps.expand(K, L))  # inverse[k, table[k, t]] = t
    as32 = {"dtype": torch.int32}
    return DirectionPlan(index.to(**as32), index[0].to(**as32), inverse[:, index[0]].to(**as32).contiguous())


def gather_directions_torch(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """xs[b, k, d, t] = x[b, d, table[k, t]]: (batch, D, L) any strides -> (batch, K, D, L) contiguous."""
    batch, dim, length = x.shape
    K = table.shape[0]
    picked = x.index_select(2, table.reshape(-1))  # (batch, D, K*L)
    return picked.view(batch, dim, K, length).transpose(1, 2).contiguous()


def merge_directions_torch(ys: torch.Tensor, order: torch.Tensor, rel: torch.Tensor,
                           out: torch.Tensor) -> torch.Tensor:
    """out[b, d, order[j]] = sum_k ys[b, k, d, rel[k, j]] (sums in fp32, or fp64 for fp64), written into out;
    returns out."""
    batch, K, dim, length = ys.shape
    steps = rel.to(torch.long).view(1, K, 1, length).expand(batch, K, dim, length)
    summed = ys.gather(3, steps).sum(dim=1, dtype=accumulator_dtype(ys.dtype))
    return out.index_copy_(2, order.to(torch.long), summed.to(out.dtype))


def permute_steps_torch(x: torch.Tensor, table: torch.Tensor, out: torch.Tensor,
                        to_steps: bool) -> torch.Tensor:
    """Each direction's own rows between natural and step order, cast to out's dtype (the reference of
    triton_directions.permute_steps_triton, same signature): x and out (..., K, R, L), table (K, L);
    out[.., k, r, t] = x[.., k, r, table[k, t]] (to_steps) or out[.., k, r, table[k, t]] = x[.., k, r, t]."""
    K, length = table.shape
    index = table.to(device=x.device, dtype=torch.long).view(*([1] * (x.dim() - 3)), K, 1, length)
    index = index.expand(x.shape)
    if to_steps:
        return out.copy_(x.gather(-1, index))
    return out.scatter_(-1, index, x.to(out.dtype))


def accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _is_channels_last(x: torch.Tensor) -> bool:
    """(batch, D, L) stored as (batch, L, D)."""
    return x.shape[1] > 1 and x.stride(1) == 1


def _empty(batch: int, dim: int, length: int, channels_last: bool, like: torch.Tensor) -> torch.Tensor:
    if channels_last:
        return torch.empty((batch, length, dim), device=like.device, dtype=like.dtype).transpose(1, 2)
    return torch.empty((batch, dim, length), device=like.device, dtype=like.dtype)


class _Glue(NamedTuple):
    gather: object
    merge: object


def _glue(x: torch.Tensor, backend: str | None) -> _Glue:
    """The implementations for x's device: ``backend`` or env MAMBAAD_GLUE, default "auto"."""
    backend = backend or os.environ.get("MAMBAAD_GLUE", "auto")
    if backend not in GLUE_BACKENDS:
        raise ValueError(f"direction glue: unknown backend {backend!r}; choose {', '.join(GLUE_BACKENDS)}")
    if backend == "auto":
        backend = "triton" if x.is_cuda and triton_ready() else "torch"
    if backend == "torch":
        return _Glue(gather_directions_torch, merge_directions_torch)
    check_triton(x, "direction glue")
    from .triton_directions import gather_directions_triton, merge_directions_triton

    return _Glue(gather_directions_triton, merge_directions_triton)


class _CrossScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, plan, glue):
        ctx.plan, ctx.glue, ctx.channels_last = plan, glue, _is_channels_last(x)
        return glue.gather(x, plan.table)

    @staticmethod
    def backward(ctx, grad):
        batch, _, dim, length = grad.shape
        out = _empty(batch, dim, length, ctx.channels_last, grad)
        return ctx.glue.merge(grad.contiguous(), ctx.plan.order, ctx.plan.rel, out), None, None


class _CrossMerge(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ys, plan, channels_last, glue):
        ctx.plan, ctx.glue = plan, glue
        batch, _, dim, length = ys.shape
        out = _empty(batch, dim, length, channels_last, ys)
        return glue.merge(ys.contiguous(), plan.order, plan.rel, out)

    @staticmethod
    def backward(ctx, grad):
        return ctx.glue.gather(grad, ctx.plan.table), None, None, None


def _check_plan(plan: DirectionPlan, length: int, what: str) -> None:
    if plan.table.dim() != 2 or plan.table.shape[1] != length:
        raise ValueError(f"{what}: the plan's table must be (K, {length}), got {tuple(plan.table.shape)}")


def cross_scan(x: torch.Tensor, plan: DirectionPlan, backend: str | None = None) -> torch.Tensor:
    """(batch, D, L) natural order, any strides -> (batch, K, D, L): row k is x in direction k's steps."""
    if x.dim() != 3:
        raise ValueError(f"cross_scan: x must be (batch, D, L), got {tuple(x.shape)}")
    _check_plan(plan, x.shape[2], "cross_scan")
    return _CrossScan.apply(x, plan, _glue(x, backend))


def cross_merge(ys: torch.Tensor, plan: DirectionPlan, channels_last: bool = False,
                backend: str | None = None) -> torch.Tensor:
    """(batch, K, D, L) in step order -> (batch, D, L): the K rows put back in natural order and summed.

    channels_last returns a (batch, D, L) view of a contiguous (batch, L, D) tensor, the layout that a
    LayerNorm over D wants."""
    if ys.dim() != 4 or ys.shape[1] != plan.table.shape[0]:
        K = plan.table.shape[0]
        raise ValueError(f"cross_merge: ys must be (batch, K={K}, D, L), got {tuple(ys.shape)}")
    _check_plan(plan, ys.shape[3], "cross_merge")
    return _CrossMerge.apply(ys, plan, channels_last, _glue(ys, backend))
