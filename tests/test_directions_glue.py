"""The unfused SS2D core's two glues (kernels/directions.py): torch's gather / scatter, and gathers with the
inverse tables in both directions ("permute"). Same values and gradients, on the torch scan (CPU)."""

from __future__ import annotations

import pytest
import torch

from kernels.directions import selective_scan_directions_unfused
from mambaad_cli.model.scans import direction_tables


def inputs(batch=2, dn=3, n=4, K=8, H=4, W=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = H * W
    xs = [torch.randn(batch, dn, L, generator=g), torch.randn(batch, K, dn, L, generator=g) * 0.5,
          -torch.rand(K * dn, n, generator=g) - 0.1, torch.randn(batch, K, n, L, generator=g),
          torch.randn(batch, K, n, L, generator=g), torch.randn(K * dn, generator=g),
          torch.randn(K * dn, generator=g) * 0.1]
    return [x.double().requires_grad_() for x in xs]


@pytest.mark.parametrize("method", ["hilbert", "zigzag"])
def test_permute_glue_matches_scatter_glue_in_values_and_every_gradient(method):
    table = direction_tables(method, 4, 6, 8)
    results = {}
    for glue in ("scatter", "permute"):
        xs = inputs()
        out = selective_scan_directions_unfused(*xs, table, glue=glue)
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
        results[glue] = (out, torch.autograd.grad(out, xs, grad_out))
    out_s, grads_s = results["scatter"]
    out_p, grads_p = results["permute"]
    torch.testing.assert_close(out_p, out_s, rtol=1e-12, atol=1e-12)
    for name, gp, gs in zip(("u", "delta", "A", "B", "C", "D", "delta_bias"), grads_p, grads_s, strict=True):
        torch.testing.assert_close(gp, gs, rtol=1e-10, atol=1e-10, msg=name)


def test_glue_from_the_environment_and_a_bad_name(monkeypatch):
    table = direction_tables("hilbert", 4, 6, 8)
    xs = [x.detach() for x in inputs()]
    reference = selective_scan_directions_unfused(*xs, table, glue="scatter")
    monkeypatch.setenv("MAMBAAD_GLUE", "permute")
    torch.testing.assert_close(selective_scan_directions_unfused(*xs, table), reference)
    monkeypatch.setenv("MAMBAAD_GLUE", "zero")
    with pytest.raises(ValueError, match="glue 'zero'"):
        selective_scan_directions_unfused(*xs, table)
