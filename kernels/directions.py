"""The SS2D core: K directional selective scans over one feature map, merged back in natural order.

``selective_scan_directions`` takes everything in natural (row-major) order plus one index table per
direction. Backend "triton-fused" runs the fused kernel, which reads through the tables and writes in
natural order. Every other backend ("auto", "torch", "cuda", "triton") runs the unfused path below: gather
the K direction copies, scan them with ``selective_scan`` on that backend, scatter each output back and
sum. Both compute the same function; the unfused one is the reference the fused kernel is tested against.
The fused kernel runs the lane scan kernels since v1.28: 2.95-7.0x the unfused path around mamba_ssm's
kernel in the SS2D core alone on an H200 (GPU time, v1.33). In the model it competes with SS2D's own order
(Triton glue and the plain scan): since v1.31 SS2D takes it on GPUs at the maps of up to 32 x 32 tokens,
where the whole module timed faster with it, and its own order above (mambaad_cli/model/hss.py,
_fused_core; kernels/NOTES.md, v1.28 to v1.31).
"""

from __future__ import annotations

import torch

from .dispatch import check_triton, resolve_backend, selective_scan

FUSED = "triton-fused"  # the backend name of the fused kernel


def check_direction_shapes(u, delta, A, B, C, D, delta_bias, table) -> None:
    """ValueError, naming the argument, unless the shapes fit (see ``selective_scan_directions``)."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan_directions: u must be (batch, Dn, L), got {tuple(u.shape)}")
    batch, dn, length = u.shape
    if delta.dim() != 4 or delta.shape[0] != batch or delta.shape[2:] != (dn, length):
        raise ValueError(
            f"selective_scan_directions: delta must be (batch, K, Dn, L) = ({batch}, K, {dn}, {length}), "
            f"got {tuple(delta.shape)}"
        )
    K = delta.shape[1]
    if table.shape != (K, length):
        raise ValueError(
            f"selective_scan_directions: table must be (K, L) = ({K}, {length}), got {tuple(table.shape)}"
        )
    n_state = A.shape[-1]
    if A.shape != (K * dn, n_state):
        raise ValueError(
            f"selective_scan_directions: A must be (K*Dn, N) = ({K * dn}, N), got {tuple(A.shape)}"
        )
    for name, t in (("B", B), ("C", C)):
        if t.shape != (batch, K, n_state, length):
            raise ValueError(
                f"selective_scan_directions: {name} must be (batch, K, N, L) = ({batch}, {K}, {n_state}, "
                f"{length}), got {tuple(t.shape)}"
            )
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (K * dn,):
            raise ValueError(
                f"selective_scan_directions: {name} must be (K*Dn,) = ({K * dn},), got {tuple(t.shape)}"
            )


def selective_scan_directions_unfused(u, delta, A, B, C, D, delta_bias, table, delta_softplus=True,
                                      backend="torch") -> torch.Tensor:
    """Reference: materialise the K direction copies with torch's gather, scan them with ``backend``,
    scatter back and sum (the fused kernel's oracle)."""
    batch, dn, length = u.shape
    K = delta.shape[1]
    rows = table.to(device=u.device, dtype=torch.long).view(1, K, 1, length)

    def to_steps(x):
        return x.gather(3, rows.expand(batch, K, x.shape[2], length))

    xs = to_steps(u.unsqueeze(1).expand(batch, K, dn, length))
    dts, Bs, Cs = to_steps(delta), to_steps(B), to_steps(C)
    ys = selective_scan(
        xs.reshape(batch, K * dn, length), dts.reshape(batch, K * dn, length), A, Bs, Cs, D=D,
        delta_bias=delta_bias, delta_softplus=delta_softplus, backend=backend,
    ).view(batch, K, dn, length)
    merged = torch.zeros_like(ys).scatter(3, rows.expand(batch, K, dn, length), ys)
    return merged.sum(dim=1)


def selective_scan_directions(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    table: torch.Tensor,
    delta_softplus: bool = True,
    backend: str = "auto",
) -> torch.Tensor:
    """Sum over K directions of the selective scan of u along table[k], put back in natural order.

    u: (batch, Dn, L) natural order, shared by the directions; delta: (batch, K, Dn, L) and B, C:
    (batch, K, N, L), natural order; A: (K*Dn, N); D, delta_bias: (K*Dn,); table: (K, L) integers,
    ``table[k, t]`` = natural position of step t of direction k (a permutation per row). Channel k*Dn + d
    of A / D / delta_bias belongs to direction k. Returns (batch, Dn, L) in u's dtype. ``backend``:
    "triton-fused" for the fused kernel, or a ``selective_scan`` backend for the unfused path.
    """
    check_direction_shapes(u, delta, A, B, C, D, delta_bias, table)
    if backend == FUSED:
        check_triton(u, "selective_scan_directions")
        from .triton_scan import selective_scan_directions_triton

        return selective_scan_directions_triton(u, delta, A, B, C, D, delta_bias, table.to(u.device),
                                                delta_softplus)
    chosen = resolve_backend(backend, u)
    return selective_scan_directions_unfused(u, delta, A, B, C, D, delta_bias, table, delta_softplus, chosen)
