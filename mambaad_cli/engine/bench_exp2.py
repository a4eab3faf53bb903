"""The GPU's exp2 throughput, measured with a Triton microkernel: the exp floor of `mambaad bench`.

The selective scan needs one exp2 per (batch, channel, step, state); on a GPU that runs on the special
function units, whose rate bounds the scan at N = 16 (reference/scan_kernels.md section 0). Every element
here runs CHAINS independent chains x <- exp2(x * scale): the chains give each thread independent work to
hide the unit's latency, and the runtime ``scale`` plus the store of every chain's last value keep the
compiler from folding or dropping any exp2.

This module imports triton at the top: import it lazily (bench.py does), only where a kernel will run.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

CHAINS = 8  # independent chains per element (the kernel body spells out a0..a7)
BLOCK = 512  # elements per program
PROGRAMS_PER_SM = 32  # enough waves that the tail wave is a small part of the time
ITERS = 256  # exp2 per chain


@triton.jit
def _exp2_chains_kernel(x_ptr, out_ptr, scale, ITERS: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs)
    a0 = x
    a1 = x + 0.125
    a2 = x + 0.25
    a3 = x + 0.375
    a4 = x + 0.5
    a5 = x + 0.625
    a6 = x + 0.75
    a7 = x + 0.875
    for _ in range(ITERS):
        a0 = tl.exp2(a0 * scale)
        a1 = tl.exp2(a1 * scale)
        a2 = tl.exp2(a2 * scale)
        a3 = tl.exp2(a3 * scale)
        a4 = tl.exp2(a4 * scale)
        a5 = tl.exp2(a5 * scale)
        a6 = tl.exp2(a6 * scale)
        a7 = tl.exp2(a7 * scale)
    tl.store(out_ptr + offs, ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)))


def exp2_chains(x: torch.Tensor, scale: float, iters: int, block: int = BLOCK) -> torch.Tensor:
    """Sum over the CHAINS chains started at x + c/8 (c = 0..7) of `iters` steps x <- exp2(x * scale).

    x: 1-D fp32 with a multiple of `block` elements. Returns a tensor like x.
    """
    if x.dim() != 1 or x.numel() % block or x.dtype != torch.float32:
        raise ValueError(f"exp2_chains: x must be 1-D fp32 with a multiple of {block} elements")
    out = torch.empty_like(x)
    _exp2_chains_kernel[(x.numel() // block,)](x, out, scale, ITERS=iters, BLOCK=block, num_warps=4)
    return out


def exp2_count(numel: int, iters: int) -> int:
    """exp2 evaluations of one exp2_chains call."""
    return numel * CHAINS * iters


def measure_exp2_rate(device: torch.device, warmup_ms: float = 25.0, rep_ms: float = 100.0) -> float:
    """exp2 evaluations per second of this GPU (median of triton.testing.do_bench)."""
    from triton.testing import do_bench

    sms = torch.cuda.get_device_properties(device).multi_processor_count
    numel = sms * PROGRAMS_PER_SM * BLOCK
    with torch.cuda.device(device):
        x = torch.rand(numel, device=device)  # in [0, 1): with scale -1 every chain stays in [0.5, 1]
        exp2_chains(x, -1.0, ITERS)  # compile outside the timing
        ms = do_bench(lambda: exp2_chains(x, -1.0, ITERS), warmup=warmup_ms, rep=rep_ms, return_mode="median")
    return exp2_count(numel, ITERS) / (ms * 1e-3)
