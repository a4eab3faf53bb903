"""``selective_scan``: checks the shapes once, then runs the chosen backend.

Backends: ``torch`` (kernels/torch_scan.py, any device), ``cuda`` (mamba_ssm's kernel, kernels/cuda.py),
``triton`` (kernels/triton_scan.py: CUDA tensors, or CPU tensors under TRITON_INTERPRET=1). ``auto`` picks,
for CUDA tensors, Triton (since v1.2 faster than mamba_ssm's kernel in fp32 on an H200 and level in bf16,
kernels/NOTES.md), else mamba_ssm's kernel when its extension is installed, and the torch path otherwise
(always on CPU), and the torch path under PyTorch's deterministic mode (``resolve_backend``). Triton is
imported only when the triton backend runs.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import os

import torch

from .cuda import cuda_available, selective_scan_cuda
from .torch_scan import selective_scan_torch

BACKENDS = ("auto", "torch", "cuda", "triton")


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (not written yet, not installed, or wrong device)."""


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype torch.autocast gives on `device_type` now, or None where it is off."""
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


@functools.cache
def triton_too_old() -> str:
    """Why the installed Triton cannot compile our kernels ("" when it can): they use tl.gather and
    tl.range(loop_unroll_factor=...), both in Triton since 3.3; tested on 3.6 (GPU) and 3.8 (interpreter)."""
    import triton
    import triton.language as tl

    unroll = "loop_unroll_factor" in inspect.signature(tl.range.__init__).parameters
    if not (hasattr(tl, "gather") and unroll):
        return f"Triton {triton.__version__} lacks tl.gather or loop_unroll_factor: install triton>=3.3"
    return ""


def _triton_available() -> bool:
    """Whether the Triton kernel can run here: a recent Triton and a CUDA device (or the interpreter)."""
    if importlib.util.find_spec("triton") is None:
        return False
    return (torch.cuda.is_available() or interpreting()) and not triton_too_old()


@functools.cache
def triton_ready() -> bool:
    """``_triton_available`` once per process (the find_spec and the version check do not change within one):
    the norms and the directions' glue ask on every call, several times per HSS block."""
    return _triton_available()


KERNEL_BACKENDS = ("auto", "torch", "triton")  # the norms' and the anomaly map's kernels


def use_triton_kernel(what: str, backend: str, fits: bool, is_cuda: bool, auto: bool, needs: str) -> bool:
    """The choice of instance_norm_silu, layer_norm and cosine_distance between their torch reference and
    their Triton kernel. ``fits``: the inputs are ones the kernel takes; ``auto``: the caller's own condition
    for choosing Triton under backend auto (a dtype, its knob). triton runs where it fits and Triton can run
    (a CUDA device, or TRITON_INTERPRET=1), else raises ValueError "<what>: backend 'triton' needs <needs>";
    auto takes it for CUDA inputs that fit, where ``auto`` holds; torch never."""
    if backend not in KERNEL_BACKENDS:
        raise ValueError(f"{what}: backend must be one of {', '.join(KERNEL_BACKENDS)}, got {backend!r}")
    if backend == "triton":
        if not (fits and triton_ready() and (is_cuda or interpreting())):
            raise ValueError(f"{what}: backend 'triton' needs {needs}")
        return True
    return backend == "auto" and fits and is_cuda and auto and triton_ready()


def check_triton(u: torch.Tensor, what: str = "selective_scan") -> None:
    """Raise BackendUnavailableError unless the Triton kernel can run on u's device."""
    if importlib.util.find_spec("triton") is None:
        raise BackendUnavailableError(f"{what}: backend 'triton' needs the triton package")
    if triton_too_old():
        raise BackendUnavailableError(f"{what}: backend 'triton': {triton_too_old()}")
    if not (u.is_cuda or (u.device.type == "cpu" and interpreting())):
        raise BackendUnavailableError(
            f"{what}: backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tests), "
            f"got u on {u.device}; use backend='torch'"
        )


def _run_triton(u, *args, **kwargs) -> torch.Tensor:
    check_triton(u)
    from .triton_scan import selective_scan_triton

    return selective_scan_triton(u, *args, **kwargs)


