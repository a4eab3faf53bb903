"""The Triton scan reading B and C as slices of x_proj's output (SS2D's default since v1.20): the same
outputs and gradients as with contiguous copies, on every kernel (segment, lane forward, lane backward), and
SS2D with it against MAMBAAD_SCAN_BC_VIEWS=0 (contiguous copies).

Without a GPU the kernels run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1): tiny
shapes.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from knob_runs import run_with_knob, set_knob

pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.usefixtures("triton_kernels_run")

TUNINGS = {"segments": {}, "lane forward": {"MAMBAAD_SCAN_LANE": "1"},
           "lane backward": {"MAMBAAD_SCAN_LANE_BWD": "1"}}


def scan_with(ts, inputs, bc, views, dtype):
    """Outputs and gradients of one scan whose B / C are slices of `bc` (views) or copies of them."""
    leaves = {k: v.detach().to(DEVICE, dtype if k in ("u", "delta") else torch.float32).requires_grad_()
              for k, v in inputs.items()}
    bc_leaf = bc.detach().to(DEVICE, dtype).requires_grad_()
    n = leaves["A"].shape[1]
    B, C = bc_leaf[:, :, 3:3 + n], bc_leaf[:, :, 3 + n:]  # 3 rows of dts first, as x_proj's output has R
    if not views:
        B, C = B.contiguous(), C.contiguous()
    out = ts.selective_scan_triton(leaves["u"], leaves["delta"], leaves["A"], B, C, D=leaves["D"],
                                   delta_bias=leaves["delta_bias"], delta_softplus=True, chunk=16)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(3)).to(DEVICE, out.dtype))
    return [out] + [leaves[k].grad for k in sorted(leaves)] + [bc_leaf.grad]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("tuning", list(TUNINGS), ids=list(TUNINGS))
def test_b_c_slices_give_what_copies_give(tuning, dtype, monkeypatch):
    for name, value in TUNINGS[tuning].items():
        monkeypatch.setenv(name, value)
    ts = importlib.import_module("kernels.triton_scan")
    g = torch.Generator().manual_seed(0)
    batch, groups, dim, n, length = 2, 2, 4, 3, 21  # two chunks of 16, the second short
    inputs = {"u": torch.randn(batch, dim, length, generator=g),
              "delta": torch.randn(batch, dim, length, generator=g) * 0.5,
              "A": -(torch.rand(dim, n, generator=g) * 2 + 0.05),
              "D": torch.randn(dim, generator=g), "delta_bias": torch.randn(dim, generator=g) * 0.3}
    bc = torch.randn(batch, groups, 3 + 2 * n, length, generator=g)
    copies = scan_with(ts, inputs, bc, False, dtype)
    views = scan_with(ts, inputs, bc, True, dtype)
    assert views[-1].abs().sum() > 0
    for a, b in zip(copies, views, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        # the same arithmetic on the same numbers; on a GPU some reductions use atomics (order may differ)
        tol = 1e-6 if DEVICE == "cuda" else 0
        torch.testing.assert_close(b, a, rtol=tol, atol=tol)


@pytest.mark.parametrize(("knob", "backend", "views"), [
    (None, "triton", True), ("1", "triton", True), ("0", "triton", False), (None, "torch", False)])
def test_views_are_the_default_for_the_triton_scan(monkeypatch, knob, backend, views):
    from mambaad_cli.model.hss import _bc_views

    set_knob(monkeypatch, "MAMBAAD_SCAN_BC_VIEWS", knob)
    assert _bc_views(backend, torch.zeros(1, 2, 3, device=DEVICE)) is views


def test_ss2d_with_b_c_views_matches_copies(monkeypatch):
    from mambaad_cli.model.hss import SS2D

    torch.manual_seed(0)
    block = SS2D(8, d_state=4, directions=4, scan="sweep", scan_backend="triton").to(DEVICE)
    x = torch.randn(1, 3, 4, 8, device=DEVICE)
    outs = {}
    for knob in ("0", "1"):
        y, gx, grads = run_with_knob(monkeypatch, "MAMBAAD_SCAN_BC_VIEWS", knob, block, x,
                                     lambda y: y.square().sum())
        outs[knob] = (y, gx, grads["x_proj_weight"])
    for a, b in zip(outs["0"], outs["1"], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
