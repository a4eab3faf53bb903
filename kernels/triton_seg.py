"""Selective scan kernels with time in registers: each lane walks E consecutive steps of a chunk itself.

The tiles kernels (triton_scan.py) scan a [BD, T] tile with ``tl.associative_scan`` in the layout Triton picks
for its loads: 4 consecutive fp32 steps per lane (one 16-byte vector), 32 lanes along time. Every state then
pays a 5-level shuffle scan for 4 elements, about 20 instructions per element and state in the forward's
SASS. These kernels give each lane E = 16 consecutive steps (a [BD, S, E] view of the tile, S = T / E lanes
along time, the rest of the warp along channels) and scan in three passes:

1. in each lane, the sequential scan of its E steps from zero (one FFMA per step: the products of a are not
   needed, their total over the segment is exp2(A * sum of delta), with the sum taken once per chunk);
2. across the S lanes, the scan of the segments' totals (3 shuffle levels for S = 8), and from it each
   segment's incoming state;
3. in each lane again, its E steps from the incoming state (one FFMA per step).

That is about 10 instructions per element and state in the forward against the exponential's 8-cycle slot.
The backward does the same for h and, backwards, for the adjoint, with each lane's steps unpacked into
separate registers (``_unpack``) so that the reverse direction costs no shuffles and a_{t+1} needs no second
exponential: about 33 instructions per element and state against the tiles backward's 53.

Measured on the H200 (kernels/NOTES.md, v1.5), fewer instructions bought little: the forward runs 2-8 %
faster than the tiles one, the backward 6-9 % faster on bf16 inputs and 20-25 % slower on fp32 ones (so
fp32 keeps the tiles backward at 128-step chunks). Both wait on the L2 latency of each state's B and C rows
and on the lanes' serial FFMA chains, not on instruction issue. The config field PREFETCH takes the rows'
loads a state ahead: 1 into registers (the backward's best in v1.9, though it spills), 2 into L1 by a
prefetch instruction that holds no registers (the two-channel forward's best), 3 as 1 and the rows two states
ahead into L1 as well (bf16's best at 4096 steps in v1.10).

The layout is the compiler's choice: Triton gives a load at most 128 bits per lane (4 fp32), but takes the
widest vector among the loads in the same dataflow slice. An int8 load of the same shape (16 bytes = 16
elements) is that hint: on NVIDIA GPUs an inline PTX copy of delta names it as an operand without reading
it (ptxas drops the load; since v1.29), elsewhere its value is multiplied by 0.0 and added to delta (a
conversion, a sign select and an add per element: -0.0 is no identity, so that does not fold).
Without it (or on a Triton that lays it out otherwise) the kernels are as correct, only slower.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_scan import (
    _channel_vectors,
    _delta,
    _exp2,
    _input_grads,
    _load_A2,
    _pair_combine,
    _program_channels,
    _state_rows,
    _state_slots,
)


def _red_asm(e: int, width: int = 4) -> tuple[tl.constexpr, tl.constexpr]:
    # E elements of one lane added to E consecutive floats at one address: E / width vector reductions
    # (.v2 or .v4, sm_90). Operands: E outputs (unused), E copies of the address, E values.
    asm = " ".join(
        f"red.global.add.v{width}.f32 [${e}+{4 * width * j}], "
        f"{{{', '.join(f'${2 * e + width * j + i}' for i in range(width))}}};" for j in range(e // width))
    return tl.constexpr(asm), tl.constexpr(",".join(["=r"] * e + ["l"] * e + ["r"] * e))


def _red_part_asm(e: int) -> tuple[tl.constexpr, tl.constexpr]:
    # E sums held by every lane of a column; the lane of row r adds the r-th 4 of them (rows 0 .. E/4 - 1; the
    # others, none). Operands: E outputs (unused), E copies of the address, of the row, E values.
    asm = ["{ .reg .pred p;"]
    for j in range(e // 4):
        v = ", ".join(f"${3 * e + 4 * j + i}" for i in range(4))
        asm.append(f"setp.eq.u32 p, ${2 * e}, {j}; @p red.global.add.v4.f32 [${e}+{16 * j}], {{{v}}};")
    asm.append("}")
    return tl.constexpr(" ".join(asm)), tl.constexpr(",".join(["=r"] * e + ["l"] * e + ["r"] * e + ["r"] * e))


_RED8, _RED8_OPS = _red_asm(8)
_RED4, _RED4_OPS = _red_asm(4)
_RED2, _RED2_OPS = _red_asm(2, width=2)
_RED16, _RED16_OPS = _red_asm(16)
_PART8, _PART8_OPS = _red_part_asm(8)
_PART16, _PART16_OPS = _red_part_asm(16)


@triton.jit
def _red_add_segments(seg_ptr, vals, E: tl.constexpr, ROWS_FIRST: tl.constexpr):
    """Adds the sum over channels of vals [BD, S, E] to memory at seg_ptr [BD, S, 1] (each lane's first step;
    the same for every channel). tl.atomic_add would first move the values to its own layout (4 per lane:
    shuffles for every state); inline PTX adds them where they are. GPUs only (E = 8 or 16, 16-byte aligned
    addresses).

    ROWS_FIRST: sum over the channels (the warp's lane rows) with tl.sum, then lane row r adds the r-th 4
    sums of its column: one coalesced vector reduction per lane. Otherwise every channel's lane adds its own
    E values, as mamba_ssm's kernel does (4x the reductions, 4 lanes per address in each instruction)."""
    addr = tl.broadcast_to(seg_ptr.to(tl.int64), vals.shape)
    if ROWS_FIRST:
        rows = tl.broadcast_to(tl.arange(0, vals.shape[0])[:, None, None], vals.shape)
        sums = tl.broadcast_to(tl.sum(vals, axis=0)[None, :, :], vals.shape)
        if E == 16:
            tl.inline_asm_elementwise(_PART16, _PART16_OPS, [addr, rows, sums], dtype=tl.int32, is_pure=False,
                                      pack=16)
        else:
            tl.inline_asm_elementwise(_PART8, _PART8_OPS, [addr, rows, sums], dtype=tl.int32, is_pure=False,
                                      pack=8)
    elif E == 16:
        tl.inline_asm_elementwise(_RED16, _RED16_OPS, [addr, vals], dtype=tl.int32, is_pure=False, pack=16)
    else:
        tl.inline_asm_elementwise(_RED8, _RED8_OPS, [addr, vals], dtype=tl.int32, is_pure=False, pack=8)


@triton.jit
def _red_scatter_rows(row_ptr, first, L, vals, S: tl.constexpr, E: tl.constexpr, LOG_E: tl.constexpr,
                      PTX: tl.constexpr, GROUP: tl.constexpr):
    """Adds the sum over channels of vals [BD, S, E] to the row at row_ptr (a scalar, or one per lane row,
    [BD, 1]), steps first [BD, S] (each lane's first step) onwards, steps past L left out, by a reduce-scatter
    over the lane rows. GROUP (a power of two, at most BD): the rows summed together are those that differ
    only in their low log2(GROUP) bits, each group adding to its own row_ptr (the lane kernels' state split).
    At level i a lane keeps half of its values, sends the other half to the lane of row r ^ 2^i and adds
    what it receives: E/2 + E/4 + ... values move, where _red_add_segments' tl.sum moves E per level and its
    predicated adds compile to branches. Afterwards each lane holds the sums of E / 2^levels consecutive
    steps at its own offset and adds them with one vector reduction (PTX: GPUs, whole chunks), or
    tl.atomic_add. In the local sm_90 compile the state loop goes from 533 to 495 instructions, but tl.gather
    along the rows takes more shuffles than the values it moves (92 against 100 in all). The default at
    128-step chunks: it timed faster there on the H200 (kernels/NOTES.md, v1.7)."""
    BD: tl.constexpr = vals.shape[0]
    LOG_BD: tl.constexpr = (0 if GROUP == 1 else 1 if GROUP == 2 else 2 if GROUP == 4 else 3 if GROUP == 8
                            else 4 if GROUP == 16 else 5)
    LEVELS: tl.constexpr = LOG_BD if LOG_BD < LOG_E else LOG_E
    xs = _unpack(vals, BD, S, E, LOG_E)
    rows = tl.broadcast_to(tl.arange(0, BD)[:, None], [BD, S])
    offset = tl.zeros([BD, S], tl.int32)
    for i in tl.static_range(LEVELS):  # level i halves E / 2^i values (E >> (i + 1) kept)
        upper = ((rows >> i) & 1) == 1  # this lane keeps the upper half
        partner = rows ^ (1 << i)
        kept = ()
        for k in tl.static_range(E >> (i + 1)):
            keep = tl.where(upper, xs[k + (E >> (i + 1))], xs[k])
            send = tl.where(upper, xs[k], xs[k + (E >> (i + 1))])
            kept = kept + (keep + tl.gather(send, partner, axis=0),)
        offset += tl.where(upper, E >> (i + 1), 0)
        xs = kept
    M: tl.constexpr = len(xs)
    step = first + offset
    ptr = row_ptr + step
    if PTX and M == 4:
        v = _pack(xs, BD, S, 4, 2)  # [BD, S, 4], in each lane's registers
        addr = tl.broadcast_to(ptr.to(tl.int64)[:, :, None], [BD, S, 4])
        tl.inline_asm_elementwise(_RED4, _RED4_OPS, [addr, v], dtype=tl.int32, is_pure=False, pack=4)
    elif PTX and M == 2:
        v = _pack(xs, BD, S, 2, 1)
        addr = tl.broadcast_to(ptr.to(tl.int64)[:, :, None], [BD, S, 2])
        tl.inline_asm_elementwise(_RED2, _RED2_OPS, [addr, v], dtype=tl.int32, is_pure=False, pack=2)
    else:
        for j in tl.static_range(M):
            # + -0.0: the same value (folded on GPUs); under TRITON_INTERPRET a contiguous copy, where
            # atomic_add misreads the strided view that tl.split gives (Triton 3.8)
            tl.atomic_add(ptr + j, xs[j] + -0.0, mask=step + j < L, sem="relaxed")


@triton.jit
def _layout_hint(x, ptr, offsets, mask, PTX: tl.constexpr):
    # x, with an int8 load at x's offsets as a second operand: see the module docstring. On NVIDIA GPUs an
    # inline PTX copy of x that names the hint without reading it (ptxas then drops its load); elsewhere
    # x + 0.0 * hint, which costs a conversion, a sign select and an add per element (-0.0 is no identity)
    hint = tl.load(ptr.to(tl.pointer_type(tl.int8)) + offsets, mask=mask, other=0)
    if PTX:
        return tl.inline_asm_elementwise("mov.b32 $0, $1;", "=r,r,r", [x, hint.to(tl.int32)],
                                         dtype=tl.float32, is_pure=True, pack=1)
    return x + hint.to(tl.float32) * 0.0


@triton.jit
def _prefetch_rows(ptr, first, L, sl):
    """Asks for a state's B or C row in L1 a state ahead of its load, holding no registers meanwhile: one
    prefetch per lane, at its segment's first step (first [BD, S], kept below L), which with E = 16 covers
    the lane's 32 or 64 bytes. NVIDIA GPUs only (inline PTX): elsewhere PREFETCH=2 loads each state's rows in
    its own iteration, and 3 is 1."""
    _prefetch_at(ptr + tl.minimum(first, L - 1) * sl)


@triton.jit
def _prefetch_at(ptrs):
    # one L1 prefetch per element of ptrs, which must be addresses inside the tensor (inline PTX)
    tl.inline_asm_elementwise("prefetch.global.L1 [$1];", "=r,l", [ptrs.to(tl.int64)], dtype=tl.int32,
                              is_pure=False, pack=1)


@triton.jit
def _f32(x, PTX: tl.constexpr):
    """x (a B or C row) in fp32. bf16 on NVIDIA GPUs by _bf16_pairs: Triton's own conversion takes 1.5
    instructions per value, which the state loops pay for every element and state."""
    if PTX and x.dtype == tl.bfloat16:
        return _bf16_pairs(x)
    else:
        return x.to(tl.float32)


@triton.jit
def _bf16_pairs(x):
    # two bf16 from their packed register: a shift for the first, a mask for the second (Triton moves the
    # second to the low half first, PRMT, then shifts it like the first)
    return tl.inline_asm_elementwise("{ shl.b32 $0, $2, 16; and.b32 $1, $2, 0xffff0000; }", "=r,=r,r", [x],
                                     dtype=tl.float32, is_pure=True, pack=2)


@triton.jit
def _load_rows(ptrs, tmask, EVEN_L: tl.constexpr):
    # a B or C row as a [BD, T] tile: no mask when L is a multiple of T (the masked loads' zeroing costs a
    # register move per element and state), else zeros past L (the backward's adjoint runs through them)
    if EVEN_L:
        return tl.load(ptrs)
    else:
        return tl.load(ptrs, mask=tmask[None, :], other=0.0)


@triton.jit
def _last(x, idx, i, AXIS: tl.constexpr):
    # x[..., i, ...] along AXIS; held in registers, the pick folds at compile time (x + -0.0 == x)
    return tl.sum(tl.where(idx == i, x, -0.0), axis=AXIS)


@triton.jit
def _seg_carry(seg_a, seg_b, h0, ss, S: tl.constexpr):
    """Pass 2 for segment totals (seg_a, seg_b) [BD, S] of h -> a h + b: each segment's incoming state
    (h0 for the first) and the chunk's final state [BD]."""
    seg_b = tl.where(ss == 0, seg_b + seg_a * h0[:, None], seg_b)
    _, inc = tl.associative_scan((seg_a, seg_b), axis=1, combine_fn=_pair_combine)
    prev = tl.gather(inc, tl.broadcast_to(tl.maximum(ss - 1, 0), inc.shape), axis=1)
    return tl.where(ss == 0, h0[:, None], prev), _last(inc, ss, S - 1, 1)


@triton.jit
def _seg_forward_state(a, bb, sdt, A2n, h0n, ss, kk, S: tl.constexpr, E: tl.constexpr,
                       FAST_EXP: tl.constexpr):
    """h over a chunk for one state: a, bb [BD, S, E] (h_t = a_t h_{t-1} + bb_t), h0n [BD] the state before
    the chunk. Returns h [BD, S, E] and the chunk's final state [BD]."""
    _, local = tl.associative_scan((a, bb), axis=2, combine_fn=_pair_combine)  # pass 1 (products unused)
    carry, h_last = _seg_carry(_exp2(sdt * A2n[:, None], FAST_EXP), _last(local, kk, E - 1, 2), h0n, ss, S)
    bb = tl.where(kk == 0, bb + a * carry[:, :, None], bb)  # pass 3
    _, h = tl.associative_scan((a, bb), axis=2, combine_fn=_pair_combine)
    return h, h_last


@triton.jit
def _scan_fwd_seg_kernel(
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
    """The forward of ``_scan_fwd_kernel`` (same arguments and outputs, no index table) in three passes over
    [BD, S, E] views. The chunk-start states go through memory as there; B and C rows are loaded as [BD, T]
    tiles (the same address in every channel's lane) so that they arrive in the scan's layout."""
    S: tl.constexpr = T // E
    g, b, G, d, dmask, ch, nn, nm = _program_channels(DG, N, NP, BD, False)
    tt = tl.arange(0, T)
    ss = tl.arange(0, S)[None, :]
    kk = tl.arange(0, E)[None, None, :]
    Dv, bias = _channel_vectors(D_ptr, bias_ptr, ch, dmask, BD, HAS_D, HAS_BIAS)
    state = _state_rows(ckpt_ptr, b, G, DG, ch, n_chunks, nn, nm, N, BD, NP, STORE_CKPT)

    for c in range(n_chunks):
        t = c * T + tt
        tmask = t < L
        m2 = dmask[:, None] & tmask[None, :]
        at_u = b * su_b + g * su_g + d[:, None] * su_d + t[None, :] * su_l
        u = tl.load(u_ptr + at_u, mask=m2, other=0.0).to(tl.float32)
        dt_raw = tl.load(dt_ptr + b * sdt_b + g * sdt_g + d[:, None] * sdt_d + t[None, :] * sdt_l,
                         mask=m2, other=0.0).to(tl.float32)
        dt_raw = _layout_hint(dt_raw, u_ptr, at_u, m2, FAST_EXP)
        _, dt = _delta(dt_raw, bias[:, None], m2, HAS_BIAS, SOFTPLUS)
        dt3 = tl.reshape(dt, [BD, S, E])
        dtu3 = tl.reshape(dt * u, [BD, S, E])
        sdt = tl.sum(dt3, axis=2)  # per segment: its product of a is exp2(A * sdt)
        if HAS_D:
            y = tl.reshape(Dv[:, None] * u, [BD, S, E])
        else:
            y = tl.zeros([BD, S, E], tl.float32)
        s_in, s_out = _state_slots(c, N, STORE_CKPT)
        tl.debug_barrier()  # the previous chunk's final states are stored, its loads done
        B_seg = B_ptr + b * sB_b + g * sB_g  # the rows' starts (_prefetch_rows asks for them per lane)
        C_seg = C_ptr + b * sC_b + g * sC_g
        B_row = B_seg + t[None, :] * sB_l + 0 * d[:, None]
        C_row = C_seg + t[None, :] * sC_l + 0 * d[:, None]
        seg_t2 = c * T + ss * E + 0 * d[:, None]  # each lane's first step, [BD, S]
        A_row = A_ptr + ch * N
        h0_row = state + s_in
        h_out = state + s_out
        h_mask = dmask & (c + 1 < n_chunks)
        B_nx = _load_rows(B_row, tmask, EVEN_L)
        C_nx = _load_rows(C_row, tmask, EVEN_L)
        A2_nx = _load_A2(A_row, dmask)
        h0_nx = tl.load(h0_row, mask=dmask, other=0.0)
        for n in tl.range(0, N, loop_unroll_factor=UNROLL):
            m = tl.minimum(n + 1, N - 1)  # the next state (the last loads its own values again: no mask)
            if PREFETCH == 2 and FAST_EXP:  # the next state's rows into L1 (_prefetch_rows; inline PTX, so
                # NVIDIA GPUs only, as FAST_EXP), then this state's loads
                _prefetch_rows(B_seg + m * sB_n, seg_t2, L, sB_l)
                _prefetch_rows(C_seg + m * sC_n, seg_t2, L, sC_l)
            if PREFETCH == 3 and FAST_EXP:  # the rows two states ahead into L1, as well as 1's loads
                _prefetch_rows(B_seg + tl.minimum(n + 2, N - 1) * sB_n, seg_t2, L, sB_l)
                _prefetch_rows(C_seg + tl.minimum(n + 2, N - 1) * sC_n, seg_t2, L, sC_l)
            if PREFETCH == 1 or PREFETCH == 3:  # one state ahead in registers (as in triton_scan.py)
                Bn, Cn, A2n, h0n = B_nx, C_nx, A2_nx, h0_nx
                B_nx = _load_rows(B_row + m * sB_n, tmask, EVEN_L)
                C_nx = _load_rows(C_row + m * sC_n, tmask, EVEN_L)
                A2_nx = _load_A2(A_row + m, dmask)
                h0_nx = tl.load(h0_row + m, mask=dmask, other=0.0)
            else:
                Bn = _load_rows(B_row + n * sB_n, tmask, EVEN_L)
                Cn = _load_rows(C_row + n * sC_n, tmask, EVEN_L)
                A2n = _load_A2(A_row + n, dmask)
                h0n = tl.load(h0_row + n, mask=dmask, other=0.0)
            a = _exp2(dt3 * A2n[:, None, None], FAST_EXP)
            bb = dtu3 * tl.reshape(_f32(Bn, FAST_EXP), [BD, S, E])
            h, h_last = _seg_forward_state(a, bb, sdt, A2n, h0n, ss, kk, S, E, FAST_EXP)
            y += h * tl.reshape(_f32(Cn, FAST_EXP), [BD, S, E])
            tl.store(h_out + n, h_last, mask=h_mask)
        y = tl.reshape(y, [BD, T])
        if HAS_Z:
            z = tl.load(z_ptr + b * sz_b + g * sz_g + d[:, None] * sz_d + t[None, :] * sz_l,
                        mask=m2, other=0.0).to(tl.float32)
            y = y * z / (1.0 + tl.exp(-z))
        tl.store(out_ptr + b * so_b + g * so_g + d[:, None] * so_d + t[None, :] * so_l,
                 y.to(out_ptr.dtype.element_ty), mask=m2)


@triton.jit
def _unpack(x, BD: tl.constexpr, S: tl.constexpr, E: tl.constexpr, L: tl.constexpr):
    """x [BD, S, E] (E = 2^L, L = 0 .. 4) as a tuple of E tensors [BD, S]: item k is step k of every lane's
    segment. The E axis lives in registers, so the splits only rename registers; the steps can then be walked
    one by one in either direction (tl.associative_scan(reverse=True) costs hundreds of shuffles here, Triton
    3.6). triton_lane.py takes the columns of its [BD, K] tiles through it too."""
    # one return at the end: Triton's compiler also walks the statements after a return inside a
    # compile-time if, where y would be undefined at L = 0 (a lane kernel with N = 1: NameError on the H200)
    if L == 0:
        out = (tl.reshape(x, [BD, S]),)
    else:
        if L == 1:
            y = x
        elif L == 2:
            y = tl.reshape(x, [BD, S, 2, 2])
        elif L == 3:
            y = tl.reshape(x, [BD, S, 2, 2, 2])
        else:
            y = tl.reshape(x, [BD, S, 2, 2, 2, 2])
        parts = (y,)
        for _ in tl.static_range(L):  # each split halves along the lowest remaining bit of k
            halves = ()
            for i in tl.static_range(len(parts)):
                lo, hi = tl.split(parts[i])
                halves = halves + (lo, hi)
            parts = halves
        out = ()
        for k in tl.static_range(E):  # parts[i] holds step k = i with its L bits reversed
            out = out + (parts[(k % 2) * (E // 2) + (k // 2 % 2) * (E // 4)
                               + (k // 4 % 2) * (E // 8) + (k // 8 % 2) * (E // 16)],)
    return out


@triton.jit
def _pack(xs, BD: tl.constexpr, S: tl.constexpr, E: tl.constexpr, L: tl.constexpr):
    """The inverse of _unpack: E tensors [BD, S] back to one [BD, S, E]."""
    if L == 0:  # one return, as in _unpack
        out = tl.reshape(xs[0], [BD, S, 1])
    else:
        parts = ()
        for i in tl.static_range(E):
            parts = parts + (xs[(i % 2) * (E // 2) + (i // 2 % 2) * (E // 4)
                                + (i // 4 % 2) * (E // 8) + (i // 8 % 2) * (E // 16)],)
        for _ in tl.static_range(L):
            joined = ()
            for j in tl.static_range(len(parts) // 2):
                joined = joined + (tl.join(parts[2 * j], parts[2 * j + 1]),)
            parts = joined
        out = tl.reshape(parts[0], [BD, S, E])
    return out


@triton.jit
def _seg_backward_state(a3, bb3, cg3, sdt, sdtn, dtn_first, A2n, h0n, lam_n, ss, S: tl.constexpr,
                        E: tl.constexpr, LOG_E: tl.constexpr, FAST_EXP: tl.constexpr):
    """One state of a chunk in the backward, on [BD, S, E] views: h_t = a_t h_{t-1} + bb_t from the chunk's
    start state h0n, and backwards the adjoint mu_t = a_{t+1} mu_{t+1} + cg_t from lam_n, mu after the chunk.
    Both run in the three passes of the module docstring, with each lane's steps walked one by one (unpacked
    registers), so that the adjoint needs neither a reverse scan nor a second exponential: a_{t+1} is the
    next register, or the next lane's first (a shuffle), or for the chunk's last step exp2(A delta) at the
    next chunk's first step (dtn_first). Returns h, a_t h_{t-1} and mu as [BD, S, E], and mu at the chunk's
    first step [BD]."""
    a = _unpack(a3, a3.shape[0], S, E, LOG_E)
    bb = _unpack(bb3, a3.shape[0], S, E, LOG_E)
    cg = _unpack(cg3, a3.shape[0], S, E, LOG_E)
    # h: each lane's segment from 0, the segments' incoming states, then each lane again from its own
    h = bb[0]
    for k in tl.static_range(1, E):
        h = a[k] * h + bb[k]
    h, _ = _seg_carry(_exp2(sdt * A2n[:, None], FAST_EXP), h, h0n, ss, S)
    hs = ()
    qs = ()  # a_t h_{t-1}
    for k in tl.static_range(E):
        q = a[k] * h
        h = q + bb[k]
        qs = qs + (q,)
        hs = hs + (h,)
    # mu, backwards: a_{t+1} for the lane's last step comes from the next lane (or the next chunk)
    a_last = tl.gather(a[0], tl.broadcast_to(tl.minimum(ss + 1, S - 1), a[0].shape), axis=1)
    a_last = tl.where(ss == S - 1, _exp2(dtn_first * A2n[:, None], FAST_EXP), a_last)
    m = cg[E - 1]
    for i in tl.static_range(1, E):
        m = a[E - i] * m + cg[E - 1 - i]
    seg_a = _exp2(sdtn * A2n[:, None], FAST_EXP)  # the product of a_{t+1} over each segment
    seg_b = tl.where(ss == S - 1, m + seg_a * lam_n[:, None], m)
    _, inc = tl.associative_scan((seg_a, seg_b), axis=1, combine_fn=_pair_combine, reverse=True)
    m = tl.gather(inc, tl.broadcast_to(tl.minimum(ss + 1, S - 1), inc.shape), axis=1)
    m = tl.where(ss == S - 1, lam_n[:, None], m)  # mu after each lane's segment
    m = a_last * m + cg[E - 1]
    mus = (m,)
    for i in tl.static_range(1, E):
        m = a[E - i] * m + cg[E - 1 - i]
        mus = (m,) + mus
    BD: tl.constexpr = a3.shape[0]
    return (_pack(hs, BD, S, E, LOG_E), _pack(qs, BD, S, E, LOG_E), _pack(mus, BD, S, E, LOG_E),
            _last(inc, ss, 0, 1))


@triton.jit
def _scan_bwd_seg_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, z_ptr, dout_ptr, ckpt_ptr, table_ptr,
    du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, lam_ptr,
    L, DG, n_chunks,
    su_b, su_g, su_d, su_l,
    sdt_b, sdt_g, sdt_d, sdt_l,
    sB_b, sB_g, sB_n, sB_l,
    sC_b, sC_g, sC_n, sC_l,
    sz_b, sz_g, sz_d, sz_l,
    so_b, so_g, so_d, so_l,
    sdu_b, sdu_g, sdu_d, sdu_l,
    N: tl.constexpr, NP: tl.constexpr, T: tl.constexpr, BD: tl.constexpr, E: tl.constexpr,
    UNROLL: tl.constexpr, FAST_EXP: tl.constexpr, PREFETCH: tl.constexpr, EVEN_L: tl.constexpr,
    VEC_RED: tl.constexpr, PTX_RED: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr,
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_TABLE: tl.constexpr, BLOCKS_LAST: tl.constexpr,
    RED_SKIP: tl.constexpr,
):
    """The backward of ``_scan_bwd_kernel`` (same arguments and outputs, no index table) on [BD, S, E] views:
    per chunk (in reverse) and state, h again from the chunk's checkpoint, the adjoint mu backwards from the
    one handed over by the later chunk (lam, two slots by chunk parity), and every gradient
    (``_seg_backward_state``). dB and dC go to memory by ``_red_add_segments`` where VEC_RED (GPUs, whole
    chunks), else summed over the channels by ``tl.atomic_add``."""
    S: tl.constexpr = T // E
    LOG_E: tl.constexpr = 2 if E == 4 else 3 if E == 8 else 4
    tl.static_assert(E == 4 or E == 8 or E == 16)
    g, b, G, d, dmask, ch, nn, nm = _program_channels(DG, N, NP, BD, BLOCKS_LAST)
    tt = tl.arange(0, T)
    ss = tl.arange(0, S)[None, :]
    kk = tl.arange(0, E)[None, None, :]
    Dv, bias = _channel_vectors(D_ptr, bias_ptr, ch, dmask, BD, HAS_D, HAS_BIAS)
    dD = tl.zeros([BD], tl.float32)
    dbias = tl.zeros([BD], tl.float32)
    dB_base = dB_ptr + (b * G + g) * N * L
    dC_base = dC_ptr + (b * G + g) * N * L
    row_n = (b * G * DG + ch) * N  # this program's rows of dA and lam
    slot = (tl.num_programs(1) if BLOCKS_LAST else tl.num_programs(2)) * G * DG * N  # elements per lam slot

    for i in range(n_chunks):
        c = n_chunks - 1 - i
        t = c * T + tt
        tmask = t < L
        m2 = dmask[:, None] & tmask[None, :]
        at_u = b * su_b + g * su_g + d[:, None] * su_d + t[None, :] * su_l
        at_dt = b * sdt_b + g * sdt_g + d[:, None] * sdt_d + t[None, :] * sdt_l
        at_o = b * so_b + g * so_g + d[:, None] * so_d + t[None, :] * so_l
        dt_raw = tl.load(dt_ptr + at_dt, mask=m2, other=0.0).to(tl.float32)
        dt_raw = _layout_hint(dt_raw, u_ptr, at_u, m2, FAST_EXP)
        x, dt = _delta(dt_raw, bias[:, None], m2, HAS_BIAS, SOFTPLUS)
        # delta at the next chunk's first step (0 past L: a = 1 there, and mu = 0 anyway)
        next_mask = dmask & ((c + 1) * T < L)
        dt_next = tl.load(dt_ptr + b * sdt_b + g * sdt_g + d * sdt_d + (c + 1) * T * sdt_l, mask=next_mask,
                          other=0.0).to(tl.float32)
        _, dt_next = _delta(dt_next, bias, next_mask, HAS_BIAS, SOFTPLUS)
        u = tl.load(u_ptr + at_u, mask=m2, other=0.0).to(tl.float32)
        gout = tl.load(dout_ptr + at_o, mask=m2, other=0.0).to(tl.float32)
        if HAS_Z:
            z = tl.load(z_ptr + b * sz_b + g * sz_g + d[:, None] * sz_d + t[None, :] * sz_l,
                        mask=m2, other=0.0).to(tl.float32)
            sig_z = 1.0 / (1.0 + tl.exp(-z))
            gy = gout * z * sig_z  # gradient reaching y (before the gate)
        else:
            gy = gout
        dt3 = tl.reshape(dt, [BD, S, E])
        dtu3 = tl.reshape(dt * u, [BD, S, E])
        gy3 = tl.reshape(gy, [BD, S, E])
        sdt = tl.sum(dt3, axis=2)
        # delta one step ahead at each lane's last step: the next lane's first, or the next chunk's
        dt_first = _last(dt3, kk, 0, 2)
        dtn_first = tl.gather(dt_first, tl.broadcast_to(tl.minimum(ss + 1, S - 1), dt_first.shape), axis=1)
        dtn_first = tl.where(ss == S - 1, dt_next[:, None], dtn_first)
        sdtn = sdt - dt_first + dtn_first  # per lane, the sum of delta one step ahead
        y = tl.zeros([BD, S, E], tl.float32)
        d_dtA = tl.zeros([BD, S, E], tl.float32)  # sum_n A_n mu q, q = a_t h_{t-1} (A in log2 units here)
        d_dtu = tl.zeros([BD, S, E], tl.float32)  # sum_n mu B_n: du = d_dtu * delta + D gy
        tl.debug_barrier()  # the previous chunk's lam stores are visible to every thread, its loads done
        B_seg = B_ptr + b * sB_b + g * sB_g  # the rows' starts (_prefetch_rows asks for them per lane)
        C_seg = C_ptr + b * sC_b + g * sC_g
        B_row = B_seg + t[None, :] * sB_l + 0 * d[:, None]
        C_row = C_seg + t[None, :] * sC_l + 0 * d[:, None]
        A_row = A_ptr + ch * N
        h0_row = ckpt_ptr + ((b * G * DG + ch) * n_chunks + c) * N
        lam_row = lam_ptr + (i + 1) % 2 * slot + row_n
        lam_mask = dmask & (i > 0)
        lam_out = lam_ptr + i % 2 * slot + row_n
        seg_t2 = c * T + ss * E + 0 * d[:, None]  # each lane's first step, [BD, S]
        seg_t = seg_t2[:, :, None]
        B_nx = _load_rows(B_row, tmask, EVEN_L)
        C_nx = _load_rows(C_row, tmask, EVEN_L)
        for n in tl.range(0, N, loop_unroll_factor=UNROLL):
            m = tl.minimum(n + 1, N - 1)
            if PREFETCH == 2 and FAST_EXP:  # inline PTX: NVIDIA GPUs only, as FAST_EXP
                _prefetch_rows(B_seg + m * sB_n, seg_t2, L, sB_l)
                _prefetch_rows(C_seg + m * sC_n, seg_t2, L, sC_l)
            if PREFETCH == 3 and FAST_EXP:  # as in the forward
                _prefetch_rows(B_seg + tl.minimum(n + 2, N - 1) * sB_n, seg_t2, L, sB_l)
                _prefetch_rows(C_seg + tl.minimum(n + 2, N - 1) * sC_n, seg_t2, L, sC_l)
            if PREFETCH == 1 or PREFETCH == 3:
                Bn, Cn = B_nx, C_nx
                B_nx = _load_rows(B_row + m * sB_n, tmask, EVEN_L)
                C_nx = _load_rows(C_row + m * sC_n, tmask, EVEN_L)
            else:
                Bn = _load_rows(B_row + n * sB_n, tmask, EVEN_L)
                Cn = _load_rows(C_row + n * sC_n, tmask, EVEN_L)
            A2n = _load_A2(A_row + n, dmask)
            h0n = tl.load(h0_row + n, mask=dmask, other=0.0)
            lam_n = tl.load(lam_row + n, mask=lam_mask, other=0.0)
            B3 = tl.reshape(_f32(Bn, FAST_EXP), [BD, S, E])
            C3 = tl.reshape(_f32(Cn, FAST_EXP), [BD, S, E])
            a = _exp2(dt3 * A2n[:, None, None], FAST_EXP)
            h, q, mu, mu_first = _seg_backward_state(a, dtu3 * B3, gy3 * C3, sdt, sdtn, dtn_first, A2n, h0n,
                                                     lam_n, ss, S, E, LOG_E, FAST_EXP)
            if HAS_Z:
                y += h * C3
            w = mu * q  # mu_t a_t h_{t-1}
            dA_n = tl.sum(tl.sum(w * dt3, axis=2), axis=1)
            tl.atomic_add(dA_ptr + row_n + n, dA_n, mask=dmask, sem="relaxed")
            if RED_SKIP:  # developer timing only: the gradients of B and C are left at zero
                pass
            elif VEC_RED == 3:  # reduce-scatter over the lane rows (_red_scatter_rows)
                _red_scatter_rows(dB_base + n * L, seg_t2, L, mu * dtu3, S, E, LOG_E, PTX_RED, BD)
                _red_scatter_rows(dC_base + n * L, seg_t2, L, gy3 * h, S, E, LOG_E, PTX_RED, BD)
            elif VEC_RED:  # inline PTX vector reductions (_red_add_segments)
                _red_add_segments(dB_base + n * L + seg_t, mu * dtu3, E, VEC_RED == 2)
                _red_add_segments(dC_base + n * L + seg_t, gy3 * h, E, VEC_RED == 2)
            else:  # summed over the program's channels first
                tl.atomic_add(dB_base + n * L + t, tl.reshape(tl.sum(mu * dtu3, axis=0), [T]), mask=tmask,
                              sem="relaxed")
                tl.atomic_add(dC_base + n * L + t, tl.reshape(tl.sum(gy3 * h, axis=0), [T]), mask=tmask,
                              sem="relaxed")
            tl.store(lam_out + n, mu_first, mask=dmask)
            d_dtA += A2n[:, None, None] * w
            d_dtu += mu * B3

        at_du = b * sdu_b + g * sdu_g + d[:, None] * sdu_d + t[None, :] * sdu_l
        dD, dbias = _input_grads(u, x, dt, gy, tl.reshape(d_dtu, [BD, T]), tl.reshape(d_dtA, [BD, T]), Dv, dD,
                                 dbias, m2, du_ptr + at_du, ddt_ptr + at_du, HAS_D, SOFTPLUS)
        if HAS_Z:
            y = tl.reshape(y, [BD, T])
            if HAS_D:
                y += Dv[:, None] * u
            dz = gout * y * sig_z * (1.0 + z * (1.0 - sig_z))
            tl.store(dz_ptr + at_du, dz.to(dz_ptr.dtype.element_ty), mask=m2)

    row = b * G * DG + ch
    tl.store(dD_ptr + row, dD, mask=dmask)
    tl.store(dbias_ptr + row, dbias, mask=dmask)
