"""The plain sequential selective scan (Mamba-1 / S6): the oracle the fast paths are tested against.

Semantics follow mamba_ssm's ``selective_scan_fn`` (reference/scan_kernels.md section 1.1):

    delta_t = softplus(delta_t + delta_bias)            (softplus only if delta_softplus)
    h_t     = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,   h_{-1} = 0
    y_t     = sum_n C_t[n] * h_t[n] + D * u_t
    out_t   = y_t * silu(z_t)                            (only if z is given)

It runs in the dtype it is given (tests call it in float64) and loops over L in Python: slow, and under
autograd it keeps a (batch, dim, N) state per step. Use it at small sizes only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan_ref(
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
    """Selective scan by the sequential recurrence (shapes as mamba_ssm); returns u's dtype."""
    dtype = u.dtype
    batch, dim, _ = u.shape
    if B.dim() == 3:  # (batch, N, L) is a single group
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    groups, n_state = B.shape[1], A.shape[1]
    dt = delta.to(dtype)
    if delta_bias is not None:
        dt = dt + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)  # log1p(exp(x)), identity above the threshold 20: as mamba_ssm's kernel
    per_group = dim // groups  # channel d reads group d // per_group
    A = A.to(dtype)
    h = u.new_zeros((batch, dim, n_state), dtype=dtype)
    ys = []
    # unbind once (not x[..., t] per step): autograd then stacks each gradient once instead of L times
    steps = zip(dt.unbind(-1), u.to(dtype).unbind(-1), B.to(dtype).unbind(-1), C.to(dtype).unbind(-1),
                strict=True)
    for dt_t, u_t, B_t, C_t in steps:
        B_t, C_t = B_t.repeat_interleave(per_group, dim=1), C_t.repeat_interleave(per_group, dim=1)
        h = torch.exp(dt_t[:, :, None] * A) * h + (dt_t * u_t)[:, :, None] * B_t
        ys.append((h * C_t).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.to(dtype)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(dtype)
