"""max_pool2d (kernels/max_pool.py): the Triton kernel against F.max_pool2d, exactly (a max is exact), NaN and
-inf included; the dispatch (auto, the knob, forward only); MaxPool2dNHWC / from_module.

Without a GPU the kernel runs in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1): tiny maps.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from knob_runs import set_knob
from torch import nn

import kernels.max_pool as mp
from kernels.max_pool import MaxPool2dNHWC, from_module, max_pool2d, max_pool2d_torch

pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.usefixtures("triton_kernels_run")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def channels_last(shape, seed, dtype=torch.float32, device=DEVICE):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(device, dtype).contiguous(memory_format=torch.channels_last)


def check(x, kernel_size, stride, padding):
    with torch.no_grad():
        y = max_pool2d(x, kernel_size, stride, padding, backend="triton")
    ref = F.max_pool2d(x, kernel_size, stride, padding)
    assert y.shape == ref.shape and y.dtype == x.dtype and y.device == x.device
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, ref, equal_nan=True, rtol=0, atol=0)
    return y, ref


# (B, C, H, W), kernel_size, stride, padding: the stem's settings at small sizes (even and odd sides),
# channels not a power of two (and over three column blocks), kernel 2 stride 2, a non-square window
CASES = {
    "stem 16x16": ((2, 64, 16, 16), 3, 2, 1),
    "stem odd 15x17": ((1, 64, 15, 17), 3, 2, 1),
    "C=24": ((2, 24, 9, 10), 3, 2, 1),
    "C=3": ((2, 3, 7, 6), 3, 2, 1),
    "k2 s2 p0": ((1, 24, 8, 11), 2, 2, 0),
    "C=130 k(3,2) s(1,2) p(1,0)": ((1, 130, 5, 4), (3, 2), (1, 2), (1, 0)),
}


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=list(DTYPES))
@pytest.mark.parametrize(("shape", "k", "s", "p"), CASES.values(), ids=list(CASES))
def test_matches_f_max_pool2d_exactly(shape, k, s, p, dtype):
    x = channels_last(shape, sum(shape), dtype)
    y, ref = check(x, k, s, p)
    assert torch.equal(y, ref)


@pytest.mark.parametrize("dtype", DTYPES.values(), ids=list(DTYPES))
def test_nan_and_inf_in_windows(dtype):
    x = channels_last((2, 5, 9, 8), 7, dtype)
    x[0, :, :3, :3] = float("-inf")  # whole windows at the corner (and so its padding taps) of -inf
    x[1, 1, 4, 4] = float("inf")
    x[1, 2, 0, 0] = float("nan")  # an edge pixel: in the padded corner window
    x[0, 3, 5, 2] = float("nan")  # inside: in several windows
    x[1, 4, 6, 7] = float("nan")
    x[1, 0, 3, 3:5] = float("-inf")
    y, ref = check(x, 3, 2, 1)
    assert torch.isnan(ref).sum() >= 3 and torch.isneginf(ref).any() and torch.isposinf(ref).any()
    assert torch.equal(torch.isnan(y), torch.isnan(ref))


def test_a_nan_is_not_hidden_by_a_larger_value():
    x = torch.zeros(1, 2, 4, 4).contiguous(memory_format=torch.channels_last).to(DEVICE)
    x[0, :, 0, 0] = float("nan")
    x[0, :, 1, 1] = 5.0  # after the NaN in the window's order
    x[0, :, 2, 2] = float("nan")  # after the 5 in its window
    y, _ = check(x, 2, 2, 0)
    assert torch.isnan(y[0, :, 0, 0]).all() and torch.isnan(y[0, :, 1, 1]).all()


def test_auto_on_cpu_is_the_reference(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(mp, "_forward", lambda *a, **k: pytest.fail("the Triton path ran"))
    x = channels_last((1, 4, 6, 6), 3, device="cpu")
    with torch.no_grad():
        assert torch.equal(max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1))
    with pytest.raises(ValueError, match="max_pool2d: backend 'triton' needs a channels-last"):
        max_pool2d(x, 3, 2, 1, backend="triton")


@pytest.mark.parametrize(("knob", "grad", "auto", "fits"), [
    (None, False, True, True), ("auto", False, True, True), ("torch", False, False, True),
    (None, True, True, False)])
def test_auto_condition(monkeypatch, knob, grad, auto, fits):
    """What auto hands use_triton_kernel: the knob's auto, and fits False for a map that needs a gradient."""
    seen = {}

    def spy(what, backend, fits, is_cuda, auto, needs):
        seen.update(fits=fits, auto=auto)
        return False

    set_knob(monkeypatch, mp.KNOB, knob)
    monkeypatch.setattr(mp, "use_triton_kernel", spy)
    x = channels_last((1, 4, 6, 6), 3, device="cpu").requires_grad_(grad)
    y = max_pool2d(x, 3, 2, 1)
    assert seen == {"fits": fits, "auto": auto} and torch.equal(y, max_pool2d_torch(x, 3, 2, 1))
    assert (y.grad_fn is not None) is grad


