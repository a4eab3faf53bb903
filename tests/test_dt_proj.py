"""SS2D's dt_proj with its rank padded to a multiple of 8 (the default, MAMBAAD_DT_PROJ=pad8) against the
plain broadcast matmul (MAMBAAD_DT_PROJ=matmul): the same outputs and every gradient in float64, and under
bf16 autocast on the CPU; where the padding applies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from knob_runs import ramp_loss, run_with_knob

from mambaad_cli.model.hss import SS2D


def _run(block, x, knob, monkeypatch, autocast=False):
    y, gx, grads = run_with_knob(monkeypatch, "MAMBAAD_DT_PROJ", knob, block, x, ramp_loss,
                                 autocast=torch.bfloat16 if autocast else None)
    return y.float(), gx, grads


@pytest.mark.parametrize("way", [None, "pad8"], ids=["default", "pad8"])
@pytest.mark.parametrize(("dim", "d_state", "directions", "scan", "padded"), [
    (12, 4, 8, "hilbert", True),  # rank 1, padded to 8 of x_proj's 9 rows
    (40, 4, 4, "sweep", True),  # rank 3
    (12, 2, 2, "zigzag", False),  # rank 1 + 2 x 2 states: 5 rows, too few to pad: the matmul
])
def test_dt_proj_ways_match_the_matmul(monkeypatch, way, dim, d_state, directions, scan, padded):
    torch.manual_seed(0)
    block = SS2D(dim, d_state=d_state, directions=directions, scan=scan, scan_backend="torch").double()
    x = torch.randn(2, 5, 6, dim, dtype=torch.float64)
    pads = []
    pad = F.pad
    monkeypatch.setattr(F, "pad", lambda *a, **k: pads.append(a[1]) or pad(*a, **k))
    y_mm, gx_mm, g_mm = _run(block, x, "matmul", monkeypatch)
    assert pads == []
    y_w, gx_w, g_w = _run(block, x, way, monkeypatch)
    assert pads == ([(0, 8 - block.dt_rank)] if padded else [])
    torch.testing.assert_close(y_w, y_mm, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gx_w, gx_mm, rtol=1e-9, atol=1e-12)
    assert g_w.keys() == g_mm.keys()
    for name in g_mm:
        torch.testing.assert_close(g_w[name], g_mm[name], rtol=1e-9, atol=1e-12, msg=name)
    assert g_mm["x_proj_weight"].abs().max() > 0 and g_mm["dt_projs_weight"].abs().max() > 0


def test_under_bf16_autocast(monkeypatch, way="pad8"):
    torch.manual_seed(1)
    block = SS2D(16, d_state=4, directions=4, scan="sweep", scan_backend="torch")
    x = torch.randn(2, 4, 4, 16)
    y_mm, gx_mm, g_mm = _run(block, x, "matmul", monkeypatch, autocast=True)
    y_w, gx_w, g_w = _run(block, x, way, monkeypatch, autocast=True)
    # bf16 products in both, sums of zeros apart: bf16 rounding apart at most
    torch.testing.assert_close(y_w, y_mm, rtol=0.03, atol=0.03 * y_mm.abs().max().item())
    for name in ("x_proj_weight", "dt_projs_weight"):
        ref = g_mm[name].float()
        torch.testing.assert_close(g_w[name].float(), ref, rtol=0.05, atol=0.05 * ref.abs().max().item(),
                                   msg=name)


@pytest.mark.parametrize("way", ["batched", "einsum"])
@pytest.mark.parametrize(("rank", "columns", "padded"), [(1, 9, True), (3, 11, True), (1, 5, False)])
def test_token_order_dt_proj_pads_as_the_matmul_does(monkeypatch, rank, columns, padded, way):
    """The fused SS2D path's dt_proj on x_proj's output in token order (B, L, K, C): padded to rank 8 with
    zero weight columns where x_dbl has the columns, the same values and gradients as a plain per-direction
    product (a loop over the directions on the first `rank` columns), in float64, both ways
    (MAMBAAD_DT_PROJ_TOKENS); the batched one's output is (B, K, L, D) in memory."""
    from mambaad_cli.model.hss import _dt_proj_tokens

    monkeypatch.setenv("MAMBAAD_DT_PROJ_TOKENS", way)

    g = torch.Generator().manual_seed(rank)
    K, D, Bn, L = 3, 5, 2, 7
    x_dbl = torch.randn(Bn, L, K, columns, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(K, D, rank, generator=g, dtype=torch.float64, requires_grad=True)
    pads = []
    pad = F.pad
    monkeypatch.setattr(F, "pad", lambda *a, **k: pads.append(a[1]) or pad(*a, **k))
    got = _dt_proj_tokens(weight, x_dbl[..., :rank], x_dbl, pad=True)
    assert pads == ([(0, 8 - rank)] if padded else [])
    expected = torch.stack([x_dbl[:, :, k, :rank] @ weight[k].T for k in range(K)], dim=2)  # (B, L, K, D)
    assert got.shape == (Bn, L, K, D) and got.stride(3) == 1
    assert got.transpose(1, 2).is_contiguous() == (way == "batched")
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    dout = torch.randn(got.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad(got, (x_dbl, weight), dout)
    ref = torch.autograd.grad(expected, (x_dbl, weight), dout)
    for a, b in zip(grads, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