def check_cuda(u: torch.Tensor, what: str = "selective_scan") -> None:
    """Raise BackendUnavailableError unless mamba_ssm's kernel can run on u's device."""
    if not cuda_available():
        raise BackendUnavailableError(
            f"{what}: backend 'cuda' needs a CUDA device and mamba_ssm's compiled selective_scan_cuda "
            "extension (pip install 'mambaad[cuda]')"
        )
    if not u.is_cuda:
        raise BackendUnavailableError(f"{what}: backend 'cuda' needs CUDA tensors, got u on {u.device}")


def _run_cuda(u, *args, **kwargs) -> torch.Tensor:
    check_cuda(u)
    return selective_scan_cuda(u, *args, **kwargs)


def check_backend(backend: str, u: torch.Tensor) -> None:
    """BackendUnavailableError unless ``backend`` ("auto", a ``selective_scan`` backend or "triton-fused") can
    run on u's device: the check the runners make, done up front."""
    if backend in ("triton", "triton-fused"):
        check_triton(u, "scan backend")
    elif backend == "cuda":
        check_cuda(u, "scan backend")


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_scan_shapes(u, delta, A, B, C, D=None, z=None, delta_bias=None) -> None:
    """Raise ValueError, naming the argument, unless the shapes follow mamba_ssm's selective_scan_fn."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, dim, L), got shape {_shape(u)}")
    batch, dim, length = u.shape
    if _shape(delta) != _shape(u):
        raise ValueError(f"selective_scan: delta must have u's shape {_shape(u)}, got {_shape(delta)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must be (dim, N) = ({dim}, N), got shape {_shape(A)}")
    if A.is_complex():
        raise ValueError("selective_scan: complex A is not supported; A must be real (dim, N)")
    n_state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.dim() == 3:
            expected = (batch, n_state, length)
        elif t.dim() == 4:
            expected = (batch, t.shape[1], n_state, length)
        else:
            expected = None
        if expected is None or _shape(t) != expected:
            raise ValueError(
                f"selective_scan: {name} must be (batch, G, N, L) or (batch, N, L) with batch={batch}, "
                f"N={n_state}, L={length}; got shape {_shape(t)}"
            )
        if t.dim() == 4 and (t.shape[1] == 0 or dim % t.shape[1] != 0):
            raise ValueError(f"selective_scan: the groups of {name} ({t.shape[1]}) must divide dim ({dim})")
    if _shape(B) != _shape(C):
        raise ValueError(f"selective_scan: B and C must have the same shape, got {_shape(B)} and {_shape(C)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and _shape(t) != (dim,):
            raise ValueError(f"selective_scan: {name} must be (dim,) = ({dim},), got shape {_shape(t)}")
    if z is not None and _shape(z) != _shape(u):
        raise ValueError(f"selective_scan: z must have u's shape {_shape(u)}, got {_shape(z)}")


def resolve_backend(backend: str, u: torch.Tensor) -> str:
    """The backend that ``selective_scan`` runs for these inputs; ValueError for an unknown name.

    Under PyTorch's deterministic mode (``train --deterministic``) auto takes the torch path: the Triton and
    CUDA backwards sum dA, dB and dC with atomics, whose order changes from run to run, and the Triton
    kernels' autotuned tiles (timed, so not the same in every process) set the forward's chunking."""
    if backend not in BACKENDS:
        raise ValueError(f"selective_scan: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if torch.are_deterministic_algorithms_enabled():
        return "torch"
    if u.is_cuda and _triton_available():
        return "triton"
    if u.is_cuda and cuda_available():
        return "cuda"
    return "torch"


_RUNNERS = {"torch": selective_scan_torch, "cuda": _run_cuda, "triton": _run_triton}


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Mamba-1 selective scan with mamba_ssm's ``selective_scan_fn`` semantics; returns (batch, dim, L).

    u, delta, z: (batch, dim, L); A: (dim, N); B, C: (batch, G, N, L) or (batch, N, L), channel d uses group
    d // (dim // G); D, delta_bias: (dim,). ``backend``: "auto", "torch", "cuda" or "triton".
    """
    run = _RUNNERS[resolve_backend(backend, u)]
    check_scan_shapes(u, delta, A, B, C, D, z, delta_bias)
    return run(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
