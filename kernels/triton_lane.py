"""Selective scan, one channel per lane: the forward (v1.11; by shape by default since v1.12) and the
backward (v1.12; by shape for 16-bit inputs by default since v1.13: _scan_bwd_lane_kernel's docstring,
triton_scan._lane_backward).

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
body instead of by other warps. Since v1.24 a channel's states can be spread over SPLIT lanes (N / SPLIT
each; _lane_channels), for SPLIT times the warps, their sums over states meeting by shuffles once per block
(triton_scan.lane_split picks SPLIT). Training keeps the backward's contract: the state at the start of every
T-step chunk goes to the checkpoint rows (STORE_CKPT), the ones the segment and tiles backwards read.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_scan import (
    _add_all,
    _add_at,
    _channel_vectors,
    _delta,
    _exp2,
    _input_grad_terms,
    _input_grads,
    _load_A2,
    _program_channels,
)
from .triton_seg import _f32, _layout_hint, _pack, _prefetch_at, _prefetch_rows, _red_scatter_rows, _unpack


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
def _lane_channels(DG, N: tl.constexpr, NP: tl.constexpr, BD: tl.constexpr, SPLIT: tl.constexpr,
                   PAIRS: tl.constexpr = False):
    """The program's lane rows. SPLIT = 1: one channel per row, all NP states. SPLIT > 1 (N a power of two):
    BD // SPLIT channels, each over SPLIT rows that hold NP // SPLIT of its states; row r is channel
    r % (BD // SPLIT) and its states start at s0 = (r // (BD // SPLIT)) * NP // SPLIT, so that the rows of one
    state group differ in their low bits (the reduce-scatter's GROUP). Returns g, b, G, d, dmask, ch, s0
    [BD], the states' tile index nn [NP // SPLIT] and its mask [BD, NP // SPLIT]."""
    if SPLIT == 1:
        g, b, G, d, dmask, ch, nn, nm = _program_channels(DG, N, NP, BD, False)
        s0 = tl.zeros([BD], tl.int32)  # folds away
    else:
        BC: tl.constexpr = BD // SPLIT
        g, b, block, G = tl.program_id(1).to(tl.int64), tl.program_id(2).to(tl.int64), tl.program_id(0), \
            tl.num_programs(1)
        r = tl.arange(0, BD)
        d = block * BC * (2 if PAIRS else 1) + r % BC  # PAIRS: the program's first set of BC channels
        dmask = d < DG
        s0 = (r // BC) * (NP // SPLIT)
        nn = tl.arange(0, NP // SPLIT)
        nm = dmask[:, None] & (nn[None, :] < N)
        ch = g * DG + d
    return g, b, G, d, dmask, ch, s0, nn, nm


@triton.jit
def _sum_groups(x, BD: tl.constexpr, SPLIT: tl.constexpr):
    """x [BD, K] summed over the SPLIT rows of each channel (_lane_channels), every row holding the total: a
    butterfly of log2(SPLIT) gathers along the rows (warp shuffles)."""
    if SPLIT > 1:
        r = tl.arange(0, BD)[:, None]
        step: tl.constexpr = BD // SPLIT
        for i in tl.static_range(1 if SPLIT == 2 else 2 if SPLIT == 4 else 3):
            x = x + tl.gather(x, tl.broadcast_to(r ^ (step << i), x.shape), axis=0)
    return x


@triton.jit
def _share(x, grp, BD: tl.constexpr, E: tl.constexpr, SPLIT: tl.constexpr):
    """A row's share of x [BD, E] whose SPLIT rows of a channel hold the same values (as after _sum_groups):
    row group j (grp [BD]) takes steps j * E / SPLIT .. (j + 1) * E / SPLIT - 1, as a tuple of E / SPLIT
    columns [BD]: register picks, SPLIT - 1 selects a value."""
    cols = _columns(x, BD, E)
    S: tl.constexpr = E // SPLIT
    out = ()
    for i in tl.static_range(S):
        v = cols[i]
        for j in tl.static_range(1, SPLIT):
            v = tl.where(grp == j, cols[j * S + i], v)
        out = out + (v,)
    return out


@triton.jit
def _all_shares(x, BD: tl.constexpr, S: tl.constexpr, SPLIT: tl.constexpr):
    """x [BD, S]: each row its group's share of a block's steps (group j: steps j * S .. j * S + S - 1, as
    _share picks them), as the block's E = S * SPLIT columns [BD] in every row of the channel: SPLIT gathers
    along the rows (warp shuffles), S values each."""
    BC: tl.constexpr = BD // SPLIT
    r = tl.arange(0, BD) % BC
    cols = _columns(x, BD, S)  # gathered column by column: a [BD, S] gather left its layout to conversions
    out = ()
    for j in tl.static_range(SPLIT):
        for i in tl.static_range(S):
            out = out + (tl.gather(cols[i], r + j * BC, axis=0),)
    return out


@triton.jit
def _sum_shares(xs, grp, BD: tl.constexpr, E: tl.constexpr, SPLIT: tl.constexpr):
    """The sums over a channel's SPLIT rows of xs (E columns [BD]), each row keeping only its group's share
    (grp [BD]; steps grp * E / SPLIT onwards, as _share picks them): a reduce-scatter by halves, the group's
    highest bit first, E / 2 + E / 4 + ... values moved, where _sum_groups moves E a level and every row keeps
    all E. Returns E / SPLIT columns [BD]."""
    LOGS: tl.constexpr = 0 if SPLIT == 1 else 1 if SPLIT == 2 else 2 if SPLIT == 4 else 3
    BC: tl.constexpr = BD // SPLIT
    rows = tl.arange(0, BD)
    for i in tl.static_range(LOGS):  # level i: the rows that differ in group bit LOGS - 1 - i
        upper = ((grp >> (LOGS - 1 - i)) & 1) == 1  # this row keeps the upper half
        partner = rows ^ (BC << (LOGS - 1 - i))
        kept = ()
        for k in tl.static_range(E >> (i + 1)):
            keep = tl.where(upper, xs[k + (E >> (i + 1))], xs[k])
            send = tl.where(upper, xs[k], xs[k + (E >> (i + 1))])
            kept = kept + (keep + tl.gather(send, partner, axis=0),)
        xs = kept
    return xs


@triton.jit
def _steps_out(row_ptr, x, p, t0, grp, dmask, s_l, L, ADD: tl.constexpr, BD: tl.constexpr, E: tl.constexpr,
               SPLIT: tl.constexpr, FULL: tl.constexpr, PTX: tl.constexpr):
    """x [BD, E] (a channel's rows alike) stored, or added (fp32, ADD), at row_ptr [BD] + p * s_l, p the
    steps' positions through a table ([BD, E]): each of a channel's SPLIT rows writes its share of the steps
    (_share), E / SPLIT writes a lane, with no predicate where FULL (every channel and step in range).
    Through the lead row alone that was E predicated writes a lane, and ptxas wrapped each predicated `red`
    in a branch of its own (the fused forward at 64 x 64: BSSY / BRA / BSYNC around each of its 16 adds,
    branch_resolving 6 % of the stall samples; Nsight Compute, H200, kernels/NOTES.md v1.32)."""
    xs = _share(x, grp, BD, E, SPLIT)
    ps = _share(p, grp, BD, E, SPLIT)
    S: tl.constexpr = E // SPLIT
    for i in tl.static_range(S):
        _write(row_ptr + ps[i] * s_l, xs[i], dmask & (t0 + grp * S + i < L), ADD, FULL, PTX)


@triton.jit
def _write(ptrs, x, mask, ADD: tl.constexpr, FULL: tl.constexpr, PTX: tl.constexpr):
    # x stored at ptrs, or added (fp32, ADD: _add_all / _add_at), where mask; no predicate where FULL
    if FULL and ADD:
        _add_all(ptrs, x, PTX)
    elif ADD:
        _add_at(ptrs, x, mask, PTX)
    elif FULL:
        tl.store(ptrs, x.to(ptrs.dtype.element_ty))
    else:
        tl.store(ptrs, x.to(ptrs.dtype.element_ty), mask=mask)


@triton.jit
def _share_out(row_ptr, x, p, m2, s_l, ADD: tl.constexpr, FULL: tl.constexpr, BD: tl.constexpr,
               S: tl.constexpr, PTX: tl.constexpr):
    """x [BD, S] (each row its share of a block's steps, SHARES) stored, or added (fp32, ADD), at row_ptr
    [BD] + p * s_l, p [BD, S] the positions the row loaded, column by column (a [BD, S] store through a table
    took a layout of its own, its addresses converted through shared memory); no predicate where FULL."""
    xs = _columns(x, BD, S)
    ps = _columns(p, BD, S)
    ms = _columns(m2.to(tl.int32), BD, S)
    for i in tl.static_range(S):
        _write(row_ptr + ps[i] * s_l, xs[i], ms[i] != 0, ADD, FULL, PTX)


@triton.jit
def _rows_layout(B_seg, t, d, tmask, PTX: tl.constexpr):
    """Zeros [BD, E] in the steps' layout (a row of E per lane), by the int8 hint on the bytes of the B rows
    at steps t [1, E]: with SHARES no [BD, E] tile of u's is loaded, and Triton then laid the B / C rows out 4
    steps a lane and converted every state's rows through shared memory (sm_90 compile of the fp32 forward:
    712 bytes of stack, 32 barriers a block). The hint's load shares t with the rows' loads, so they take its
    layout too."""
    return _layout_hint(tl.zeros([d.shape[0], t.shape[1]], tl.float32), B_seg, t + 0 * d[:, None], tmask, PTX)


@triton.jit
def _block(h, dts, dtus, ys, A2s, B_seg, C_seg, t, tmask, d, sB_l, sC_l, sB_n, sC_n, BD: tl.constexpr,
           N: tl.constexpr, NP: tl.constexpr, E: tl.constexpr, EVEN_L: tl.constexpr, FAST_EXP: tl.constexpr,
           WITH_Y: tl.constexpr, t0=0, L=0, NMAJOR: tl.constexpr = False, NS: tl.constexpr = 0):
    """One block of E steps t [1, E] for all N states: h [BD, NP] the states before it, dts / dtus / ys the
    block's columns of delta, delta u and y (tuples of E [BD]). Returns the states after it ([BD, NP]) and,
    WITH_Y, ys plus C h (the forward); without, ys as given (the backward's pass over a chunk needs h only,
    not C's rows). NMAJOR: B / C with state stride 1, read a step at a time (_step_rows; t0 the block's first
    step, L the sequence's, NS the tensors' states: their L stride)."""
    hs = _columns(h, BD, NP)
    if NMAJOR:
        rows = _step_rows(B_seg, C_seg, t0, L, BD, N, NP, NS, E, EVEN_L, FAST_EXP, WITH_Y)
    else:
        B_row = B_seg + t * sB_l + 0 * d[:, None]  # [BD, E]: the same addresses in every lane
        C_row = C_seg + t * sC_l + 0 * d[:, None]
    new_hs = ()
    for n in tl.static_range(N):
        if NMAJOR:
            Bs, Cs = rows[n]
        else:
            Bs, Cs = _state_rows(B_row + n * sB_n, C_row + n * sC_n, tmask, BD, E, EVEN_L, FAST_EXP, WITH_Y)
        hn, ys = _state_steps(hs[n], dts, dtus, ys, A2s[n], Bs, Cs, E, FAST_EXP, WITH_Y)
        new_hs = new_hs + (hn,)
    for n in tl.static_range(N, NP):  # padding states: never updated
        new_hs = new_hs + (hs[n],)
    return _stack(new_hs, BD, NP), ys


@triton.jit
def _block_pair(h, dts, dtus, ys, A2s, h2, dts2, dtus2, ys2, A2s2, B_seg, C_seg, t, tmask, d, sB_l, sC_l,
                sB_n, sC_n, BD: tl.constexpr, N: tl.constexpr, E: tl.constexpr, EVEN_L: tl.constexpr,
                FAST_EXP: tl.constexpr, t0=0, L=0, NMAJOR: tl.constexpr = False, NS: tl.constexpr = 0):
    """_block's forward for the two channel sets of a PAIRS program (N == NP: the split's states), each B and
    C value loaded once and used by both: half the bytes each lane receives an element and state, the L1
    traffic that bounds the fp32 forward (kernels/NOTES.md v1.35)."""
    hs = _columns(h, BD, N)
    hs2 = _columns(h2, BD, N)
    if NMAJOR:
        rows = _step_rows(B_seg, C_seg, t0, L, BD, N, N, NS, E, EVEN_L, FAST_EXP, True)
    else:
        B_row = B_seg + t * sB_l + 0 * d[:, None]
        C_row = C_seg + t * sC_l + 0 * d[:, None]
    new_hs = ()
    new_hs2 = ()
    for n in tl.static_range(N):
        if NMAJOR:
            Bs, Cs = rows[n]
        else:
            Bs, Cs = _state_rows(B_row + n * sB_n, C_row + n * sC_n, tmask, BD, E, EVEN_L, FAST_EXP, True)
        hn, ys = _state_steps(hs[n], dts, dtus, ys, A2s[n], Bs, Cs, E, FAST_EXP, True)
        hn2, ys2 = _state_steps(hs2[n], dts2, dtus2, ys2, A2s2[n], Bs, Cs, E, FAST_EXP, True)
        new_hs = new_hs + (hn,)
        new_hs2 = new_hs2 + (hn2,)
    return _stack(new_hs, BD, N), ys, _stack(new_hs2, BD, N), ys2


@triton.jit
def _step_rows(B_seg, C_seg, t0, L, BD: tl.constexpr, N: tl.constexpr, NP: tl.constexpr, NS: tl.constexpr,
               E: tl.constexpr, EVEN_L: tl.constexpr, PTX: tl.constexpr, WITH_C: tl.constexpr):
    """B / C in N-major memory (state stride 1, L stride NS: (batch, G, L, N) underneath): each step's NP
    states of the lane's group (B_seg [BD, 1] at its first) in one vector load [BD, NP] at a constant offset
    from the block's first step (sm_90 compile, fp32 8-step blocks at 4 lanes: loop 317 -> 301 instructions),
    a warp's state groups reading one run of NS values where L-major rows put each group's in a line of its
    own (half the L1 sectors; the L1 data pipe's wavefronts the same: kernels/NOTES.md v1.37). Returns,
    for each state n < N, its B and C values over the block's E steps (two tuples of E [BD]; C's is B's
    without WITH_C). N: the lane's states, NP: their tile (N padded), NS: the tensors' states, their L
    stride."""
    nn = tl.arange(0, NP)[None, :]
    b_steps = ()
    c_steps = ()
    for k in tl.static_range(E):
        at = (t0 + k) * NS + nn  # the L stride is NS (the host's NMAJOR): the steps' offsets are constants
        b_steps = b_steps + (_columns(_step_states(B_seg + at, t0 + k, L, nn, N, EVEN_L, PTX), BD, NP),)
        if WITH_C:
            c_steps = c_steps + (_columns(_step_states(C_seg + at, t0 + k, L, nn, N, EVEN_L, PTX), BD, NP),)
    rows = ()
    for n in tl.static_range(N):
        Bs = ()
        Cs = ()
        for k in tl.static_range(E):
            Bs = Bs + (b_steps[k][n],)
            if WITH_C:
                Cs = Cs + (c_steps[k][n],)
        if not WITH_C:
            Cs = Bs
        rows = rows + ((Bs, Cs),)
    return rows


@triton.jit
def _step_states(ptrs, t, L, nn, N: tl.constexpr, EVEN_L: tl.constexpr, PTX: tl.constexpr):
    # one step's states of a lane's group [BD, NP] in fp32 (zeros past L and at padding states)
    if EVEN_L and N == nn.shape[1]:
        return _f32(tl.load(ptrs), PTX)
    return _f32(tl.load(ptrs, mask=(nn < N) & (t < L), other=0.0), PTX)


@triton.jit
def _state_rows(B_ptrs, C_ptrs, tmask, BD: tl.constexpr, E: tl.constexpr, EVEN_L: tl.constexpr,
                PTX: tl.constexpr, WITH_C: tl.constexpr):
    # a state's B row (and C row, WITH_C; else B's again, unused) over the block, as E columns [BD] in fp32
    Bs = _columns(_rows(B_ptrs, tmask, EVEN_L, PTX), BD, E)
    Cs = Bs
    if WITH_C:
        Cs = _columns(_rows(C_ptrs, tmask, EVEN_L, PTX), BD, E)
    return Bs, Cs


@triton.jit
def _state_steps(hn, dts, dtus, ys, A2n, Bs, Cs, E: tl.constexpr, FAST_EXP: tl.constexpr,
                 WITH_Y: tl.constexpr):
    # one state (hn [BD], A2n its A in log2 units) through a block's E steps: h_t = exp2(delta_t A2) h +
    # delta_t u_t B_t, and WITH_Y ys_t + C_t h_t (ys as given without)
    new_ys = ()
    for k in tl.static_range(E):
        a = _exp2(dts[k] * A2n, FAST_EXP)
        hn = a * hn + dtus[k] * Bs[k]
        if WITH_Y:
            new_ys = new_ys + (ys[k] + hn * Cs[k],)
        else:
            new_ys = new_ys + (ys[k],)
    return hn, new_ys


@triton.jit
def _u_delta(u_ptr, dt_ptr, bias, b, g, d, p, m2, su_b, su_g, su_d, su_l, sdt_b, sdt_g, sdt_d, sdt_l,
             table_ptr, t, L, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_TABLE: tl.constexpr,
             PTX: tl.constexpr):
    """A block's u and delta at positions p ([BD, E] fp32, zeros off m2) in the steps' layout (the int8 hint
    on u's rows, or through a table on its row's: _steps_hint), with delta + bias before softplus (x): the
    three kernels' common loads. d: the channels, _address_channels' where there is a table."""
    u, dt_raw = _load_u_delta(u_ptr, dt_ptr, b, g, d, p, m2, su_b, su_g, su_d, su_l, sdt_b, sdt_g, sdt_d,
                              sdt_l, table_ptr, t, L, HAS_TABLE, PTX)
    x, dt = _delta(dt_raw, bias[:, None], m2, HAS_BIAS, SOFTPLUS)
    return u, x, dt


@triton.jit
def _load_u_delta(u_ptr, dt_ptr, b, g, d, p, m2, su_b, su_g, su_d, su_l, sdt_b, sdt_g, sdt_d, sdt_l,
                  table_ptr, t, L, HAS_TABLE: tl.constexpr, PTX: tl.constexpr):
    # _u_delta's loads: u and the raw delta (fp32, the steps' layout), before bias and softplus
    at_u = b * su_b + g * su_g + d[:, None] * su_d + p * su_l
    u = tl.load(u_ptr + at_u, mask=m2, other=0.0).to(tl.float32)
    dt_raw = tl.load(dt_ptr + b * sdt_b + g * sdt_g + d[:, None] * sdt_d + p * sdt_l,
                     mask=m2, other=0.0).to(tl.float32)
    if HAS_TABLE:
        u = _steps_hint(u, table_ptr, g, t, L, d, m2, PTX)
        dt_raw = _steps_hint(dt_raw, table_ptr, g, t, L, d, m2, PTX)
    else:
        dt_raw = _layout_hint(dt_raw, u_ptr, at_u, m2, PTX)
    return u, dt_raw


@triton.jit
def _steps_ahead(u_ptr, dt_ptr, table_ptr, b, g, d, da, dmask, ts, L, su_b, su_g, su_d, su_l, sdt_b, sdt_g,
                 sdt_d, sdt_l, HAS_TABLE: tl.constexpr, PTX: tl.constexpr):
    # the forward's REGS_AHEAD: a block's table positions, u and raw delta at the row's steps ts, loaded a
    # block before their use (d the rows' channels, da as _address_channels gives them)
    p = _natural(table_ptr, g, ts, ts < L, d, L, HAS_TABLE)
    u, dt_raw = _load_u_delta(u_ptr, dt_ptr, b, g, da, p, dmask[:, None] & (ts < L), su_b, su_g, su_d, su_l,
                              sdt_b, sdt_g, sdt_d, sdt_l, table_ptr, ts, L, HAS_TABLE, PTX)
    return p, u, dt_raw


@triton.jit
def _steps_hint(x, table_ptr, g, t, L, d, mask, PTX: tl.constexpr):
    """x [BD, E] in the steps' layout (a row of E per lane) where its addresses do not say so (through a
    table, gathered steps): triton_seg's int8 hint at bytes t of direction g's table row, which are contiguous
    along the steps and the same in every lane, as u's rows are without a table."""
    return _layout_hint(x, table_ptr, g * L * 4 + t + 0 * d[:, None], mask, PTX)


@triton.jit
def _address_channels(d, HAS_TABLE: tl.constexpr, PTX: tl.constexpr):
    """The channels [BD] for the addresses of u, delta, z, the output and their gradients. Through a table on
    NVIDIA GPUs, with their contiguity hidden from Triton: on channels-last maps (channel stride 1) it would
    otherwise lay out those loads with channels in each lane's registers, not steps, and convert every
    block's tiles (local sm_90 compile of the forward: 456 bytes of stack and 288 shuffles a block, against
    none and 0 with this copy, v1.28)."""
    if HAS_TABLE and PTX:  # a copy Triton cannot see through (tl.max_contiguous(d, 1) lowers nothing)
        return tl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r", [d], dtype=tl.int32, is_pure=True, pack=1)
    return d


@triton.jit
def _A2_tile(A_ptr, u_ptr, table_ptr, b, g, d, ch, s0, nn, nm, L, su_b, su_g, su_d, su_l, N: tl.constexpr,
             HAS_TABLE: tl.constexpr, PTX: tl.constexpr):
    """A of the program's rows (log2 units, [BD, NP // SPLIT]: each row's states from s0) in the steps'
    layout: the int8 hint on a tile of u's rows (of the table's row through one), so that the states and A
    share the registers' order of a block's steps."""
    A2 = _load_A2(A_ptr + ch[:, None] * N + s0[:, None] + nn[None, :], nm)
    if HAS_TABLE:
        return _steps_hint(A2, table_ptr, g, nn[None, :], L, d, nm & (nn[None, :] < L), PTX)
    return _layout_hint(A2, u_ptr, b * su_b + g * su_g + d[:, None] * su_d + nn[None, :] * su_l,
                        nm & (nn[None, :] < L), PTX)


@triton.jit
def _prefetch_steps(u_ptr, dt_ptr, table_ptr, b, g, d, t0, ee, L, su_b, su_g, su_d, su_l, sdt_b, sdt_g, sdt_d,
                    sdt_l, HAS_TABLE: tl.constexpr, SHARES: tl.constexpr = False):
    """Asks for u and delta at the E steps from t0 (the next block's) in L1, holding no registers meanwhile:
    the forward's block otherwise waits on their loads at its start (Nsight Compute, bf16, 1024 x 4096: 25 %
    of the stall samples, v1.29). d [BD]: each lane's channel (as _address_channels gives it). Without a
    table one prefetch per lane at the first step, which covers its row where steps are adjacent
    (channel-major maps); through one, every step's position as loaded (0 past L; scaled by the L stride
    where the host scaled the table: triton_scan._table_positions). NVIDIA GPUs only (inline PTX)."""
    u_row = u_ptr + b * su_b + g * su_g + d[:, None] * su_d
    dt_row = dt_ptr + b * sdt_b + g * sdt_g + d[:, None] * sdt_d
    if HAS_TABLE:
        t = t0 + ee
        p = tl.load(table_ptr + g * L + t + 0 * d[:, None], mask=t < L, other=0)
        _prefetch_at(u_row + p * su_l)
        _prefetch_at(dt_row + p * sdt_l)
    else:
        first = tl.zeros([d.shape[0]], tl.int32)[:, None] + t0
        if SHARES:  # ee [BD, S]: the row's share of the steps
            first += tl.min(ee, axis=1)[:, None]
        _prefetch_rows(u_row, first, L, su_l)
        _prefetch_rows(dt_row, first, L, sdt_l)


@triton.jit
def _row(ptrs, tmask, EVEN_L: tl.constexpr):
    # a B or C row over a block [BD, E] in its own dtype (zeros past L)
    if EVEN_L:
        return tl.load(ptrs)
    return tl.load(ptrs, mask=tmask, other=0.0)


@triton.jit
def _natural(table_ptr, g, t, tmask, d, L, HAS_TABLE: tl.constexpr):
    """Where the steps t [1, E] of direction g read and write u, delta, z, the output and their gradients:
    table[g, t] ([BD, E] int32, the same in every lane, loaded as the B / C rows are, in the steps'
    layout), or t itself without a table. B, C and their gradients stay in step order (the host gathers
    them: a gather of N rows where u's would be of D)."""
    p = t
    if HAS_TABLE:
        p = tl.load(table_ptr + g * L + t + 0 * d[:, None], mask=tmask, other=0)
    return p


@triton.jit
def _rows(ptrs, tmask, EVEN_L: tl.constexpr, PTX: tl.constexpr):
    # the same in fp32
    return _f32(_row(ptrs, tmask, EVEN_L), PTX)


@triton.jit
def _state_scalars(A_row, h_row, mu_slot, n, rows, dmask, BLOCKS: tl.constexpr):
    # the lane backward's values of state n (of the row's group) for one block: A (log2 units) from the row's
    # A, the block's start state from h_row (its scratch slot, with a stride of rows between states, or the
    # chunk's checkpoint where a chunk is one block) and the adjoint the later block left
    A2n = _load_A2(A_row + n, dmask)
    hn = tl.load(h_row + (n * rows if BLOCKS > 1 else n), mask=dmask, other=0.0)
    mu = tl.load(mu_slot + n * rows, mask=dmask, other=0.0)
    return A2n, hn, mu


@triton.jit
def _channel_set(A_ptr, D_ptr, bias_ptr, u_ptr, table_ptr, ckpt_ptr, b, g, G, DG, d, dmask, ch, s0, nn, nm,
                 lead, n_chunks, L, su_b, su_g, su_d, su_l, BD: tl.constexpr, N: tl.constexpr,
                 NH: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_TABLE: tl.constexpr,
                 SHARES: tl.constexpr, PTX: tl.constexpr):
    """A forward channel set's values for the program (channels d, ch; the second set's with PAIRS): D (on
    the lead row alone without SHARES: D u is added once per channel, before the rows' sum), the bias, the
    zero states in A's layout, A's columns (log2 units), the channels for addresses (_address_channels) and
    the rows' checkpoint slots."""
    Dv, bias = _channel_vectors(D_ptr, bias_ptr, ch, dmask, BD, HAS_D, HAS_BIAS)
    if not SHARES:
        Dv = tl.where(lead, Dv, 0.0)
    A2 = _A2_tile(A_ptr, u_ptr, table_ptr, b, g, d, ch, s0, nn, nm, L, su_b, su_g, su_d, su_l, N, HAS_TABLE,
                  PTX)
    state = ckpt_ptr + (b * G * DG + ch) * n_chunks * N + s0
    return Dv, bias, A2 * 0.0, _columns(A2, BD, NH), _address_channels(d, HAS_TABLE, PTX), state


@triton.jit
def _fwd_columns(u, dt, Dv, B_seg, t, d, tmask, BD: tl.constexpr, E: tl.constexpr, S: tl.constexpr,
                 SPLIT: tl.constexpr, HAS_D: tl.constexpr, SHARES: tl.constexpr, PTX: tl.constexpr):
    """A channel set's block inputs for _block: delta, delta u and the y accumulators as E columns [BD] each.
    SHARES: every row's share gathered (_all_shares), y from zeros (D u is added to the row's share after the
    sum over rows); else y from D u (Dv zero but on the lead row)."""
    dtu = dt * u
    if SHARES:
        dts = _all_shares(dt, BD, S, SPLIT)
        dtus = _all_shares(dtu, BD, S, SPLIT)
        ys = _columns(_rows_layout(B_seg, t, d, tmask, PTX), BD, E)  # zeros
    else:
        dts = _columns(dt, BD, E)
        dtus = _columns(dtu, BD, E)
        if HAS_D:
            ys = _columns(Dv[:, None] * u, BD, E)
        else:
            ys = _columns(tl.zeros_like(u), BD, E)
    return dts, dtus, ys


@triton.jit
def _fwd_out(ys, u, Dv, p, m2, lead, grp, t0, dmask, da, b, g, L, z_ptr, sz_b, sz_g, sz_d, sz_l, out_ptr,
             so_b, so_g, so_d, so_l, BD: tl.constexpr, E: tl.constexpr, S: tl.constexpr, SPLIT: tl.constexpr,
             HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_TABLE: tl.constexpr, SHARES: tl.constexpr,
             FULL: tl.constexpr, PTX: tl.constexpr):
    """A channel set's block output: y (E columns [BD], each row's part of the sum over its states) summed
    over the channel's rows, D u and the gate z applied, and stored (added through a table)."""
    if SHARES:  # the row's share of the sums over its channel's rows, then D u there
        y = _stack(_sum_shares(ys, grp, BD, E, SPLIT), BD, S)
        if HAS_D:
            y = y + Dv[:, None] * u
    else:
        y = _sum_groups(_stack(ys, BD, E), BD, SPLIT)
        if not HAS_TABLE:  # the lead row stores; through a table each row adds its share
            m2 = m2 & lead[:, None]
    if HAS_Z:
        z = tl.load(z_ptr + b * sz_b + g * sz_g + da[:, None] * sz_d + p * sz_l, mask=m2,
                    other=0.0).to(tl.float32)
        y = y * z / (1.0 + tl.exp(-z))
    out_row = out_ptr + b * so_b + g * so_g + da * so_d
    if SHARES and HAS_TABLE:  # each row its share, the directions' outputs added in one fp32 map
        _share_out(out_row, y, p, m2, so_l, True, FULL, BD, S, PTX)
    elif HAS_TABLE:  # the directions' outputs added in one fp32 map (stride 0 over the group)
        _steps_out(out_row, y, p, t0, grp, dmask, so_l, L, True, BD, E, SPLIT, FULL, PTX)
    else:  # one vector store a row: column by column ptxas kept a scalar store a step, each a partial write
        # of 8 channels' lines (plain forward 2-4 % slower in bf16, v1.35)
        tl.store(out_row[:, None] + p * so_l, y.to(out_ptr.dtype.element_ty), mask=m2)


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
    PREFETCH: tl.constexpr, EVEN_L: tl.constexpr, SPLIT: tl.constexpr, EVEN_D: tl.constexpr = False,
    SHARES: tl.constexpr = False, PAIRS: tl.constexpr = False, NMAJOR: tl.constexpr = False,
):
    """The forward of ``_scan_fwd_kernel`` (same arguments and outputs; with an index table, B and C in step
    order (_natural) and the output added, fp32, not stored: the host gives every direction the same map,
    stride 0 over the group, each of a channel's rows adding its share of the steps, _steps_out; EVEN_D: the
    group's channels a multiple of 32). Programs: BD lane rows of one (batch, group), one channel per lane
    (SPLIT = 1), walking all L steps in blocks of E.
    With STORE_CKPT the state before each T-step chunk c goes to checkpoint slot c. PREFETCH=2 (NVIDIA
    GPUs) asks for the B / C rows of the block four ahead in L1 (one 128-byte line holds four blocks of
    16-bit rows). SPLIT > 1: each channel's states over SPLIT lanes (_lane_channels), their y summed by
    shuffles once per block, for SPLIT times the warps where there are few channels. SHARES (SPLIT > 1): each
    of a channel's rows loads u and delta and computes softplus for its share of the block's steps only (group
    j: steps j * E / SPLIT onwards), the rows exchanging delta and delta u by shuffles (_all_shares), and sums
    y over the rows by a reduce-scatter into the same shares (_sum_shares), which it then writes: without,
    every row loads and computes all E steps. PAIRS (SPLIT > 1; v1.35, by the grid since v1.38:
    triton_scan.lane_pairs): a program holds two sets of BD // SPLIT channels, each lane running both
    channels' states with every B / C value it loads (_block_pair). NMAJOR: B and C with state stride 1, each
    step's states of a lane read in one vector load (_step_rows)."""
    g, b, G, d, dmask, ch, s0, nn, nm = _lane_channels(DG, N, NP, BD, SPLIT, PAIRS)
    NH: tl.constexpr = NP // SPLIT  # the states a lane holds (N == NP where SPLIT > 1)
    NL: tl.constexpr = N if SPLIT == 1 else NH
    lead = s0 == 0  # the row that stores a channel's output
    grp = tl.arange(0, BD) // (BD // SPLIT)  # the row's state group (lead: 0)
    # no channel or step out of range (EVEN_D: DG a multiple of 32; a program's channels divide 32)
    FULL: tl.constexpr = EVEN_L and EVEN_D and BD // SPLIT * (2 if PAIRS else 1) <= 32
    ee = tl.arange(0, E)[None, :]
    S: tl.constexpr = E // SPLIT if SHARES else E  # the steps a row loads and writes
    es = (grp * S)[:, None] + tl.arange(0, S)[None, :] if SHARES else ee  # their offsets in a block
    # PREFETCH: 2 the B / C rows four blocks ahead into L1; 4 the next block's u and delta (_prefetch_steps);
    # 6 both; 8 the next block's u and delta (and table positions) loaded into registers a block ahead, so
    # that no block starts by waiting on its own loads; 10 = 8 and 2
    ROWS_AHEAD: tl.constexpr = (PREFETCH == 2 or PREFETCH == 6 or PREFETCH == 10) and not NMAJOR
    STEPS_AHEAD: tl.constexpr = PREFETCH == 4 or PREFETCH == 6
    REGS_AHEAD: tl.constexpr = PREFETCH >= 8
    Dv, bias, h, A2s, da, state = _channel_set(A_ptr, D_ptr, bias_ptr, u_ptr, table_ptr, ckpt_ptr, b, g, G,
                                               DG, d, dmask, ch, s0, nn, nm, lead, n_chunks, L, su_b, su_g,
                                               su_d, su_l, BD, N, NH, HAS_D, HAS_BIAS, HAS_TABLE, SHARES,
                                               FAST_EXP)
    if PAIRS:  # the program's second channel set: BD // SPLIT channels on from the first
        tl.static_assert(SPLIT > 1 and not REGS_AHEAD, "PAIRS: states split over lanes, PREFETCH below 8")
        d2 = d + BD // SPLIT
        dmask2 = d2 < DG
        ch2 = g * DG + d2
        nm2 = dmask2[:, None] & (nn[None, :] < N)
        Dv2, bias2, h2, A2s2, da2, state2 = _channel_set(A_ptr, D_ptr, bias_ptr, u_ptr, table_ptr, ckpt_ptr,
                                                         b, g, G, DG, d2, dmask2, ch2, s0, nn, nm2, lead,
                                                         n_chunks, L, su_b, su_g, su_d, su_l, BD, N, NH,
                                                         HAS_D, HAS_BIAS, HAS_TABLE, SHARES, FAST_EXP)
    B_seg = B_ptr + b * sB_b + g * sB_g + (s0 * sB_n)[:, None]  # [BD, 1]: each row's first state
    C_seg = C_ptr + b * sC_b + g * sC_g + (s0 * sC_n)[:, None]
    BLOCKS: tl.constexpr = T // E
    if REGS_AHEAD:  # the first block's loads (each block then loads the next one's)
        p_next, u_next, dtr_next = _steps_ahead(u_ptr, dt_ptr, table_ptr, b, g, d, da, dmask, es, L, su_b,
                                                su_g, su_d, su_l, sdt_b, sdt_g, sdt_d, sdt_l, HAS_TABLE,
                                                FAST_EXP)
    for c in range(n_chunks):
        if STORE_CKPT:  # the state before chunk c, which the backward starts chunk c from
            tl.store(state[:, None] + c * N + nn[None, :], h, mask=nm)
            if PAIRS:
                tl.store(state2[:, None] + c * N + nn[None, :], h2, mask=nm2)
        for s in range(BLOCKS):
            t0 = c * T + s * E
            t = t0 + ee  # [1, E]: the B / C rows' steps
            tmask = t < L
            ts = t0 + es  # the row's steps: [1, E], or [BD, S] with SHARES
            m2 = dmask[:, None] & (ts < L)
            if REGS_AHEAD:
                p, u, dt_raw = p_next, u_next, dtr_next
                p_next, u_next, dtr_next = _steps_ahead(u_ptr, dt_ptr, table_ptr, b, g, d, da, dmask, ts + E,
                                                        L, su_b, su_g, su_d, su_l, sdt_b, sdt_g, sdt_d,
                                                        sdt_l, HAS_TABLE, FAST_EXP)
                _, dt = _delta(dt_raw, bias[:, None], m2, HAS_BIAS, SOFTPLUS)
            else:
                p = _natural(table_ptr, g, ts, ts < L, d, L, HAS_TABLE)
                u, _, dt = _u_delta(u_ptr, dt_ptr, bias, b, g, da, p, m2, su_b, su_g, su_d, su_l, sdt_b,
                                    sdt_g, sdt_d, sdt_l, table_ptr, ts, L, HAS_BIAS, SOFTPLUS, HAS_TABLE,
                                    FAST_EXP)
            if ROWS_AHEAD and FAST_EXP:
                ahead = tl.zeros([BD], tl.int32)[:, None] + t0 + 4 * E  # every lane: the block 4 ahead
                for n in tl.static_range(NL):
                    _prefetch_rows(B_seg + n * sB_n, ahead, L, sB_l)
                    _prefetch_rows(C_seg + n * sC_n, ahead, L, sC_l)
            if STEPS_AHEAD and FAST_EXP:  # the next block's u and delta into L1 (its first step: the row)
                _prefetch_steps(u_ptr, dt_ptr, table_ptr, b, g, da, t0 + E, es, L, su_b, su_g, su_d, su_l,
                                sdt_b, sdt_g, sdt_d, sdt_l, HAS_TABLE, SHARES)
            dts, dtus, ys = _fwd_columns(u, dt, Dv, B_seg, t, d, tmask, BD, E, S, SPLIT, HAS_D, SHARES,
                                         FAST_EXP)
            if PAIRS:  # the second channel set: its own u and delta, the same B / C values
                m2b = dmask2[:, None] & (ts < L)
                u2, _, dt2 = _u_delta(u_ptr, dt_ptr, bias2, b, g, da2, p, m2b, su_b, su_g, su_d, su_l, sdt_b,
                                      sdt_g, sdt_d, sdt_l, table_ptr, ts, L, HAS_BIAS, SOFTPLUS, HAS_TABLE,
                                      FAST_EXP)
                if STEPS_AHEAD and FAST_EXP:
                    _prefetch_steps(u_ptr, dt_ptr, table_ptr, b, g, da2, t0 + E, es, L, su_b, su_g, su_d,
                                    su_l, sdt_b, sdt_g, sdt_d, sdt_l, HAS_TABLE, SHARES)
                dts2, dtus2, ys2 = _fwd_columns(u2, dt2, Dv2, B_seg, t, d, tmask, BD, E, S, SPLIT, HAS_D,
                                                SHARES, FAST_EXP)
                h, ys, h2, ys2 = _block_pair(h, dts, dtus, ys, A2s, h2, dts2, dtus2, ys2, A2s2, B_seg, C_seg,
                                             t, tmask, d, sB_l, sC_l, sB_n, sC_n, BD, NH, E, EVEN_L, FAST_EXP,
                                             t0, L, NMAJOR, N)
                _fwd_out(ys2, u2, Dv2, p, m2b, lead, grp, t0, dmask2, da2, b, g, L, z_ptr, sz_b, sz_g, sz_d,
                         sz_l, out_ptr, so_b, so_g, so_d, so_l, BD, E, S, SPLIT, HAS_D, HAS_Z, HAS_TABLE,
                         SHARES, FULL, FAST_EXP)
            else:
                h, ys = _block(h, dts, dtus, ys, A2s, B_seg, C_seg, t, tmask, d, sB_l, sC_l, sB_n, sC_n, BD,
                               NL, NH, E, EVEN_L, FAST_EXP, True, t0, L, NMAJOR, N)
            _fwd_out(ys, u, Dv, p, m2, lead, grp, t0, dmask, da, b, g, L, z_ptr, sz_b, sz_g, sz_d, sz_l,
                     out_ptr, so_b, so_g, so_d, so_l, BD, E, S, SPLIT, HAS_D, HAS_Z, HAS_TABLE, SHARES, FULL,
                     FAST_EXP)


@triton.jit
def _scan_bwd_lane_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, z_ptr, dout_ptr, ckpt_ptr, table_ptr,
    du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, work_ptr,
    L, DG, n_chunks,
    su_b, su_g, su_d, su_l,
    sdt_b, sdt_g, sdt_d, sdt_l,
    sB_b, sB_g, sB_n, sB_l,
    sC_b, sC_g, sC_n, sC_l,
    sz_b, sz_g, sz_d, sz_l,
    so_b, so_g, so_d, so_l,
    sdu_b, sdu_g, sdu_d, sdu_l,
    sdd_b, sdd_g, sdd_d, sdd_l,
    N: tl.constexpr, NP: tl.constexpr, T: tl.constexpr, BD: tl.constexpr, E: tl.constexpr,
    UNROLL: tl.constexpr, FAST_EXP: tl.constexpr, PREFETCH: tl.constexpr, EVEN_L: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_TABLE: tl.constexpr, PTX_RED: tl.constexpr, SPLIT: tl.constexpr, EVEN_D: tl.constexpr = False,
    SHARES: tl.constexpr = False,
):
    """The backward on the lane layout (same arguments and outputs as the segment backward, no gate z; with an
    index table, B, C, dB and dC in step order (_natural) and du added, fp32, as the forward's output is;
    ddt's own strides sdd_*; work_ptr: fp32 scratch of (T / E + 1) x NP x rows, rows = batch x G x DG).
    Per chunk, in reverse: pass 1 runs the chunk forwards from its checkpoint, all states in registers as in
    the forward, and keeps each block's start states in the scratch; pass 2 walks the blocks backwards and,
    per state n (a loop), runs the block's h forwards again from its start state, then the adjoint mu
    backwards from the one the later block left in the scratch, with every gradient: mu's chain needs
    a_{t+1}, the next register, or for the block's last step exp2(A delta) at the next block's first step.
    dB / dC, sums over the channels (the lanes), go by triton_seg's reduce-scatter; dA by one add per state
    and block.

    Where a chunk is one block (T = E: the forward's 16-step checkpoints, MAMBAAD_SCAN_LANE_CKPT) pass 1 is
    skipped. Local sm_90 compile (bf16): pass 2 about 27 instructions per element and state (11 of them the
    reduce-scatters and the rows' conversions), pass 1 about 9.5; the segment backward about 33. The
    difference on the H200 is parallelism: 16 independent exponentials and products per state in a warp,
    and one lane per (batch, channel), too few at batch 16's longest sequence (kernels/NOTES.md, v1.12).
    SPLIT > 1 spreads each channel's states over SPLIT lanes (_lane_channels) for SPLIT times the warps;
    their sums over the states (for du and ddelta) meet by shuffles once per block. SHARES (SPLIT > 1), as in
    the forward: in pass 2 each of a channel's rows loads u, delta and dout and computes softplus for its
    share of the block's steps, the rows exchanging delta, delta u and dout by shuffles; the sums over the
    states meet by a reduce-scatter into the same shares, whose du and d(delta) each row then computes and
    writes (dD and dbias summed over the rows at the end)."""
    g, b, G, d, dmask, ch, s0, nn, nm = _lane_channels(DG, N, NP, BD, SPLIT)
    NH: tl.constexpr = NP // SPLIT  # the states a lane holds (N == NP where SPLIT > 1)
    NL: tl.constexpr = N if SPLIT == 1 else NH
    lead = s0 == 0  # the row that stores a channel's gradients (through a table: each row its share)
    grp = tl.arange(0, BD) // (BD // SPLIT)  # the row's state group (lead: 0)
    FULL: tl.constexpr = EVEN_L and EVEN_D and BD // SPLIT <= 32  # no channel or step out of range
    LOG_E: tl.constexpr = 2 if E == 4 else 3 if E == 8 else 4
    # PREFETCH 5: as 4, the next state's B / C rows carried in their own dtype and converted in the
    # iteration that uses them. At 4 the conversion, in the iteration that issued the load, waited on it (7 %
    # of the stall samples at 1024 x 4096, Nsight Compute); at 5 the loop's back edge still copies the rows'
    # registers (5.7 %), but the backward is 1.5-12 % faster (kernels/NOTES.md v1.27)
    RAW_ROWS: tl.constexpr = PREFETCH >= 5
    BLOCKS: tl.constexpr = T // E
    ee = tl.arange(0, E)[None, :]
    S: tl.constexpr = E // SPLIT if SHARES else E  # pass 2's steps a row loads and writes
    es = (grp * S)[:, None] + tl.arange(0, S)[None, :] if SHARES else ee  # their offsets in a block
    Dv, bias = _channel_vectors(D_ptr, bias_ptr, ch, dmask, BD, HAS_D, HAS_BIAS)
    dD = tl.zeros([BD], tl.float32)
    dbias = tl.zeros([BD], tl.float32)
    A2 = _A2_tile(A_ptr, u_ptr, table_ptr, b, g, d, ch, s0, nn, nm, L, su_b, su_g, su_d, su_l, N, HAS_TABLE,
                  FAST_EXP)
    da = _address_channels(d, HAS_TABLE, FAST_EXP)
    A2s = _columns(A2, BD, NH)
    B_seg = B_ptr + b * sB_b + g * sB_g + (s0 * sB_n)[:, None]  # [BD, 1]: each row's first state
    C_seg = C_ptr + b * sC_b + g * sC_g + (s0 * sC_n)[:, None]
    dB_base = (dB_ptr + (b * G + g) * N * L + s0 * L)[:, None]
    dC_base = (dC_ptr + (b * G + g) * N * L + s0 * L)[:, None]
    # the scratch, [slot, state, row] so that a state's values of the lanes are adjacent: slots 0 .. BLOCKS
    # - 1 the block start states of the current chunk, slot BLOCKS the adjoint handed from block to block
    row = b * G * DG + ch  # this lane's (batch, channel): its rows of the checkpoints, dA, dD and the scratch
    rows = tl.num_programs(2) * G * DG
    work = work_ptr + row + s0 * rows  # from the row's first state
    mu_slot = work + BLOCKS * NP * rows
    for ns in tl.static_range(NH):
        tl.store(mu_slot + ns * rows, tl.zeros([BD], tl.float32), mask=dmask)
    ckpt = ckpt_ptr + row * n_chunks * N + s0
    A_row = A_ptr + ch * N + s0  # this row's states of A (pass 2 loads one per state)
    for i in range(n_chunks):
        c = n_chunks - 1 - i
        # pass 1: the chunk's block start states, from its checkpoint (none where a chunk is one block: the
        # checkpoint is its start state)
        if BLOCKS > 1:
            h = tl.load(ckpt[:, None] + c * N + nn[None, :], mask=nm, other=0.0) + A2 * 0.0  # in A2's layout
            for s in range(BLOCKS):
                hs = _columns(h, BD, NH)
                for ns in tl.static_range(NH):  # (not n: n is the loop variable of pass 2's state loop)
                    tl.store(work + (s * NP + ns) * rows, hs[ns], mask=dmask)
                t = c * T + s * E + ee
                tmask = t < L
                m2 = dmask[:, None] & tmask
                p = _natural(table_ptr, g, t, tmask, d, L, HAS_TABLE)
                u, _, dt = _u_delta(u_ptr, dt_ptr, bias, b, g, da, p, m2, su_b, su_g, su_d, su_l, sdt_b,
                                    sdt_g, sdt_d, sdt_l, table_ptr, t, L, HAS_BIAS, SOFTPLUS, HAS_TABLE,
                                    FAST_EXP)
                dts = _columns(dt, BD, E)
                h, _ = _block(h, dts, _columns(dt * u, BD, E), dts, A2s, B_seg, C_seg, t, tmask,
                              d, sB_l, sC_l, sB_n, sC_n, BD, NL, NH, E, EVEN_L, FAST_EXP, False)
            tl.debug_barrier()  # the start states are stored before pass 2 reads them
        # pass 2: the blocks backwards
        for j in range(BLOCKS):
            s = BLOCKS - 1 - j
            t0 = c * T + s * E
            t = t0 + ee  # [1, E]: the B / C rows' steps
            tmask = t < L
            ts = t0 + es  # the row's steps: [1, E], or [BD, S] with SHARES
            m2 = dmask[:, None] & (ts < L)
            p = _natural(table_ptr, g, ts, ts < L, d, L, HAS_TABLE)
            u, x, dt = _u_delta(u_ptr, dt_ptr, bias, b, g, da, p, m2, su_b, su_g, su_d, su_l, sdt_b, sdt_g,
                                sdt_d, sdt_l, table_ptr, ts, L, HAS_BIAS, SOFTPLUS, HAS_TABLE, FAST_EXP)
            at_o = b * so_b + g * so_g + da[:, None] * so_d + p * so_l
            gy = tl.load(dout_ptr + at_o, mask=m2, other=0.0).to(tl.float32)
            # delta at the next block's first step (0 past L: a = 1 there, and mu = 0 anyway)
            next_mask = dmask & (t0 + E < L)
            p_next = t0 + E
            if HAS_TABLE:
                p_next = tl.load(table_ptr + g * L + p_next + 0 * d, mask=next_mask, other=0)
            dt_next = tl.load(dt_ptr + b * sdt_b + g * sdt_g + da * sdt_d + p_next * sdt_l, mask=next_mask,
                              other=0.0).to(tl.float32)
            _, dt_next = _delta(dt_next, bias, next_mask, HAS_BIAS, SOFTPLUS)
            dtu = dt * u
            if SHARES:
                dts = _all_shares(dt, BD, S, SPLIT)
                dtus = _all_shares(dtu, BD, S, SPLIT)
                gys = _all_shares(gy, BD, S, SPLIT)
            else:
                dts = _columns(dt, BD, E)
                dtus = _columns(dtu, BD, E)
                gys = _columns(gy, BD, E)
            first = tl.zeros([BD, 1], tl.int32) + t0  # every lane: the block's first step
            B_row = B_seg + t * sB_l + 0 * d[:, None]
            C_row = C_seg + t * sC_l + 0 * d[:, None]
            d_dtA = tl.zeros([BD, E], tl.float32)  # sum_n A_n mu_t a_t h_{t-1} (A in log2 units)
            d_dtu = tl.zeros([BD, E], tl.float32)  # sum_n mu_t B_n
            if SHARES:
                d_dtA = _rows_layout(B_seg, t, d, tmask, FAST_EXP)
            B_nx = _row(B_row, tmask, EVEN_L)  # from PREFETCH 5 on kept in the rows' own dtype
            C_nx = _row(C_row, tmask, EVEN_L)
            if not RAW_ROWS:
                B_nx, C_nx = _f32(B_nx, FAST_EXP), _f32(C_nx, FAST_EXP)
            h_row = work + s * NP * rows if BLOCKS > 1 else ckpt + c * N
            if PREFETCH >= 4:  # state 0's A, start state and adjoint, loaded as the rows are
                A2_nx, h_nx, mu_nx = _state_scalars(A_row, h_row, mu_slot, 0, rows, dmask, BLOCKS)
            for n in tl.range(0, NL, loop_unroll_factor=UNROLL):
                if PREFETCH == 1 or PREFETCH >= 4:  # this state's rows were loaded an iteration ahead
                    Bn, Cn = B_nx, C_nx
                    m = tl.minimum(n + 1, NL - 1)
                    B_nx = _row(B_row + m * sB_n, tmask, EVEN_L)
                    C_nx = _row(C_row + m * sC_n, tmask, EVEN_L)
                    if RAW_ROWS:  # converted here, in the iteration that uses them
                        Bn, Cn = _f32(Bn, FAST_EXP), _f32(Cn, FAST_EXP)
                    else:
                        B_nx, C_nx = _f32(B_nx, FAST_EXP), _f32(C_nx, FAST_EXP)
                else:
                    Bn = _rows(B_row + n * sB_n, tmask, EVEN_L, FAST_EXP)
                    Cn = _rows(C_row + n * sC_n, tmask, EVEN_L, FAST_EXP)
                if PREFETCH >= 4:  # and its A, start state and adjoint too (state n + 1's adjoint was stored
                    # by the later block: no load here reads what this loop writes)
                    A2n, hn, mu = A2_nx, h_nx, mu_nx
                    A2_nx, h_nx, mu_nx = _state_scalars(A_row, h_row, mu_slot, m, rows, dmask, BLOCKS)
                else:
                    A2n, hn, mu = _state_scalars(A_row, h_row, mu_slot, n, rows, dmask, BLOCKS)
                Bs = _columns(Bn, BD, E)
                Cs = _columns(Cn, BD, E)
                a_s = ()
                qs = ()
                dCs = ()
                for k in tl.static_range(E):
                    a = _exp2(dts[k] * A2n, FAST_EXP)
                    q = a * hn  # a_t h_{t-1}
                    hn = q + dtus[k] * Bs[k]
                    a_s = a_s + (a,)
                    qs = qs + (q,)
                    dCs = dCs + (gys[k] * hn,)
                _red_scatter_rows(dC_base + n * L, first, L, tl.reshape(_stack(dCs, BD, E), [BD, 1, E]), 1, E,
                                  LOG_E, PTX_RED, BD // SPLIT)
                a_next = _exp2(dt_next * A2n, FAST_EXP)
                w_sum = tl.zeros([BD], tl.float32)
                dtA = _columns(d_dtA, BD, E)
                dtu_acc = _columns(d_dtu, BD, E)
                new_dtA = ()
                new_dtu = ()
                dBs = ()
                for k in tl.static_range(E - 1, -1, -1):
                    mu = a_next * mu + gys[k] * Cs[k]
                    w = mu * qs[k]
                    w_sum += w * dts[k]
                    new_dtA = (dtA[k] + A2n * w,) + new_dtA
                    new_dtu = (dtu_acc[k] + mu * Bs[k],) + new_dtu
                    dBs = (mu * dtus[k],) + dBs
                    a_next = a_s[k]
                d_dtA = _stack(new_dtA, BD, E)
                d_dtu = _stack(new_dtu, BD, E)
                tl.store(mu_slot + n * rows, mu, mask=dmask)
                tl.atomic_add(dA_ptr + row * N + s0 + n, w_sum, mask=dmask, sem="relaxed")
                _red_scatter_rows(dB_base + n * L, first, L, tl.reshape(_stack(dBs, BD, E), [BD, 1, E]), 1, E,
                                  LOG_E, PTX_RED, BD // SPLIT)
            if SHARES:  # the row's share of the sums over its channel's rows
                d_dtu = _stack(_sum_shares(_columns(d_dtu, BD, E), grp, BD, E, SPLIT), BD, S)
                d_dtA = _stack(_sum_shares(_columns(d_dtA, BD, E), grp, BD, E, SPLIT), BD, S)
            else:  # every row the sums over its channel's rows
                d_dtu = _sum_groups(d_dtu, BD, SPLIT)
                d_dtA = _sum_groups(d_dtA, BD, SPLIT)
            if HAS_TABLE:  # du added (the directions share u) and d(delta) stored, each row its share
                du, d_dt, dD, dbias = _input_grad_terms(u, x, dt, gy, d_dtu, d_dtA, Dv, dD, dbias, m2, HAS_D,
                                                        SOFTPLUS)
                du_row = du_ptr + b * sdu_b + g * sdu_g + da * sdu_d
                ddt_row = ddt_ptr + b * sdd_b + g * sdd_g + da * sdd_d
                if SHARES:  # the steps it loaded
                    _share_out(du_row, du, p, m2, sdu_l, True, FULL, BD, S, FAST_EXP)
                    _share_out(ddt_row, d_dt, p, m2, sdd_l, False, FULL, BD, S, FAST_EXP)
                else:  # by PTX on NVIDIA GPUs
                    _steps_out(du_row, du, p, t0, grp, dmask, sdu_l, L, True, BD, E, SPLIT, FULL, FAST_EXP)
                    _steps_out(ddt_row, d_dt, p, t0, grp, dmask, sdd_l, L, False, BD, E, SPLIT, FULL,
                               FAST_EXP)
            else:  # a tile store a row (column by column ptxas kept a 16-bit store a step): with SHARES each
                # row its share, else the lead row all E steps
                at_du = b * sdu_b + g * sdu_g + da[:, None] * sdu_d + p * sdu_l
                at_dd = b * sdd_b + g * sdd_g + da[:, None] * sdd_d + p * sdd_l
                mask = m2 if SHARES else m2 & lead[:, None]
                dD, dbias = _input_grads(u, x, dt, gy, d_dtu, d_dtA, Dv, dD, dbias, mask, du_ptr + at_du,
                                         ddt_ptr + at_dd, HAS_D, SOFTPLUS)
    if SHARES:  # each row summed its own steps' terms
        dD = tl.reshape(_sum_groups(dD[:, None], BD, SPLIT), [BD])
        dbias = tl.reshape(_sum_groups(dbias[:, None], BD, SPLIT), [BD])
    tl.store(dD_ptr + row, dD, mask=dmask & lead)
    tl.store(dbias_ptr + row, dbias, mask=dmask & lead)
