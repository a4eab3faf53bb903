"""BiasGradConv2d (mambaad_cli/model/conv_bias.py): nn.Conv2d's outputs and gradients, the bias's taken as a
product with a ones vector; where it applies; the models' state dicts unchanged. The 1x1 convs as one GEMM
with the bias in its epilogue (MAMBAAD_CONV1X1_GEMM, the default on CUDA): the same outputs and gradients,
and where."""

from __future__ import annotations

import pytest
import torch
from knob_runs import set_knob
from torch import nn

from kernels.channel_sums import channel_sums
from mambaad_cli.model.conv_bias import GEMM_KNOB, KNOB, BiasGradConv2d, gemm_1x1_on, product_bias_grad_on

CONVS = {  # (in, out, kernel, stride, groups): the model's kinds
    "1x1": (6, 5, 1, 1, 1),
    "depthwise 3x3": (6, 6, 3, 1, 6),
    "5x5 stride 2": (4, 3, 5, 2, 1),
}


def pair(spec, dtype=torch.float64):
    cin, cout, k, stride, groups = spec
    torch.manual_seed(0)
    ref = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups).to(dtype)
    ours = BiasGradConv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def run(conv, x, dy):
    x = x.clone().requires_grad_()
    y = conv(x)
    y.backward(dy)
    return y, x.grad, conv.weight.grad, conv.bias.grad


