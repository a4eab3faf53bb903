"""Adapter to mamba_ssm's CUDA selective scan (the optional ``mambaad[cuda]`` extra).

mamba_ssm is imported lazily, inside the call: it is an optional dependency, and importing it also
imports transformers, which nobody should pay for on a CPU machine.
"""

from __future__ import annotations

import importlib.util

import torch


def cuda_available() -> bool:
    """True when a CUDA device is visible and mamba_ssm with its compiled scan extension is installed."""
    if not torch.cuda.is_available():
        return False
    return all(importlib.util.find_spec(name) is not None for name in ("mamba_ssm", "selective_scan_cuda"))


def selective_scan_cuda(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """mamba_ssm's ``selective_scan_fn`` with the same arguments; tensors must be on a CUDA device."""
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    # mamba_ssm wants delta in u's dtype and A, D, delta_bias in fp32 (scan_kernels.md section 1.2)
    delta = delta.to(u.dtype)
    A = A.float()
    D = D.float() if D is not None else None
    delta_bias = delta_bias.float() if delta_bias is not None else None
    return selective_scan_fn(
        u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus
    )
