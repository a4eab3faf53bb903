"""instance_norm_silu (kernels/instance_norm.py): the Triton kernels against F.instance_norm + F.silu in
float64, forward and input gradient; the dispatch; the LSS branches that use it.

Without a GPU the kernels run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1): tiny maps.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernels.instance_norm import instance_norm_silu, instance_norm_silu_torch
from mambaad_cli.model.lss import conv_norm_silu

pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


pytestmark = pytest.mark.usefixtures("triton_kernels_run")


def channels_last(shape, mean=0.0, std=1.0, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * std + mean
    return x.to(DEVICE, dtype).contiguous(memory_format=torch.channels_last)


def reference(x, dy):
    # NCHW float64 (instance_norm's CPU backward is wrong for one channels-last image: see below)
    xr = x.detach().double().cpu().contiguous().requires_grad_()
    y = F.silu(F.instance_norm(xr, eps=1e-5))
    (dx,) = torch.autograd.grad(y, xr, dy.double().cpu().contiguous())
    return y, dx


# (B, C, H, W), rows per program: several chunks with a short last one, channels over two programs with a
# partial one, W = 1 and H = 1, a large mean over a small spread (E[x^2] - E[x]^2 would cancel)
CASES = {
    "one chunk": ((2, 5, 5, 7), 256, 0.0, 1.0),
    "chunks, short last": ((2, 3, 5, 7), 8, 0.0, 1.0),
    "channels over two programs": ((2, 70, 3, 4), 4, 0.5, 2.0),
    "one column": ((3, 4, 9, 1), 4, 0.0, 1.0),
    "one row": ((1, 6, 1, 10), 4, 0.0, 1.0),
    "large mean": ((2, 4, 6, 6), 8, 300.0, 0.5),
    "tiles a chunk, a short last, large mean": ((1, 3, 20, 10), 128, 300.0, 0.5),
    "more than MAX_CHUNKS chunks of 8 rows: longer chunks": ((1, 3, 24, 30), 8, 0.0, 1.0),
}


def test_large_maps_take_longer_chunks(monkeypatch):
    # an image's chunk statistics fit one tile: at most MAX_CHUNKS chunks, whatever the map's size
    from kernels import instance_norm

    monkeypatch.delenv("MAMBAAD_NORM_ROWS", raising=False)
    monkeypatch.delenv("MAMBAAD_NORM_MIN_PROGRAMS", raising=False)  # the default: no target
    for side in (16, 64, 128, 256):
        x = torch.empty(1, 2, side, side)
        _, _, hw, rows, sub, _ = instance_norm._layout(x)
        assert -(-hw // rows) <= instance_norm.MAX_CHUNKS and rows % sub == 0
        assert rows == (256 if hw <= 256 * 64 else hw // 64)
    assert instance_norm._layout(torch.empty(1, 2, 1024, 1024))[3] == instance_norm.MAX_ROWS  # unrolled


@pytest.mark.parametrize("shape", [(16, 64, 64, 64), (16, 512, 8, 8), (64, 64, 64, 64), (1, 2, 256, 256),
                                   (2, 3, 24, 30)])
def test_small_launches_take_shorter_chunks(shape, monkeypatch):
    # with a target (developer knob; none by default), rows halve from 256 while the launch is short of it,
    # down to one tile and up to MAX_CHUNKS chunks an image; never longer than without
    from kernels import instance_norm

    target = 1024
    monkeypatch.delenv("MAMBAAD_NORM_ROWS", raising=False)
    monkeypatch.setenv("MAMBAAD_NORM_MIN_PROGRAMS", str(target))
    x = torch.empty(shape)
    batch, channels, hw, rows, sub, block_c = instance_norm._layout(x)
    monkeypatch.setenv("MAMBAAD_NORM_MIN_PROGRAMS", "0")
    old_rows = instance_norm._layout(x)[3]
    programs = -(-hw // rows) * -(-channels // block_c) * batch
    assert rows <= old_rows and rows % sub == 0 and -(-hw // rows) <= instance_norm.MAX_CHUNKS
    shorter_fits = rows > instance_norm.MIN_ROWS and -(-hw // (rows // 2)) <= instance_norm.MAX_CHUNKS
    assert programs >= target or not shorter_fits
    if rows < old_rows:  # it halved only while short of the target
        assert -(-hw // (2 * rows)) * -(-channels // block_c) * batch < target


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_matches_float64_reference(case, monkeypatch):
    shape, rows, mean, std = CASES[case]
    monkeypatch.setenv("MAMBAAD_NORM_ROWS", str(rows))
    x = channels_last(shape, mean, std).requires_grad_()
    dy = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = instance_norm_silu(x, backend="triton")
    (dx,) = torch.autograd.grad(y, x, dy.to(DEVICE, torch.float32))
    ref_y, ref_dx = reference(x, dy)
    assert y.shape == shape and y.dtype == torch.float32
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert dx.is_contiguous(memory_format=torch.channels_last)
    # fp32 statistics: xhat carries about ulp(mean) / std of error (4 ulps allowed); dx (which scales
    # with 1 / std) compared relative to its size
    tol = 2e-5 + 4 * torch.finfo(torch.float32).eps * abs(mean) / std
    scale = ref_dx.abs().max().item()
    torch.testing.assert_close(y.double().cpu(), ref_y, rtol=0, atol=tol)
    torch.testing.assert_close(dx.double().cpu() / scale, ref_dx / scale, rtol=0, atol=tol)


def test_bf16_keeps_dtype_and_layout(monkeypatch):
    monkeypatch.setenv("MAMBAAD_NORM_ROWS", "8")
    x = channels_last((2, 6, 5, 5), 1.0, 2.0, dtype=torch.bfloat16).requires_grad_()
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = instance_norm_silu(x, backend="triton")
    (dx,) = torch.autograd.grad(y, x, dy.to(DEVICE, torch.bfloat16))
    assert y.dtype == dx.dtype == torch.bfloat16
    assert y.is_contiguous(memory_format=torch.channels_last)
    ref_y, ref_dx = reference(x, dy.to(torch.bfloat16))  # statistics of the very bf16 values
    torch.testing.assert_close(y.double().cpu(), ref_y, rtol=0.02, atol=0.02)
    torch.testing.assert_close(dx.double().cpu(), ref_dx, rtol=0.03, atol=0.03)


def test_gradient_from_a_strided_upstream(monkeypatch):
    # the upstream gradient may come in another layout: the backward reads it as channels-last
    monkeypatch.setenv("MAMBAAD_NORM_ROWS", "8")
    x = channels_last((2, 3, 4, 5)).requires_grad_()
    dy = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    y = instance_norm_silu(x, backend="triton")
    (dx,) = torch.autograd.grad(y, x, dy.to(DEVICE, torch.float32).contiguous())
    torch.testing.assert_close(dx.double().cpu(), reference(x, dy)[1], rtol=0, atol=2e-5)


def test_auto_falls_back_to_the_reference():
    # NCHW maps (and CPU maps) take F.instance_norm + F.silu: the very same numbers
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(instance_norm_silu(x), instance_norm_silu_torch(x))
    one = torch.randn(2, 3, 1, 1).contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="spatial"):  # instance_norm's own message: one position
        instance_norm_silu(one)


@pytest.mark.parametrize("batch", [1, 2])
def test_reference_gradient_on_channels_last(batch):
    # the torch path's gradient for channels-last maps and gradients (one image: a workaround of
    # instance_norm's CPU backward, which gets this case wrong in torch 2.14.1)
    x = torch.randn(batch, 5, 6, 6, dtype=torch.float64).float()
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    dy = torch.randn(batch, 5, 6, 6).contiguous(memory_format=torch.channels_last)
    (dx,) = torch.autograd.grad(instance_norm_silu_torch(x), x, dy)
    torch.testing.assert_close(dx.double(), reference(x, dy.double())[1], rtol=0, atol=1e-5)


def test_compiled_regions_get_the_torch_path(monkeypatch):
    # under torch.compile, auto hands the norm to the compiler (as before v1.7) instead of the Triton kernels
    from kernels import instance_norm

    def no_triton(x, backend):
        raise AssertionError("the Triton path was considered inside a compiled region")

    monkeypatch.setattr(instance_norm, "_use_triton", no_triton)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(instance_norm.instance_norm_silu(x), instance_norm_silu_torch(x))


def test_triton_backend_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="channels-last"):
        instance_norm_silu(torch.randn(2, 3, 4, 4, device=DEVICE), backend="triton")
    with pytest.raises(ValueError, match="backend must be one of"):
        instance_norm_silu(torch.randn(2, 3, 4, 4), backend="cudnn")


def test_lss_branch_keeps_its_state_dict_keys():
    # checkpoints written with Sequential(conv, InstanceNorm2d, SiLU) still load
    block = conv_norm_silu(4, 5, depthwise=True)
    assert list(block.state_dict()) == ["0.weight"]
    assert list(conv_norm_silu(4, 1, depthwise=False).state_dict()) == ["0.weight", "0.bias"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="autocast bf16 on a GPU")
def test_branch_under_autocast_matches_pytorch(monkeypatch):
    # a local branch on a channels-last map under bf16 autocast, fused against PyTorch's path
    torch.manual_seed(0)
    block = conv_norm_silu(64, 5, depthwise=True).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(4, 64, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    results = []
    for backend in ("auto", "torch"):
        monkeypatch.setenv("MAMBAAD_NORM_BACKEND", backend)
        xi = x.clone().requires_grad_()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = block(xi)
        (dx,) = torch.autograd.grad(y.float().square().sum(), xi)
        results.append((y, dx))
    (y, dx), (ref_y, ref_dx) = results
    assert y.dtype == ref_y.dtype and y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y.float(), ref_y.float(), rtol=0.02, atol=0.02)
    torch.testing.assert_close(dx, ref_dx, rtol=0.05, atol=0.05 * ref_dx.abs().max().item())
