"""SS2D's in_proj as two dense halves from one batched GEMM (MAMBAAD_IN_PROJ=halves; by default where no
gradient is taken) against the slices of one output (chunk; the default in training): the same outputs and
every gradient in float64 and under bf16 autocast on the CPU, and a depthwise conv input that is a dense
channels-last map (no copy) only with the halves."""

from __future__ import annotations

import pytest
import torch
from knob_runs import ramp_loss, run_with_knob

from mambaad_cli.model.hss import SS2D


def _run(monkeypatch, block, x, knob, autocast=None):
    dense = []
    conv_silu = SS2D._conv_silu.__get__(block)  # the method, not an earlier run's patch
    monkeypatch.setattr(block, "_conv_silu", lambda t: dense.append(
        t.is_contiguous(memory_format=torch.channels_last)) or conv_silu(t))
    out = run_with_knob(monkeypatch, "MAMBAAD_IN_PROJ", knob, block, x, ramp_loss, autocast=autocast)
    return out, dense


@pytest.mark.parametrize("knob", ["halves", "chunk", None], ids=["halves", "chunk", "default"])
def test_halves_match_the_slices_in_float64(monkeypatch, knob):
    torch.manual_seed(0)
    block = SS2D(12, d_state=4, directions=4, scan="hilbert", scan_backend="torch").double()
    x = torch.randn(2, 5, 6, 12, dtype=torch.float64)
    (y_ref, gx_ref, g_ref), dense_ref = _run(monkeypatch, block, x, "chunk")
    (y, gx, g), dense = _run(monkeypatch, block, x, knob)
    assert dense_ref == [False] and dense == [knob == "halves"]
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-12, atol=1e-12)
    assert g.keys() == g_ref.keys()
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], rtol=1e-10, atol=1e-12, msg=name)
    assert g_ref["in_proj.weight"].abs().max() > 0


@pytest.mark.parametrize(("knob", "halves"),
                         [(None, True), ("auto", True), ("chunk", False), ("halves", True)])
def test_scoring_takes_the_halves_by_default(monkeypatch, knob, halves):
    torch.manual_seed(2)
    block = SS2D(12, d_state=4, directions=2, scan="sweep", scan_backend="torch").double()
    x = torch.randn(2, 4, 3, 12, dtype=torch.float64)
    monkeypatch.setenv("MAMBAAD_IN_PROJ", "chunk")
    with torch.no_grad():
        ref = block(x)
    (_, _, _), dense = _run(monkeypatch, block, x, knob)  # with a gradient: the default slices
    assert dense == [knob == "halves"]
    dense.clear()
    with torch.no_grad():
        y = block(x)
    assert dense == [halves]
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


def test_halves_under_bf16_autocast(monkeypatch):
    torch.manual_seed(1)
    block = SS2D(16, d_state=4, directions=4, scan="sweep", scan_backend="torch")
    x = torch.randn(2, 4, 4, 16)
    (y_ref, _, g_ref), _ = _run(monkeypatch, block, x, "chunk", autocast=torch.bfloat16)
    (y, _, g), _ = _run(monkeypatch, block, x, "halves", autocast=torch.bfloat16)
    assert y.dtype == y_ref.dtype
    # the same bf16 products (each output element one dot product either way)
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=0.02, atol=0.02 * y_ref.abs().max().item())
    ref = g_ref["in_proj.weight"].float()
    tol = 0.05 * ref.abs().max().item()
    torch.testing.assert_close(g["in_proj.weight"].float(), ref, rtol=0.05, atol=tol)
