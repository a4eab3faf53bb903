"""The chunked PyTorch selective scan against the float64 sequential loop, and the scan dispatcher."""

from __future__ import annotations

import math

import pytest
import torch

from kernels import selective_scan, selective_scan_ref, selective_scan_torch
from kernels.dispatch import BackendUnavailableError, resolve_backend
from kernels.torch_scan import _pair_scan_

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch=2, dim=4, length=11, n_state=3, groups=2, *, z=True, D=True, bias=True, softplus=True,
                dtype=torch.float32, seed=0, grouped=True):
    """Random scan inputs as a dict; delta stays positive when no softplus makes it so."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    bc_shape = (batch, groups, n_state, length) if grouped else (batch, n_state, length)
    inputs = {
        "u": rnd(batch, dim, length),
        "delta": rnd(batch, dim, length) if softplus else torch.rand(batch, dim, length, generator=gen,
                                                                          dtype=torch.float64) + 0.05,
        "A": -torch.exp(rnd(dim, n_state) * 0.5),
        "B": rnd(*bc_shape),
        "C": rnd(*bc_shape),
        "D": rnd(dim) if D else None,
        "z": rnd(batch, dim, length) if z else None,
        "delta_bias": rnd(dim) * 0.5 if bias else None,
    }
    return {k: (v.to(dtype) if v is not None else None) for k, v in inputs.items()}


def run_with_grads(fn, inputs, softplus, grad_out, **kwargs):
    """(output, {name: gradient}) of fn, with every given input a fresh leaf."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items() if v is not None}
    out = fn(**{k: leaves.get(k) for k in NAMES}, delta_softplus=softplus, **kwargs)
    grads = torch.autograd.grad(out, list(leaves.values()), grad_out.to(out.dtype))
    return out, dict(zip(leaves, grads, strict=True))


def reference_with_grads(inputs, softplus, grad_out):
    as64 = {k: (v.double() if v is not None else None) for k, v in inputs.items()}
    return run_with_grads(selective_scan_ref, as64, softplus, grad_out)


def assert_close_scaled(actual, expected, rtol, atol, what):
    """allclose with atol relative to the largest reference value: gradients summed over L get large."""
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol * scale, msg=what)


CASES = {  # name: (make_inputs kwargs, softplus, chunk)
    "L not a multiple of the chunk": (dict(length=37), True, 8),
    "L = 1": (dict(length=1), True, 8),
    "L = one chunk": (dict(length=8), True, 8),
    "L = one chunk + 1": (dict(length=9), False, 8),
    "odd chunk, default-size L": (dict(length=70, dim=2, batch=1), True, 7),
    "default chunk, several chunks": (dict(length=150, dim=2), True, None),
    "N = 1": (dict(n_state=1, length=20), True, 8),
    "G = 1": (dict(groups=1, length=20), True, 8),
    "B, C as (batch, N, L)": (dict(grouped=False, length=20), True, 8),
    "G = dim": (dict(groups=4, dim=4, length=20), True, 8),
    "no z, D, delta_bias": (dict(z=False, D=False, bias=False, softplus=False, length=20), False, 8),
    "z only, softplus off": (dict(D=False, bias=False, softplus=False, length=20), False, 4),
    "D and delta_bias, no z": (dict(z=False, length=20), True, 4),
}


@pytest.mark.parametrize("case", list(CASES))
def test_fp32_forward_and_gradients_match_float64_loop(case):
    kwargs, softplus, chunk = CASES[case]
    inputs = make_inputs(**kwargs)
    grad_out = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref_out, ref_grads = reference_with_grads(inputs, softplus, grad_out)
    extra = {} if chunk is None else {"chunk": chunk}
    out, grads = run_with_grads(selective_scan_torch, inputs, softplus, grad_out, **extra)

    assert out.dtype == torch.float32 and out.shape == inputs["u"].shape
    assert_close_scaled(out, ref_out, rtol=1e-4, atol=1e-5, what=f"{case}: output")
    assert set(grads) == set(ref_grads)
    for name, grad in grads.items():
        assert grad.dtype == inputs[name].dtype and grad.shape == inputs[name].shape, name
        assert_close_scaled(grad, ref_grads[name], rtol=1e-4, atol=1e-5, what=f"{case}: grad {name}")


