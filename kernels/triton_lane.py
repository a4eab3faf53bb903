"""Selective scan forward, one channel per lane and all its states in that lane's registers (v1.11, opt-in).

The segment forward (triton_seg.py) splits each 128-step chunk over 8 lanes of 16 steps: every state pays
a scan of the lane's steps from zero for the segment's total, a 3-level shuffle scan of the totals, the
lane's steps again from its incoming state, and a round trip of the chunk's final state through memory.
That is about 11 instructions per element and state against the 5 the recurrence needs (kernels/NOTES.md).

Here a lane owns one channel for the whole sequence and keeps its N states in registers ([BD, NP] tiles,
one row per lane). Each block of E = 16 steps is one straight-line body: for every state n (unrolled),
h_n runs through the 16 steps once, a_t = exp2(delta_t A_n) and y_t += C_t h_n, with no shuffles and no
state in memory. The tiles of steps [BD, E] and of states [BD, NP] share one layout (a row of 16 per lane,
the int8 layout hint of triton_seg.py), so picking a step or a state is a register pick that folds at
compile time.

The cost is parallelism: one lane per (batch, channel), so B x D lanes in all (16 K at MambaAD's longest
sequence at batch 16: about one warp per scheduler). Latency is hidden by the 16 independent states of the
body instead of by other warps. Training keeps the backward's contract: the state at the start of every
T-step chunk goes to the checkpoint rows (STORE_CKPT), the ones the segment and tiles backwards read.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_scan import _channel_vectors, _delta, _exp2, _program_channels
from .triton_seg import _layout_hint, _pack, _prefetch_rows, _unpack


@triton.jit
def _columns(x, BD: tl.constexpr, K: tl.constexpr):
    """x [BD, K] (K = 1 .. 16, a power of two) as a tuple of its K columns [BD], by triton_seg's _unpack: K
    lives in each lane's registers, so this only renames registers (a pick by tl.sum of a tl.where costs an
    add per column: Triton makes its -0.0 a +0.0)."""
    LOG_K: tl.constexpr = 0 if K == 1 else 1 if K == 2 else 2 if K == 4 else 3 if K == 8 else 4
    cols = _unpack(tl.reshape(x, [BD, 1, K]), BD, 1, K, LOG_K)
    out = ()
    for k in tl.static_range(K):
        out = out + (tl.reshape(cols[k], [BD]),)
    return out


@triton.jit
def _stack(cols, BD: tl.constexpr, K: tl.constexpr):
    """The inverse of _columns (triton_seg's _pack): K columns [BD] back to one [BD, K] tile."""
    LOG_K: tl.constexpr = 0 if K == 1 else 1 if K == 2 else 2 if K == 4 else 3 if K == 8 else 4
    parts = ()
    for k in tl.static_range(K):
        parts = parts + (tl.reshape(cols[k], [BD, 1]),)
    return tl.reshape(_pack(parts, BD, 1, K, LOG_K), [BD, K])


@triton.jit
def _scan_fwd_lane_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, z_ptr, out_ptr, ckpt_ptr, table_ptr,
    L, DG, n_chunks,
    su_b, su_g, su_d, su_l,
    sdt_b, sdt_g, sdt_d, sdt_l,
    sB_b, sB_g, sB_n, sB_l,
    sC_b, sC_g, sC_n, sC_l,
    sz_b, sz_g, sz_d, sz_l,
    so_b, so_g, so_d, so_l,
    N: tl.constexpr, NP: tl.constexpr, T: tl.constexpr, BD: tl.constexpr, E: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    STORE_CKPT: tl.constexpr, HAS_TABLE: tl.constexpr, UNROLL: tl.constexpr, FAST_EXP: tl.constexpr,
    PREFETCH: tl.constexpr, EVEN_L: tl.constexpr,
):
    """The forward of ``_scan_fwd_kernel`` (same arguments and outputs, no index table). Programs: BD
    channels of one (batch, group), one per lane, walking all L steps in blocks of E. With STORE_CKPT the
    state before each T-step chunk c goes to checkpoint slot c. PREFETCH=2 (NVIDIA GPUs) asks for the B / C
    rows of the block four ahead in L1 (one 128-byte line holds four blocks of 16-bit rows)."""
    g, b, G, d, dmask, ch, nn, nm = _program_channels(DG, N, NP, BD, False)
    ee = tl.arange(0, E)[None, :]
    Dv, bias = _channel_vectors(D_ptr, bias_ptr, ch, dmask, BD, HAS_D, HAS_BIAS)
    # A (log2 units) as a tile in the steps' layout: the same int8 hint on an [BD, NP] tile of u's rows
    at_a = ch[:, None] * N + nn[None, :]
    A2 = tl.load(A_ptr + at_a, mask=nm, other=0.0).to(tl.float32) * 1.4426950408889634
    A2 = _layout_hint(A2, u_ptr, b * su_b + g * su_g + d[:, None] * su_d + nn[None, :] * su_l,
                      nm & (nn[None, :] < L))
    h = A2 * 0.0  # the states, in A2's layout
    A2s = _columns(A2, BD, NP)
    state = ckpt_ptr + (b * G * DG + ch) * n_chunks * N
    B_seg = B_ptr + b * sB_b + g * sB_g
    C_seg = C_ptr + b * sC_b + g * sC_g
    BLOCKS: tl.constexpr = T // E
    for c in range(n_chunks):
        if STORE_CKPT:  # the state before chunk c, which the backward starts chunk c from
            tl.store(state[:, None] + c * N + nn[None, :], h, mask=nm)
        for s in range(BLOCKS):
            t0 = c * T + s * E
            t = t0 + ee  # [1, E]
            tmask = t < L
            m2 = dmask[:, None] & tmask
            at_u = b * su_b + g * su_g + d[:, None] * su_d + t * su_l
            u = tl.load(u_ptr + at_u, mask=m2, other=0.0).to(tl.float32)
            dt_raw = tl.load(dt_ptr + b * sdt_b + g * sdt_g + d[:, None] * sdt_d + t * sdt_l,
                             mask=m2, other=0.0).to(tl.float32)
            dt_raw = _layout_hint(dt_raw, u_ptr, at_u, m2)
            _, dt = _delta(dt_raw, bias[:, None], m2, HAS_BIAS, SOFTPLUS)
            dtu = dt * u
            if PREFETCH == 2 and FAST_EXP:
                ahead = tl.zeros([BD], tl.int32)[:, None] + t0 + 4 * E  # every lane: the block 4 ahead
                for n in tl.static_range(N):
                    _prefetch_rows(B_seg + n * sB_n, ahead, L, sB_l)
                    _prefetch_rows(C_seg + n * sC_n, ahead, L, sC_l)
            dts = _columns(dt, BD, E)
            dtus = _columns(dtu, BD, E)
            if HAS_D:
                ys = _columns(Dv[:, None] * u, BD, E)
            else:
                ys = _columns(tl.zeros_like(u), BD, E)
            hs = _columns(h, BD, NP)
            B_row = B_seg + t * sB_l + 0 * d[:, None]  # [BD, E]: the same addresses in every lane
            C_row = C_seg + t * sC_l + 0 * d[:, None]
            new_hs = ()
            for n in tl.static_range(N):
                if EVEN_L:
                    Bn = tl.load(B_row + n * sB_n).to(tl.float32)
                    Cn = tl.load(C_row + n * sC_n).to(tl.float32)
                else:
                    Bn = tl.load(B_row + n * sB_n, mask=tmask, other=0.0).to(tl.float32)
                    Cn = tl.load(C_row + n * sC_n, mask=tmask, other=0.0).to(tl.float32)
                Bs = _columns(Bn, BD, E)
                Cs = _columns(Cn, BD, E)
                hn = hs[n]
                new_ys = ()
                for k in tl.static_range(E):
                    a = _exp2(dts[k] * A2s[n], FAST_EXP)
                    hn = a * hn + dtus[k] * Bs[k]
                    new_ys = new_ys + (ys[k] + hn * Cs[k],)
                ys = new_ys
                new_hs = new_hs + (hn,)
            for n in tl.static_range(N, NP):  # padding states: never updated
                new_hs = new_hs + (hs[n],)
            h = _stack(new_hs, BD, NP)
            y = _stack(ys, BD, E)
            if HAS_Z:
                z = tl.load(z_ptr + b * sz_b + g * sz_g + d[:, None] * sz_d + t * sz_l,
                            mask=m2, other=0.0).to(tl.float32)
                y = y * z / (1.0 + tl.exp(-z))
            tl.store(out_ptr + b * so_b + g * so_g + d[:, None] * so_d + t * so_l,
                     y.to(out_ptr.dtype.element_ty), mask=m2)
