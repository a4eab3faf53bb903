"""SS2D's per-direction projections as grouped conv1d (MAMBAAD_SS2D_PROJ=conv, opt-in) against the default
broadcast matmuls: the same outputs and every gradient in float64, and under bf16 autocast on the CPU."""

from __future__ import annotations

import pytest
import torch
from knob_runs import run_with_knob

from mambaad_cli.model.hss import SS2D


def _run(block, x, knob, monkeypatch, autocast=False):
    def loss(y):
        return (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum()

    y, gx, grads = run_with_knob(monkeypatch, "MAMBAAD_SS2D_PROJ", knob, block, x, loss,
                                 autocast=torch.bfloat16 if autocast else None)
    return y.float(), gx, grads


@pytest.mark.parametrize(("directions", "scan"), [(8, "hilbert"), (4, "sweep"), (2, "zigzag")])
def test_conv_projections_match_the_matmuls(monkeypatch, directions, scan):
    torch.manual_seed(0)
    block = SS2D(12, d_state=4, directions=directions, scan=scan, scan_backend="torch").double()
    x = torch.randn(2, 5, 6, 12, dtype=torch.float64)
    y_mm, gx_mm, g_mm = _run(block, x, "matmul", monkeypatch)
    y_cv, gx_cv, g_cv = _run(block, x, "conv", monkeypatch)
    torch.testing.assert_close(y_cv, y_mm, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gx_cv, gx_mm, rtol=1e-9, atol=1e-12)
    assert g_cv.keys() == g_mm.keys()
    for name in ("x_proj_weight", "dt_projs_weight", "dt_projs_bias", "A_logs", "conv2d.weight"):
        torch.testing.assert_close(g_cv[name], g_mm[name], rtol=1e-9, atol=1e-12, msg=name)
    assert g_mm["x_proj_weight"].abs().max() > 0 and g_mm["dt_projs_weight"].abs().max() > 0


def test_under_bf16_autocast(monkeypatch):
    torch.manual_seed(1)
    block = SS2D(16, d_state=4, directions=4, scan="sweep", scan_backend="torch")
    x = torch.randn(2, 4, 4, 16)
    y_mm, gx_mm, g_mm = _run(block, x, "matmul", monkeypatch, autocast=True)
    y_cv, gx_cv, g_cv = _run(block, x, "conv", monkeypatch, autocast=True)
    # bf16 products in both, summed in another order: bf16 rounding apart
    torch.testing.assert_close(y_cv, y_mm, rtol=0.03, atol=0.03 * y_mm.abs().max().item())
    for name in ("x_proj_weight", "dt_projs_weight"):
        ref = g_mm[name].float()
        torch.testing.assert_close(g_cv[name].float(), ref, rtol=0.05, atol=0.05 * ref.abs().max().item(),
                                   msg=name)