@pytest.mark.parametrize("case", ["L not a multiple of the chunk", "G = dim", "z only, softplus off"])
def test_float64_path_matches_loop_to_rounding(case):
    kwargs, softplus, chunk = CASES[case]
    inputs = make_inputs(**kwargs, dtype=torch.float64)
    grad_out = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref_out, ref_grads = reference_with_grads(inputs, softplus, grad_out)
    out, grads = run_with_grads(selective_scan_torch, inputs, softplus, grad_out, chunk=chunk)
    assert out.dtype == torch.float64
    assert_close_scaled(out, ref_out, rtol=1e-10, atol=1e-12, what="output")
    for name, grad in grads.items():
        assert_close_scaled(grad, ref_grads[name], rtol=1e-10, atol=1e-12, what=f"grad {name}")


@pytest.mark.parametrize("softplus,groups,chunk", [(True, 2, 2), (False, 1, 3)])
def test_gradcheck_float64(softplus, groups, chunk):
    inputs = make_inputs(batch=1, dim=2, length=5, n_state=2, groups=groups, softplus=softplus,
                         dtype=torch.float64, seed=3)
    leaves = [inputs[k].clone().requires_grad_(True) for k in NAMES]

    def fn(*args):
        return selective_scan_torch(*args, delta_softplus=softplus, chunk=chunk)

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_extreme_deltas_underflow_without_nan():
    # delta * A down to about -600 (exp underflows to 0 in fp32); delta + bias above softplus's threshold 20
    inputs = make_inputs(length=30, dim=4, n_state=4, groups=2, seed=4)
    inputs["A"] = -torch.linspace(1.0, 16.0, 16).reshape(4, 4)
    inputs["delta"] = inputs["delta"].abs() * 15.0
    inputs["delta_bias"] = torch.tensor([0.0, 5.0, 10.0, 25.0])
    grad_out = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ref_out, ref_grads = reference_with_grads(inputs, True, grad_out)
    out, grads = run_with_grads(selective_scan_torch, inputs, True, grad_out, chunk=8)
    assert torch.isfinite(out).all()
    assert_close_scaled(out, ref_out, rtol=1e-4, atol=1e-5, what="output")
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), name
        assert_close_scaled(grad, ref_grads[name], rtol=1e-4, atol=1e-5, what=f"grad {name}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(dtype):
    inputs = make_inputs(length=21, seed=6)
    for name in ("u", "delta", "B", "C", "z"):  # A, D, delta_bias stay fp32 as mamba_ssm wants them
        inputs[name] = inputs[name].to(dtype)
    grad_out = torch.randn(inputs["u"].shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    ref_out, ref_grads = reference_with_grads(inputs, True, grad_out.to(dtype))
    out, grads = run_with_grads(selective_scan_torch, inputs, True, grad_out, chunk=8)
    assert out.dtype == dtype
    assert_close_scaled(out, ref_out, rtol=3e-2, atol=5e-2, what="output")
    for name, grad in grads.items():
        assert grad.dtype == inputs[name].dtype, name
        assert_close_scaled(grad, ref_grads[name], rtol=3e-2, atol=5e-2, what=f"grad {name}")


def test_saves_only_inputs_and_chunk_start_states():
    batch, dim, length, n_state, chunk = 2, 4, 64, 3, 8
    inputs = make_inputs(batch=batch, dim=dim, length=length, n_state=n_state)
    leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        selective_scan_torch(**leaves, delta_softplus=True, chunk=chunk)
    budget = sum(v.numel() for v in inputs.values()) + batch * dim * math.ceil(length / chunk) * n_state
    assert sum(saved) <= budget  # tight: one more (batch, dim, L) tensor would exceed it


@pytest.mark.parametrize("length", [1, 2, 3, 5, 8, 13])
@pytest.mark.parametrize("reverse", [False, True])
def test_pair_scan_matches_sequential_recurrence(length, reverse):
    gen = torch.Generator().manual_seed(length)
    a = torch.rand(2, 1, length, 3, dtype=torch.float64, generator=gen)
    b = torch.randn(2, 1, length, 3, dtype=torch.float64, generator=gen)
    expected = torch.empty_like(b)
    h = torch.zeros_like(b[:, :, 0])
    for t in (reversed(range(length)) if reverse else range(length)):
        h = a[:, :, t] * h + b[:, :, t]
        expected[:, :, t] = h
    torch.testing.assert_close(_pair_scan_(a.clone(), b.clone(), reverse), expected, rtol=1e-12, atol=1e-12)


def test_chunk_length_must_be_positive():
    with pytest.raises(ValueError, match="chunk"):
        selective_scan_torch(**make_inputs(length=4), chunk=0)


# --- the dispatcher ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("triton_ok, cuda_ok, expected", [
    (True, True, "triton"), (False, True, "cuda"), (False, False, "torch"),
])
def test_auto_on_a_gpu_prefers_triton_then_mamba_ssm(monkeypatch, triton_ok, cuda_ok, expected):
    from types import SimpleNamespace

    from kernels import dispatch

    monkeypatch.setattr(dispatch, "_triton_available", lambda: triton_ok)
    monkeypatch.setattr(dispatch, "cuda_available", lambda: cuda_ok)
    assert resolve_backend("auto", SimpleNamespace(is_cuda=True)) == expected