@pytest.mark.parametrize("channels_last", [True, False], ids=["channels-last", "NCHW"])
@pytest.mark.parametrize("spec", CONVS.values(), ids=list(CONVS))
def test_outputs_and_every_gradient_match_nn_conv2d_in_float64(spec, channels_last, monkeypatch):
    monkeypatch.setenv(KNOB, "mm")
    ref, ours = pair(spec)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, spec[0], 9, 7, dtype=torch.float64, generator=g).contiguous(memory_format=fmt)
    out = ref(x)
    dy = torch.randn(out.shape, dtype=torch.float64, generator=g).contiguous(memory_format=fmt)
    for a, b in zip(run(ref, x, dy), run(ours, x, dy), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    assert ours.bias.grad.abs().sum() > 0  # the bias's gradient was taken, not left at zero


def test_channel_sums_are_the_column_sums_in_either_layout():
    g = torch.randn(2, 5, 4, 3, dtype=torch.float64)
    exact = g.sum((0, 2, 3))
    torch.testing.assert_close(channel_sums(g.contiguous(memory_format=torch.channels_last)), exact)
    torch.testing.assert_close(channel_sums(g), exact)


def test_under_bf16_autocast_it_casts_as_autocast_does(monkeypatch):
    monkeypatch.setenv(KNOB, "mm")
    ref, ours = pair(CONVS["1x1"], torch.float32)
    x = torch.randn(2, 6, 8, 8).contiguous(memory_format=torch.channels_last)
    outs = {}
    for name, conv in (("ref", ref), ("ours", ours)):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        y.float().square().sum().backward()
        outs[name] = (y, conv.weight.grad, conv.bias.grad)
    assert outs["ours"][0].dtype == torch.bfloat16 and torch.equal(outs["ours"][0], outs["ref"][0])
    assert outs["ours"][1].dtype == outs["ours"][2].dtype == torch.float32
    torch.testing.assert_close(outs["ours"][1], outs["ref"][1])  # the same aten backward
    torch.testing.assert_close(outs["ours"][2], outs["ref"][2], rtol=2e-2, atol=2e-2)  # bf16 sums


@pytest.mark.parametrize("grad_mode", ["mm", "sum"], ids=["product backward", "autograd backward"])
def test_1x1_as_a_gemm_matches_nn_conv2d_in_float64(grad_mode, monkeypatch):
    monkeypatch.setenv(KNOB, grad_mode)
    monkeypatch.setenv(GEMM_KNOB, "any")
    linear = torch.nn.functional.linear
    calls = []
    monkeypatch.setattr(torch.nn.functional, "linear", lambda *a: calls.append(1) or linear(*a))
    ref, ours = pair(CONVS["1x1"])
    g, cl = torch.Generator().manual_seed(2), torch.channels_last
    x = torch.randn(3, 6, 9, 7, dtype=torch.float64, generator=g).contiguous(memory_format=cl)
    out = ref(x)
    dy = torch.randn(out.shape, dtype=torch.float64, generator=g).contiguous(memory_format=cl)
    got = run(ours, x, dy)
    assert calls == [1]  # the GEMM ran, not the conv
    assert got[0].is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(run(ref, x, dy), got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # scoring
        torch.testing.assert_close(ours(x), out, rtol=1e-12, atol=1e-12)
    assert calls == [1, 1]


@pytest.mark.parametrize(("knob", "spec", "channels_last", "bias", "on"), [
    ("any", "1x1", True, True, True), ("1", "1x1", True, True, False),  # "1" and "auto": CUDA only
    ("auto", "1x1", True, True, False), ("0", "1x1", True, True, False), (None, "1x1", True, True, False),
    ("any", "1x1", False, True, False),
    ("any", "depthwise 3x3", True, True, False), ("any", "5x5 stride 2", True, True, False),
    ("any", "1x1", True, False, True), ("any-biased", "1x1", True, True, True),  # unbiased too, by default
    ("any-biased", "1x1", True, False, False), ("biased", "1x1", True, True, False),  # biased: CUDA only
    ("any", "1x1", False, False, False), ("any", "depthwise 3x3", True, False, False)])
def test_where_the_gemm_applies(monkeypatch, knob, spec, channels_last, bias, on):
    set_knob(monkeypatch, GEMM_KNOB, knob)
    _, conv = pair(CONVS[spec])
    x = torch.randn(1, CONVS[spec][0], 4, 4, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert gemm_1x1_on(conv, x, conv.bias if bias else None) is on


@pytest.mark.parametrize(("knob", "gemms"), [("any", 1), ("any-biased", 0)])
def test_an_unbiased_1x1_as_a_gemm_matches_the_conv_in_scoring(monkeypatch, knob, gemms):
    """The LSS branches' 1x1 conv in scoring runs without its bias (BiasBeforeNormConv2d); under `any`
    (the default's, on any device) that bias-free conv is one GEMM too, with the conv's values."""
    from mambaad_cli.model.conv_bias import BiasBeforeNormConv2d

    monkeypatch.setenv(GEMM_KNOB, knob)
    linear = torch.nn.functional.linear
    calls = []
    monkeypatch.setattr(torch.nn.functional, "linear", lambda *a: calls.append(a[2]) or linear(*a))
    torch.manual_seed(3)
    conv = BiasBeforeNormConv2d(6, 5, 1).to(torch.float64)
    nn.init.normal_(conv.bias)  # a bias that would show if it were added
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        got = conv(x)
        want = torch.nn.functional.conv2d(x, conv.weight)
    assert len(calls) == gemms and all(b is None for b in calls)
    assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


@pytest.mark.parametrize(("knob", "on"), [(None, True), ("auto", True), ("1", True), ("0", False)])
@CUDA
def test_the_gemm_is_the_default_on_cuda(monkeypatch, knob, on):
    set_knob(monkeypatch, GEMM_KNOB, knob)
    conv = nn.Conv2d(4, 6, 1).cuda()
    x = torch.randn(2, 4, 3, 3, device="cuda").contiguous(memory_format=torch.channels_last)
    assert gemm_1x1_on(conv, x, conv.bias) is on


@pytest.mark.parametrize(("knob", "device", "grad", "expected"), [
    pytest.param("", "cuda", True, True, marks=CUDA),  # auto: CUDA
    ("", "cpu", True, False),
    ("mm", "cpu", True, True),
    pytest.param("sum", "cuda", True, False, marks=CUDA),
    ("sum", "cpu", True, False),
    ("mm", "cpu", False, False),  # no grad: nn.Conv2d's path
])
def test_where_the_product_applies(monkeypatch, knob, device, grad, expected):
    set_knob(monkeypatch, KNOB, knob or None)
    x = torch.empty(1, 2, 3, 3, device=device)
    bias = torch.zeros(2, device=device, requires_grad=True)
    with torch.set_grad_enabled(grad):
        assert product_bias_grad_on(x, bias) is expected
        assert product_bias_grad_on(x, None) is False
        assert product_bias_grad_on(x, bias.detach()) is False  # a frozen bias


def test_model_state_dict_keys_are_nn_conv2d_ones():
    from mambaad_cli.model.lss import LSSModule

    module = LSSModule(8, 1, scan_backend="torch")
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(isinstance(m, BiasGradConv2d) for m in convs if m.bias is not None)
    keys = set(module.state_dict())
    assert {"fuse.weight", "fuse.bias", "local5.0.0.weight", "local5.0.0.bias",
            "blocks.0.ss2d.conv2d.bias"} <= keys
