"""The SS2D glue (kernels/direction_glue.py): cross_scan and cross_merge, PyTorch and Triton, against plain
indexing loops in float64, values and gradients, every curve, both memory layouts; and the model's SS2D core
built on them against the natural-order formulation (projections before the gather, torch's scatter).

The Triton versions run in Triton's interpreter on CPU (tests/conftest.py sets TRITON_INTERPRET=1)."""

from __future__ import annotations

import os

import pytest
import torch

from kernels.direction_glue import cross_merge, cross_scan, direction_plan, permute_steps_torch
from kernels.directions import selective_scan_directions_unfused
from mambaad_cli.model.hss import SS2D, scan_indices
from mambaad_cli.model.scans import direction_tables

BACKENDS = ["torch", "triton"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "triton":
        pytest.importorskip("triton")
        if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
            pytest.skip("no GPU and TRITON_INTERPRET is not set")
    return request.param


def device_for(backend):
    return "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"


def loop_scan(x, table):
    """xs[b, k, d, t] = x[b, d, table[k, t]], one direction at a time."""
    return torch.stack([x[:, :, table[k].long()] for k in range(table.shape[0])], dim=1)


def loop_merge(ys, table):
    """out[b, d, table[k, t]] += ys[b, k, d, t] for every k."""
    out = torch.zeros(ys.shape[0], ys.shape[2], ys.shape[3], dtype=ys.dtype)
    for k in range(table.shape[0]):
        out[:, :, table[k].long()] += ys[:, k]
    return out


def permute_steps(backend):
    if backend == "torch":
        return permute_steps_torch
    from kernels.triton_directions import permute_steps_triton

    return permute_steps_triton


def tokens_outermost(shape, dtype, dev):
    """An empty (..., K, R, L) tensor stored as (..., L, K, R): the layout of the model's B / C views."""
    lead = len(shape) - 3
    base = torch.empty((*shape[:lead], shape[-1], *shape[lead:-1]), dtype=dtype, device=dev)
    return base.permute(*range(lead), lead + 1, lead + 2, lead)


@pytest.mark.parametrize("method,H,W,K", [("hilbert", 5, 7, 8), ("zigzag", 3, 5, 2)])
@pytest.mark.parametrize("stacked", [False, True])
def test_permute_steps_moves_each_directions_rows_both_ways(backend, method, H, W, K, stacked):
    # the fused scan's B / C into step order (gather) and their gradients back (scatter, with a cast), any
    # layout on either side, against indexing loops; 37 rows: not a multiple of the kernel's row block
    table = direction_tables(method, H, W, K)
    dev = device_for(backend)
    g = torch.Generator().manual_seed(5)
    lead, rows, L = ((2, 3) if stacked else (3,)), 37, H * W
    x = torch.randn(*lead, K, rows, L, generator=g, dtype=torch.float64)
    steps = torch.stack([x[..., k, :, table[k].long()] for k in range(K)], dim=-3)
    permute = permute_steps(backend)

    x_t = tokens_outermost(x.shape, torch.float64, dev).copy_(x.to(dev))
    out = torch.full(x.shape, float("nan"), dtype=torch.float64, device=dev)
    assert permute(x_t, table.to(dev, torch.int32), out, to_steps=True) is out
    torch.testing.assert_close(out.cpu(), steps, rtol=0, atol=0)

    back = tokens_outermost(x.shape, torch.float32, dev).fill_(float("nan"))
    assert permute(steps.to(dev), table.to(dev, torch.int32), back, to_steps=False) is back
    torch.testing.assert_close(back.cpu(), x.float(), rtol=0, atol=0)  # every element written, cast once


def layout(x, channels_last):
    """The same (batch, D, L) values, stored as (batch, L, D) when channels_last."""
    return x.transpose(1, 2).contiguous().transpose(1, 2) if channels_last else x.contiguous()


@pytest.mark.parametrize("method,H,W,K", [("hilbert", 5, 7, 8), ("sweep", 4, 6, 4), ("zorder", 8, 8, 8),
                                          ("zigzag", 3, 5, 2), ("scan", 6, 3, 2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cross_scan_and_merge_match_indexing_loops_with_gradients(backend, method, H, W, K, channels_last):
    table = direction_tables(method, H, W, K)
    dev = device_for(backend)
    plan = direction_plan(table.to(dev))
    g = torch.Generator().manual_seed(3)
    batch, dim, L = 2, 37, H * W  # 37: not a multiple of the kernels' channel block
    x = torch.randn(batch, dim, L, generator=g, dtype=torch.float64)
    ys = torch.randn(batch, K, dim, L, generator=g, dtype=torch.float64)

    x_t = layout(x, channels_last).to(dev).requires_grad_()
    xs = cross_scan(x_t, plan, backend=backend)
    assert xs.shape == (batch, K, dim, L) and xs.is_contiguous()
    torch.testing.assert_close(xs.cpu(), loop_scan(x, table), rtol=0, atol=0)
    g_xs = torch.randn(xs.shape, generator=g, dtype=torch.float64)
    (grad_x,) = torch.autograd.grad(xs, x_t, g_xs.to(dev))
    torch.testing.assert_close(grad_x.cpu(), loop_merge(g_xs, table), rtol=1e-12, atol=1e-12)
    assert grad_x.stride() == x_t.stride()  # the gradient comes back in x's layout

    ys_t = ys.to(dev).requires_grad_()
    merged = cross_merge(ys_t, plan, channels_last=channels_last, backend=backend)
    torch.testing.assert_close(merged.cpu(), loop_merge(ys, table), rtol=1e-12, atol=1e-12)
    assert (merged.stride(1) == 1) == channels_last or dim == 1
    g_m = torch.randn(merged.shape, generator=g, dtype=torch.float64)
    (grad_ys,) = torch.autograd.grad(merged, ys_t, layout(g_m, not channels_last).to(dev))
    torch.testing.assert_close(grad_ys.cpu(), loop_scan(g_m, table), rtol=0, atol=0)


def test_bf16_merge_sums_in_fp32(backend):
    """256 + seven 1s: summed in bf16 one by one, every 1 is lost (257 rounds to 256); summed in fp32 and
    rounded once, the result is 263 within one bf16 step (2 at 256; the interpreter may truncate)."""
    table = direction_tables("hilbert", 4, 4, 8)
    dev = device_for(backend)
    plan = direction_plan(table.to(dev))
    ys = torch.ones(1, 8, 5, 16, dtype=torch.bfloat16)
    ys[:, 0] = 256
    merged = cross_merge(ys.to(dev), plan, backend=backend).cpu()
    assert merged.dtype == torch.bfloat16
    assert ((merged.double() - 263).abs() <= 2).all()


def test_plan_rejects_a_table_that_is_not_a_permutation():
    table = direction_tables("sweep", 2, 3, 2).clone()
    table[1, 0] = table[1, 1]
    with pytest.raises(ValueError, match="permutation"):
        direction_plan(table)
    plan = direction_plan(direction_tables("sweep", 2, 3, 2))
    with pytest.raises(ValueError, match=r"\(K, 5\)"):
        cross_scan(torch.zeros(1, 2, 5), plan)
    with pytest.raises(ValueError, match="unknown backend"):
        cross_scan(torch.zeros(1, 2, 6), plan, backend="cuda")


def natural_order_core(m: SS2D, x: torch.Tensor) -> torch.Tensor:
    """The SS2D core computed the other way round: projections in natural order, every input gathered."""
    Bsz, D, H, W = x.shape
    K, L, N, R = m.K, H * W, m.d_state, m.dt_rank
    xs = x.reshape(Bsz, D, L)
    x_dbl = torch.einsum("bdl,kcd->bkcl", xs, m.x_proj_weight)
    dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
    dts = torch.einsum("bkrl,kdr->bkdl", dts, m.dt_projs_weight)
    table = scan_indices(m.scan, H, W, K, x.device)
    return selective_scan_directions_unfused(xs, dts, -torch.exp(m.A_logs), Bs, Cs, m.Ds,
                                             m.dt_projs_bias.reshape(-1), table)


@pytest.mark.parametrize("scan", ["hilbert", "zigzag"])
def test_ss2d_core_equals_the_natural_order_formulation(scan):
    torch.manual_seed(0)
    m = SS2D(8, directions=8, scan=scan, scan_backend="torch").double()
    x = torch.randn(2, 16, 5, 4, dtype=torch.float64, requires_grad=True)
    ours, theirs = m.scan_core(x), natural_order_core(m, x)
    assert ours.stride(1) == 1  # channels-last for out_norm
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(theirs)
    wrt = [x, *m.parameters()]
    for a, b in zip(torch.autograd.grad(ours, wrt, g, allow_unused=True),
                    torch.autograd.grad(theirs, wrt, g, allow_unused=True), strict=True):
        if a is None or b is None:
            assert a is None and b is None
            continue
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