@pytest.mark.parametrize("backend, expected", [("auto", "torch"), ("triton", "triton"), ("cuda", "cuda")])
def test_deterministic_mode_makes_auto_run_the_torch_scan_on_a_gpu(monkeypatch, backend, expected):
    """The Triton and CUDA backwards sum with atomics (runs differ: kernels/dispatch.resolve_backend), so
    under torch.use_deterministic_algorithms auto takes the torch path; a backend named explicitly stays.
    (conftest turns the mode back off after the test.)"""
    from types import SimpleNamespace

    from kernels import dispatch

    torch.use_deterministic_algorithms(True)
    monkeypatch.setattr(dispatch, "_triton_available", lambda: True)
    monkeypatch.setattr(dispatch, "cuda_available", lambda: True)
    assert resolve_backend(backend, SimpleNamespace(is_cuda=True)) == expected


def test_a_triton_without_gather_is_refused_in_one_line_and_auto_skips_it(monkeypatch):
    from types import SimpleNamespace

    import triton.language as tl

    from kernels import dispatch

    dispatch.triton_too_old.cache_clear()
    monkeypatch.delattr(tl, "gather")
    try:
        reason = dispatch.triton_too_old()
        assert "triton>=3.3" in reason
        with pytest.raises(BackendUnavailableError, match="backend 'triton'.*triton>=3.3"):
            dispatch.check_triton(torch.zeros(1))
        monkeypatch.setattr(dispatch, "cuda_available", lambda: False)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert resolve_backend("auto", SimpleNamespace(is_cuda=True)) == "torch"
    finally:
        dispatch.triton_too_old.cache_clear()


def test_auto_on_cpu_runs_the_torch_path():
    inputs = make_inputs(length=10)
    assert resolve_backend("auto", inputs["u"]) == "torch"
    expected = selective_scan_torch(**inputs, delta_softplus=True)
    for backend in ("auto", "torch"):
        torch.testing.assert_close(selective_scan(**inputs, delta_softplus=True, backend=backend), expected,
                                   rtol=0, atol=0)


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="'tpu'"):
        selective_scan(**make_inputs(length=4), backend="tpu")


def test_triton_backend_on_cpu_tensors_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(BackendUnavailableError, match="triton.*CUDA tensors"):
        selective_scan(**make_inputs(length=4), backend="triton")


def test_cuda_backend_without_mamba_ssm_or_gpu_is_a_clear_error():
    with pytest.raises(BackendUnavailableError, match="cuda"):
        selective_scan(**make_inputs(length=4), backend="cuda")


def _bad(name, value_fn):
    inputs = make_inputs(batch=2, dim=4, length=6, n_state=3, groups=2)
    inputs[name] = value_fn(inputs)
    return inputs


@pytest.mark.parametrize(
    "inputs,message",
    [
        (_bad("u", lambda i: i["u"][0]), "u must be"),
        (_bad("delta", lambda i: i["delta"][:, :, :5]), "delta must"),
        (_bad("A", lambda i: i["A"][:3]), "A must be"),
        (_bad("A", lambda i: i["A"][:, 0]), "A must be"),
        (_bad("B", lambda i: i["B"][:, :, :2]), "B must be"),
        (_bad("C", lambda i: i["C"][..., :5]), "C must be"),
        (_bad("B", lambda i: torch.randn(2, 3, 3, 6)), "groups of B"),
        (_bad("C", lambda i: i["C"][:, :1]), "B and C must have the same shape"),
        (_bad("D", lambda i: torch.randn(5)), "D must be"),
        (_bad("delta_bias", lambda i: torch.randn(4, 1)), "delta_bias must be"),
        (_bad("z", lambda i: i["z"][:1]), "z must"),
    ],
)
def test_shape_errors_name_the_argument(inputs, message):
    with pytest.raises(ValueError, match=message):
        selective_scan(**inputs, backend="torch")
