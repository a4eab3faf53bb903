"""BiasBeforeNormConv2d (model/conv_bias.py): the LSS local branches' 1x1 convs leave out the bias that the
following instance norm cancels: in scoring by default (auto), in training too with
MAMBAAD_NORM_CONV_BIAS=skip. Against the bias added (float64, a bias
far from zero): the same outputs and input / weight gradients, and the bias's gradient exactly zero where
autograd's is zero up to rounding."""

from __future__ import annotations

import pytest
import torch
from knob_runs import run_with_knob

from mambaad_cli.model.conv_bias import NORM_KNOB, BiasBeforeNormConv2d
from mambaad_cli.model.lss import LSSModule, conv_norm_silu


def _run(module, x, knob, monkeypatch):
    def loss(y):
        return (y * torch.linspace(-1, 2, y.numel(), dtype=y.dtype).view_as(y)).sum()

    return run_with_knob(monkeypatch, NORM_KNOB, knob, module, x, loss)


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_norm_cancels_the_bias(monkeypatch, channels_last):
    torch.manual_seed(0)
    block = conv_norm_silu(6, 1, depthwise=False).double()
    conv = block[0]
    assert isinstance(conv, BiasBeforeNormConv2d)
    with torch.no_grad():
        conv.bias.copy_(torch.linspace(-3.0, 5.0, 6))  # far from the zeros of its init
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y_add, gx_add, g_add = _run(block, x, "add", monkeypatch)
    y_skip, gx_skip, g_skip = _run(block, x, "skip", monkeypatch)
    torch.testing.assert_close(y_skip, y_add, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gx_skip, gx_add, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(g_skip["0.weight"], g_add["0.weight"], rtol=1e-9, atol=1e-10)
    assert torch.equal(g_skip["0.bias"], torch.zeros(6, dtype=torch.float64))
    assert g_add["0.bias"].abs().max() < 1e-10  # autograd's: zero up to rounding
    # the bias does change the conv's own output: the skip is right only because the norm follows
    monkeypatch.setenv(NORM_KNOB, "skip")
    with_bias = torch.nn.functional.conv2d(x, conv.weight, conv.bias)
    assert (conv(x) - with_bias).abs().max() > 1.0


def test_lss_module_and_its_state_dict(monkeypatch):
    torch.manual_seed(1)
    module = LSSModule(8, num_blocks=1, d_state=4, directions=2, scan="sweep", scan_backend="torch").double()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, BiasBeforeNormConv2d):
                m.bias.uniform_(-2.0, 2.0)
    assert sum(isinstance(m, BiasBeforeNormConv2d) for m in module.modules()) == 4
    x = torch.randn(2, 4, 4, 8, dtype=torch.float64)
    y_add, gx_add, g_add = _run(module, x, "add", monkeypatch)
    y_skip, gx_skip, g_skip = _run(module, x, "skip", monkeypatch)
    torch.testing.assert_close(y_skip, y_add, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(gx_skip, gx_add, rtol=1e-8, atol=1e-10)
    assert g_skip.keys() == g_add.keys() == dict(module.named_parameters()).keys()
    for name, g in g_add.items():
        torch.testing.assert_close(g_skip[name], g, rtol=1e-8, atol=1e-10, msg=name)
    assert "local5.0.0.bias" in module.state_dict()


@pytest.mark.parametrize(("knob", "grad", "adds"), [
    ("auto", False, False), ("auto", True, True), ("skip", False, False), ("skip", True, False),
    ("add", False, True), ("add", True, True), ("off", False, False), ("off", True, True)])
def test_where_the_bias_is_left_out(monkeypatch, knob, grad, adds):
    monkeypatch.setenv(NORM_KNOB, knob)
    conv = BiasBeforeNormConv2d(4, 4, 1)
    with torch.no_grad():
        conv.bias.fill_(0.5)
    x = torch.randn(1, 4, 3, 3)
    with torch.set_grad_enabled(grad):
        y = conv(x)
    torch.testing.assert_close(y, torch.nn.functional.conv2d(x, conv.weight, conv.bias if adds else None))
    assert (y.grad_fn is not None and y.grad_fn.name().startswith("_ZeroBiasGrad")) is (grad and not adds)


def test_the_default_is_auto(monkeypatch):
    monkeypatch.delenv(NORM_KNOB, raising=False)
    conv = BiasBeforeNormConv2d(4, 4, 1)
    with torch.no_grad():
        conv.bias.fill_(0.5)
        x = torch.randn(1, 4, 3, 3)
        torch.testing.assert_close(conv(x), torch.nn.functional.conv2d(x, conv.weight))
    torch.testing.assert_close(conv(x), torch.nn.functional.conv2d(x, conv.weight, conv.bias))
