"""CPU timing of the chunked PyTorch selective scan against autograd through the naive per-step loop.

    python benchmarks/bench_scan_cpu.py                      # the two MambaAD-like shapes, fp32
    python benchmarks/bench_scan_cpu.py --chunks 16 32 64    # also sweep the chunk length

Prints one row per (shape, implementation): forward time (under no_grad), forward+backward time (best of the
repeats, milliseconds: the best is the least disturbed by other processes on a shared CPU), and the speed-up
over the naive loop, which runs fewer repeats because it is slow. T=...* marks the default chunk length.
"""

from __future__ import annotations

import argparse
import time

import torch

from kernels.reference import selective_scan_ref
from kernels.torch_scan import auto_chunk, selective_scan_torch

SHAPES = [  # (batch, dim, L, N, G): MambaAD's HSS stages fold K=8 scan directions into the groups
    (8, 384, 1024, 16, 8),
    (8, 640, 256, 16, 8),
]


def make_inputs(batch, dim, length, n_state, groups, seed=0):
    """Inputs as MambaAD calls the scan: fp32, A = -exp(A_log), delta_bias, softplus, D, no z."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, dim, length, generator=gen)
    delta = torch.randn(batch, dim, length, generator=gen) * 0.5 - 2.0
    A = -torch.arange(1, n_state + 1, dtype=torch.float32).repeat(dim, 1)
    B = torch.randn(batch, groups, n_state, length, generator=gen)
    C = torch.randn(batch, groups, n_state, length, generator=gen)
    D = torch.ones(dim)
    delta_bias = torch.rand(dim, generator=gen) * 0.5
    return u, delta, A, B, C, D, delta_bias


def time_ms(fn, repeats):
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return min(samples)


def bench(impl, inputs, repeats):
    u, delta, A, B, C, D, delta_bias = inputs
    leaves = [t.clone().requires_grad_(True) for t in (u, delta, A, B, C, D, delta_bias)]

    def forward():
        with torch.no_grad():
            impl(u, delta, A, B, C, D, delta_bias=delta_bias, delta_softplus=True)

    def forward_backward():
        lu, ldelta, lA, lB, lC, lD, lbias = leaves
        out = impl(lu, ldelta, lA, lB, lC, lD, delta_bias=lbias, delta_softplus=True)
        torch.autograd.grad(out.sum(), leaves)

    return time_ms(forward, repeats), time_ms(forward_backward, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="*", default=[], help="also time these chunk lengths")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the chunked scan")
    parser.add_argument("--naive-repeats", type=int, default=1, help="repeats of the naive loop (0 = skip)")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32")
    header = (f"{'batch,dim,L,N,G':<22}{'implementation':<18}{'fwd ms':>10}{'fwd+bwd ms':>12}"
              f"{'fwd x':>8}{'f+b x':>8}")
    print(header)
    print("-" * len(header))
    for shape in SHAPES:
        inputs = make_inputs(*shape)
        label = ",".join(map(str, shape))
        naive = None
        if args.naive_repeats > 0:
            naive = bench(selective_scan_ref, inputs, args.naive_repeats)
            print(f"{label:<22}{'naive loop':<18}{naive[0]:>10.1f}{naive[1]:>12.1f}{1.0:>8.1f}{1.0:>8.1f}")
        default = auto_chunk(shape[0], shape[1], shape[3])
        for chunk in [None, *(c for c in args.chunks if c != default)]:

            def impl(*a, chunk=chunk, **k):
                return selective_scan_torch(*a, chunk=chunk, **k)

            fwd, fwd_bwd = bench(impl, inputs, args.repeats)
            speed = (naive[0] / fwd, naive[1] / fwd_bwd) if naive else (float("nan"),) * 2
            name = f"chunked T={chunk}" if chunk else f"chunked T={default}*"
            print(f"{label:<22}{name:<18}{fwd:>10.1f}{fwd_bwd:>12.1f}{speed[0]:>8.1f}{speed[1]:>8.1f}")


if __name__ == "__main__":
    main()
