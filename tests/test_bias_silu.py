"""bias_silu (kernels/bias_silu.py): the Triton kernels against F.silu(x + bias) in float64, forward and both
gradients; the dispatch; SS2D with its conv's bias and SiLU in one pass (MAMBAAD_BIAS_SILU=1, the default
on GPUs) against the conv's own bias and F.silu (MAMBAAD_BIAS_SILU=0).

Without a GPU the kernels run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1): tiny maps.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from knob_runs import run_with_knob, set_knob

from kernels.bias_silu import bias_silu

pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.usefixtures("triton_kernels_run")


def channels_last(shape, seed, dtype=torch.float32, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * scale
    return x.to(DEVICE, dtype).contiguous(memory_format=torch.channels_last)


def reference(x, bias, dy):
    xr = x.detach().double().cpu().requires_grad_()
    br = bias.detach().double().cpu().requires_grad_()
    y = F.silu(xr + br.view(1, -1, 1, 1))
    dx, db = torch.autograd.grad(y, (xr, br), dy.double().cpu())
    return y, dx, db


# (B, C, H, W): rows not a multiple of the tile's, channels not a power of two, over two column blocks
SHAPES = {"small": (2, 5, 3, 7), "channels over two blocks": (1, 130, 2, 3), "one pixel": (3, 4, 1, 1)}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=list(SHAPES))
def test_matches_float64_reference(shape):
    x = channels_last(shape, 0).requires_grad_()
    bias = (torch.randn(shape[1], generator=torch.Generator().manual_seed(1)) * 2).to(DEVICE).requires_grad_()
    dy = channels_last(shape, 2, scale=1.0)
    y = bias_silu(x, bias, backend="triton")
    dx, db = torch.autograd.grad(y, (x, bias), dy)
    ref_y, ref_dx, ref_db = reference(x, bias, dy)
    assert y.dtype == torch.float32 and y.is_contiguous(memory_format=torch.channels_last)
    assert dx.is_contiguous(memory_format=torch.channels_last) and db.shape == bias.shape
    torch.testing.assert_close(y.double().cpu(), ref_y, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(dx.double().cpu(), ref_dx, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(db.double().cpu(), ref_db, rtol=1e-5, atol=1e-5)


def test_bf16_keeps_dtype_and_rounds_once():
    x = channels_last((2, 6, 4, 5), 3, dtype=torch.bfloat16).requires_grad_()
    bias = torch.randn(6, generator=torch.Generator().manual_seed(4)).to(DEVICE).requires_grad_()
    dy = channels_last((2, 6, 4, 5), 5, dtype=torch.bfloat16, scale=1.0)
    y = bias_silu(x, bias, backend="triton")
    dx, db = torch.autograd.grad(y, (x, bias), dy)
    assert y.dtype == dx.dtype == torch.bfloat16 and db.dtype == torch.float32
    # against float64 of the same bf16 inputs (the bias rounded to bf16 first, as autocast's conv does)
    ref_y, ref_dx, ref_db = reference(x, bias.detach().to(torch.bfloat16), dy)
    torch.testing.assert_close(y.double().cpu(), ref_y, rtol=8e-3, atol=8e-3)
    torch.testing.assert_close(dx.double().cpu(), ref_dx, rtol=8e-3, atol=8e-3)
    torch.testing.assert_close(db.double().cpu(), ref_db, rtol=3e-2, atol=3e-2)


def test_no_grad_call_gives_the_same_values():
    x = channels_last((2, 3, 4, 4), 6)
    bias = torch.randn(3).to(DEVICE)
    with torch.no_grad():
        y = bias_silu(x, bias, backend="triton")
    torch.testing.assert_close(y, F.silu(x + bias.view(1, -1, 1, 1)), rtol=1e-6, atol=1e-6)


def test_dispatch():
    x = torch.randn(2, 3, 4, 4)  # NCHW
    bias = torch.randn(3)
    torch.testing.assert_close(bias_silu(x, bias), F.silu(x + bias.view(1, -1, 1, 1)))  # auto: the reference
    with pytest.raises(ValueError, match="bias_silu: backend 'triton' needs a channels-last"):
        bias_silu(x, bias, backend="triton")
    with pytest.raises(ValueError, match="bias_silu: backend must be one of"):
        bias_silu(x, bias, backend="cuda")


def test_ss2d_with_one_pass_bias_silu_matches_its_default(monkeypatch):
    from mambaad_cli.model.hss import SS2D

    torch.manual_seed(0)
    block = SS2D(8, d_state=4, directions=4, scan="sweep", scan_backend="torch").double()
    x = torch.randn(2, 5, 6, 8, dtype=torch.float64)
    outs = {}
    for knob in ("0", "1"):
        y, gx, grads = run_with_knob(monkeypatch, "MAMBAAD_BIAS_SILU", knob, block, x,
                                     lambda y: y.square().sum())
        outs[knob] = (y, gx, grads["conv2d.weight"], grads["conv2d.bias"])
    for a, b in zip(outs["0"], outs["1"], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("knob", "cuda", "split"), [
    (None, True, True), (None, False, False), ("auto", False, False), ("1", False, True), ("0", True, False)])
def test_the_split_is_the_default_on_gpus_only(monkeypatch, knob, cuda, split):
    from types import SimpleNamespace

    from mambaad_cli.model.hss import _bias_silu_split

    set_knob(monkeypatch, "MAMBAAD_BIAS_SILU", knob)
    assert _bias_silu_split(SimpleNamespace(is_cuda=cuda)) is split


@pytest.mark.skipif(not torch.cuda.is_available(), reason="autocast bf16 on a GPU")
def test_ss2d_under_bf16_autocast_on_a_gpu_matches_its_default(monkeypatch):
    from mambaad_cli.model.hss import SS2D

    torch.manual_seed(0)
    block = SS2D(32, scan="hilbert", scan_backend="torch").cuda()
    x = torch.randn(2, 16, 16, 32, device="cuda")
    outs = {}
    for knob in ("0", "1"):
        y, gx, grads = run_with_knob(monkeypatch, "MAMBAAD_BIAS_SILU", knob, block, x,
                                     lambda y: y.float().square().sum(), autocast=torch.bfloat16)
        outs[knob] = (y.float(), gx, grads["conv2d.weight"], grads["conv2d.bias"])
    for a, b in zip(outs["0"], outs["1"], strict=True):
        torch.testing.assert_close(b, a, rtol=0.05, atol=0.05 * a.abs().max().item())
