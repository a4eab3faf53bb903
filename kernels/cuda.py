"""Adapter to mamba_ssm's CUDA selective scan: its compiled ``selective_scan_cuda`` extension.

The extension comes with ``pip install 'mambaad[cuda]'`` (mamba_ssm) or from a build of mamba_ssm's csrc
alone (benchmarks/build_mamba_cuda.sh). It is called directly through our own autograd Function, as
mamba_ssm's ``selective_scan_fn`` does, so ``import mamba_ssm`` (which pulls in transformers) is never needed.
"""

from __future__ import annotations

import importlib
import importlib.util

import torch


def cuda_available() -> bool:
    """True when a CUDA device is visible and mamba_ssm's compiled scan extension is importable."""
    if not torch.cuda.is_available():
        return False
    return importlib.util.find_spec("selective_scan_cuda") is not None


def _extension():
    return importlib.import_module("selective_scan_cuda")


def _contiguous_last(t: torch.Tensor | None) -> torch.Tensor | None:
    return t.contiguous() if t is not None and t.stride(-1) != 1 else t


class _CudaScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        u, delta, B, C, z = (_contiguous_last(t) for t in (u, delta, B, C, z))
        squeeze = B.dim() == 3
        if squeeze:
            B, C = B.unsqueeze(1), C.unsqueeze(1)
        out, x, *rest = _extension().fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        ctx.delta_softplus, ctx.squeeze = delta_softplus, squeeze
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, x, out)
        return out if z is None else rest[0]

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, z, delta_bias, x, out = ctx.saved_tensors
        dout = dout.contiguous()
        du, ddelta, dA, dB, dC, dD, ddelta_bias, *rest = _extension().bwd(
            u, delta, A, B, C, D, z, delta_bias, dout, x, out, None, ctx.delta_softplus, False
        )
        dz = rest[0] if z is not None else None
        if ctx.squeeze:
            dB, dC = dB.squeeze(1), dC.squeeze(1)
        return (du, ddelta, dA, dB, dC, dD if D is not None else None, dz,
                ddelta_bias if delta_bias is not None else None, None)


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
    # the extension wants delta in u's dtype and A, D, delta_bias in fp32 (scan_kernels.md section 1.2)
    delta = delta.to(u.dtype)
    A = A.float()
    D = D.float() if D is not None else None
    delta_bias = delta_bias.float() if delta_bias is not None else None
    return _CudaScan.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus))
