"""kernels/cosine_distance.py: the Triton kernel (the interpreter on CPUs) against a float64 formula and
against the torch path the anomaly map has always used, in every layout and dtype the model hands it."""

from __future__ import annotations

import pytest
import torch

from kernels.cosine_distance import cosine_distance, cosine_distance_torch
from mambaad_cli.model.anomaly_map import anomaly_map

pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


pytestmark = pytest.mark.usefixtures("triton_kernels_run")


def float64_distance(e: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    e, d = e.double(), d.double()
    cos = (e * d).sum(1) / (e.norm(dim=1).clamp_min(1e-8) * d.norm(dim=1).clamp_min(1e-8))
    return 1.0 - cos


def maps(shape, dtype, channels_last, seed):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(shape, generator=g)
    d = e + 0.7 * torch.randn(shape, generator=g)  # correlated, as a reconstruction is: distances ~0.2
    e, d = (t.to(DEVICE, dtype) for t in (e, d))
    if channels_last:
        e, d = (t.contiguous(memory_format=torch.channels_last) for t in (e, d))
    return e, d


@pytest.mark.parametrize(("shape", "dtype", "channels_last"), [
    ((2, 37, 5, 7), torch.float32, False),  # channels and pixels not multiples of the blocks
    ((2, 64, 8, 8), torch.bfloat16, True),  # the model's case under bf16 autocast + channels-last
    ((1, 3, 1, 1), torch.float32, True),  # one pixel, fewer channels than a block
    ((3, 96, 4, 20), torch.bfloat16, False),
])
def test_triton_matches_float64_and_the_torch_path(shape, dtype, channels_last):
    e, d = maps(shape, dtype, channels_last, seed=shape[1])
    got = cosine_distance(e, d, backend="triton")
    assert got.shape == (shape[0], *shape[2:]) and got.dtype == torch.float32
    want = float64_distance(e.cpu(), d.cpu())
    assert (got.cpu().double() - want).abs().max() < 2e-6  # fp32 sums of the same (bf16-exact) inputs
    torch.testing.assert_close(got, cosine_distance_torch(e, d), rtol=0, atol=2e-6)


def test_the_models_maps_16_bit_channels_last_and_fp32_nchw():
    # under bf16 autocast the encoder's maps are bf16 channels-last and the decoder's fp32 NCHW (its
    # residual stream): each read in its own dtype and layout
    e, d = maps((2, 24, 6, 5), torch.float32, False, seed=4)
    e = e.bfloat16().contiguous(memory_format=torch.channels_last)
    got = cosine_distance(e, d, backend="triton")
    assert (got.cpu().double() - float64_distance(e.cpu(), d.cpu())).abs().max() < 2e-6
    torch.testing.assert_close(got, cosine_distance_torch(e, d), rtol=0, atol=2e-6)


def test_auto_takes_the_kernel_for_the_models_mixed_maps(monkeypatch):
    import kernels.cosine_distance as cd
    import kernels.dispatch

    monkeypatch.delenv("MAMBAAD_COSINE_BACKEND", raising=False)
    monkeypatch.setattr(kernels.dispatch, "triton_ready", lambda: True)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))  # as on a GPU
    e, d = maps((1, 8, 2, 2), torch.float32, False, seed=2)
    b16 = e.bfloat16()
    assert cd._use_triton(b16, d, "auto") and cd._use_triton(e, b16, "auto")  # one 16-bit map is enough
    assert cd._use_triton(b16, b16, "auto")
    assert not cd._use_triton(e, d, "auto")  # fp32 (the paper's recipe): the torch path


def test_mixed_layouts_and_a_zero_pixel():
    e, d = maps((2, 16, 3, 4), torch.float32, False, seed=3)
    d = d.contiguous(memory_format=torch.channels_last)  # each map read with its own strides
    e[1, :, 2, 3] = 0.0  # |e| = 0: cos 0, distance 1, as F.cosine_similarity gives
    got = cosine_distance(e, d, backend="triton")
    assert got[1, 2, 3].item() == pytest.approx(1.0)
    torch.testing.assert_close(got, cosine_distance_torch(e, d), rtol=0, atol=2e-6)


def test_backend_choice_and_bad_input(monkeypatch):
    e, d = maps((1, 8, 2, 2), torch.float32, False, seed=1)
    with pytest.raises(ValueError, match="backend must be one of"):
        cosine_distance(e, d, backend="cuda")
    with pytest.raises(ValueError, match="without autograd"):
        cosine_distance(e.clone().requires_grad_(), d, backend="triton")
    with pytest.raises(ValueError, match="of one shape"):
        cosine_distance(e, d[:, :4], backend="triton")
    import kernels.cosine_distance as cd

    calls = []
    fake = lambda *a: calls.append(1) or cd.cosine_distance_torch(*a)  # noqa: E731
    monkeypatch.setattr(cd, "_cosine_distance_triton", fake)
    monkeypatch.setenv("MAMBAAD_COSINE_BACKEND", "torch")
    cosine_distance(e.bfloat16(), d.bfloat16())
    assert not calls
    monkeypatch.setenv("MAMBAAD_COSINE_BACKEND", "triton")
    cosine_distance(e, d)
    assert calls == [1]
    # auto, the default: Triton on CUDA maps with a 16-bit one, never with autograd, never on two fp32 maps
    on_gpu = DEVICE == "cuda"
    for env in (None, "auto"):
        calls.clear()
        if env is None:
            monkeypatch.delenv("MAMBAAD_COSINE_BACKEND", raising=False)
        else:
            monkeypatch.setenv("MAMBAAD_COSINE_BACKEND", env)
        cosine_distance(e, d)
        assert not calls
        cosine_distance(e.bfloat16(), d.bfloat16())
        assert calls == ([1] if on_gpu else [])
        grad = cosine_distance(e.bfloat16().requires_grad_(), d.bfloat16())
        assert grad.requires_grad and len(calls) == (1 if on_gpu else 0)


def test_anomaly_map_is_the_same_with_either_backend(monkeypatch):
    enc = [maps((2, c, s, s), torch.bfloat16, True, seed=c)[0] for c, s in ((16, 16), (32, 8), (64, 4))]
    dec = [maps((2, c, s, s), torch.bfloat16, True, seed=c + 1)[1] for c, s in ((16, 16), (32, 8), (64, 4))]
    monkeypatch.setenv("MAMBAAD_COSINE_BACKEND", "torch")
    want = anomaly_map(enc, dec, out_size=32, sigma=4.0)
    monkeypatch.setenv("MAMBAAD_COSINE_BACKEND", "triton")
    got = anomaly_map(enc, dec, out_size=32, sigma=4.0)
    assert got.shape == (2, 32, 32) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