def test_triton_refuses_what_it_cannot_run():
    x = channels_last((1, 4, 6, 6), 3)
    for bad in (x.contiguous(), x.double(), x.requires_grad_(True)):
        with pytest.raises(ValueError, match="max_pool2d: backend 'triton' needs a channels-last"):
            max_pool2d(bad, 3, 2, 1, backend="triton")
    with pytest.raises(ValueError, match="max_pool2d: backend 'triton' needs"):
        max_pool2d(x.detach(), 3, 2, 2, backend="triton")  # padding > kernel_size / 2
    with pytest.raises(ValueError, match="max_pool2d: backend must be one of"):
        max_pool2d(x, 3, 2, 1, backend="cuda")


def test_module_keeps_the_settings_and_runs_the_kernel(monkeypatch):
    calls = []

    def triton_pool(x, kernel_size, stride=None, padding=0):
        calls.append((kernel_size, stride, padding))
        return max_pool2d(x, kernel_size, stride, padding, backend="triton")

    monkeypatch.setattr(mp, "max_pool2d", triton_pool)
    stem = nn.MaxPool2d(kernel_size=3, stride=2, padding=1).eval()
    m = from_module(stem)
    assert isinstance(m, MaxPool2dNHWC) and not m.training
    assert (m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices) == (3, 2, 1, 1,
                                                                                                 False, False)
    x = channels_last((2, 8, 9, 8), 5, torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(m(x), stem(x))
    assert calls == [(3, 2, 1)]


@pytest.mark.parametrize("settings", [{"ceil_mode": True}, {"dilation": 2}, {"return_indices": True}],
                         ids=["ceil_mode", "dilation 2", "return_indices"])
def test_module_falls_back_on_unsupported_settings(monkeypatch, settings):
    monkeypatch.setattr(mp, "max_pool2d", lambda *a, **k: pytest.fail("max_pool2d ran"))
    ref = nn.MaxPool2d(3, 2, 1, **settings)
    m = from_module(ref)
    assert not m.supported()
    x = channels_last((1, 4, 8, 9), 6)
    y, y_ref = m(x), ref(x)
    for a, b in zip(y if isinstance(y, tuple) else (y,), y_ref if isinstance(y_ref, tuple) else (y_ref,),
                    strict=True):
        assert torch.equal(a, b)


def test_the_resnet_encoder_runs_its_stem_pool_through_the_kernel(monkeypatch):
    # model/encoder.py swaps the backbone's nn.MaxPool2d for MaxPool2dNHWC: the same state dict and features,
    # the kernel on the stem's channels-last map, and the scoring fold still folds every BatchNorm
    import timm

    from mambaad_cli.config import EncoderConfig
    from mambaad_cli.model.encoder import FrozenEncoder
    from mambaad_cli.model.encoder_fold import folded_copy

    torch.manual_seed(0)
    enc = FrozenEncoder(EncoderConfig(name="resnet34.bt_in1k", weights="none")).to(DEVICE)
    assert enc.max_pools == 1 and type(enc.backbone.maxpool) is MaxPool2dNHWC
    plain = timm.create_model("resnet34.bt_in1k", features_only=True, out_indices=[1, 2, 3]).to(DEVICE).eval()
    assert list(plain.state_dict()) == list(enc.backbone.state_dict())
    plain.load_state_dict(enc.backbone.state_dict())
    calls, pool = [], mp.max_pool2d
    monkeypatch.setattr(mp, "max_pool2d", lambda *a: calls.append(1) or pool(*a, backend="triton"))
    x = channels_last((1, 3, 32, 32), seed=7)
    with torch.no_grad():
        got, want = enc.backbone(x), plain(x)
    assert calls == [1]
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)
    folded = folded_copy(enc.backbone)
    assert folded.unfolded == 0 and sum(type(m) is MaxPool2dNHWC for m in folded.module.modules()) == 1
