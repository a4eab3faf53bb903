"""Selective scan (Mamba-1 / S6) in Triton: forward and backward, plain or through per-direction index tables.

Which kernel runs (``_scan_forward`` / ``_scan_backward``): without index tables, the lane kernels of
triton_lane.py (one channel per lane) where there are lanes enough (_lane_forward, _lane_backward), else
the segment kernels of triton_seg.py (each lane scans 16 consecutive steps itself); the tiles kernels below
for chunk lengths no segment config fits and the fp32 backward where the lane one does not run
(kernels/NOTES.md, v1.5 to v1.26). Through index tables (the fused directions path) the lane kernels since
v1.28 (table_lanes), the tiles ones with MAMBAAD_SCAN_FUSED_KERNEL=tiles.

Design of the tiles kernels (reference/scan_kernels.md section 4, "Design A"): one program owns BD channels
of one (batch, group) and walks the whole sequence in chunks of T steps. B and C rows are loaded once per
program and reused by its BD channels; dB and dC are summed over those channels before one fp32 atomic per
(batch, group, n, step). The atomics are relaxed (no memory fence: nothing reads the sums before the kernel
ends), and per-state values (A, the chunk-start state) are loaded from memory inside the state loop, one
state ahead, rather than picked from [BD, N] register tiles, whose picks cost a shared-memory round trip and
a barrier each. Within a chunk the recurrence h_t = a_t h_{t-1} + b_t is a pair scan
(``tl.associative_scan``) along T, with the state carried in from the previous chunk folded into the first b
(adding it after the scan as the running product of a times h0 costs more: that product is otherwise compiled
away); the carries between chunks go through memory (one masked store, one barrier per chunk). States stay
fp32 on chip; a = exp2(delta * A * log2(e)) with A scaled as it is loaded (ex2.approx.ftz on GPUs). The
autotuner's space leads with one-warp programs, whose scans and channel sums never leave the warp
(kernels/NOTES.md, v1.2).

* forward: for each chunk and each state n, scan and accumulate y += C_n h. In training it stores the state
  at every chunk start (batch, dim, n_chunks, N) fp32, the only thing backward needs besides the inputs.
* backward: chunks in reverse. Per chunk and n it recomputes h from the stored chunk-start state, runs the
  adjoint scan lambda_t = C_t g_t + a_{t+1} lambda_{t+1} (a_{t+1} recomputed from delta at t+1; the inputs
  put in reverse order by a register gather and scanned forwards, as Triton's reverse scan is costly), and
  accumulates every gradient (section 1.3 of the notes).

Index tables (the fused SS2D path): with ``table`` (G, L), group g is scan direction g, and step t of that
direction reads and writes natural position ``table[g, t]``. u can be shared by all directions (stride 0 over
the group), so the K direction copies of the feature map are never materialised, and the outputs land in
natural order (the lane kernels add them into one map: _shared_map). The plain mamba_ssm layout is the
special case without a table.

Numerics: fp32 inside for fp32 and bf16 inputs. Padding steps (t >= L) are the identity pair (a = 1, b = 0),
so carries stay exact.

Entry points: ``selective_scan_triton`` (autograd, mamba_ssm's ``selective_scan_fn``), and the two calls it
makes, ``selective_scan_fwd`` / ``selective_scan_bwd`` (mamba_ssm's ``selective_scan_cuda.fwd`` / ``.bwd``,
which ``mambaad bench`` times too); ``selective_scan_directions_triton`` for the fused SS2D core. The host
side keeps to few torch ops and launches through ``launch.launch_tuned``: at short sequences the H200's host,
not its GPU, sets the pace (kernels/NOTES.md, v1.8).
"""

from __future__ import annotations

import functools
import inspect
import os

import torch
import triton
import triton.language as tl

from .dispatch import interpreting
from .launch import cdiv, launch_tuned, next_power_of_2
from .triton_directions import permute_steps_triton

LN_2 = tl.constexpr(0.6931471805599453)  # used inside kernels: Triton constexpr globals
LOG2_E = tl.constexpr(1.4426950408889634)
# The kernels' SOFTPLUS constexpr (softplus_mode): none; exact (as accurate as fp32); fast (16-bit deltas:
# _softplus_fast by PTX approximations); the same formula by tl.exp2 / tl.log2 (interpreter, ROCm)
SOFTPLUS_NONE = tl.constexpr(0)
SOFTPLUS_EXACT = tl.constexpr(1)
SOFTPLUS_FAST = tl.constexpr(2)
SOFTPLUS_FAST_PORTABLE = tl.constexpr(3)


# --------------------------------------------------------------------------------------------------------
# device helpers


@triton.jit
def _pair_combine(a_l, b_l, a_r, b_r):
    # (a_l, b_l) comes first in scan order: h = a_r * (a_l * h_in + b_l) + b_r
    return a_l * a_r, a_r * b_l + b_r


@triton.jit
def _mufu(x, ASM: tl.constexpr):
    # one fp32 PTX approximation (a single MUFU instruction) on x, elementwise: NVIDIA GPUs only
    return tl.inline_asm_elementwise(ASM, "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def _exp2(x, FAST: tl.constexpr):
    # ex2.approx.ftz, as mamba_ssm's kernel gets from --use_fast_math: tl.exp2 keeps denormals, which costs a
    # compare and two multiplies around every exp; a decay below 2^-126 flushed to zero changes nothing here
    if FAST:
        return _mufu(x, "ex2.approx.ftz.f32 $0, $1;")
    else:
        return tl.exp2(x)


@triton.jit
def _softplus(x):
    # log1p(exp(x)) without a log1p builtin: Kahan's trick keeps it accurate for tiny exp(x);
    # identity above 20, like mamba_ssm's kernel. About 40 instructions (tl.log is libdevice's polynomial).
    y = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + y
    lp = tl.where(w == 1.0, y, tl.log(w) * (y / (w - 1.0)))
    return tl.where(x > 20.0, x, lp)


@triton.jit
def _log2(x, PTX: tl.constexpr):
    # lg2.approx.ftz (one MUFU op, absolute error about 2^-22 near 1) on NVIDIA GPUs; tl.log2 elsewhere
    if PTX:
        return _mufu(x, "lg2.approx.ftz.f32 $0, $1;")
    else:
        return tl.log2(x)


@triton.jit
def _softplus_fast(x, PTX: tl.constexpr):
    # softplus for 16-bit deltas (SOFTPLUS_FAST), about 15 instructions against _softplus's 40, which the
    # lane forward pays once per element for 16 states (a seventh of its loop's instructions, local sm_90
    # compile). With y = exp(x): log1p(y) by its series to y^6 where y < 1/8 (relative error below y^6 / 7,
    # 5.4e-7), else log2(1 + y) ln 2, whose absolute error of about 2^-22 is below 2e-6 relative there
    # (log2(1 + y) >= 0.17). A bf16 delta itself carries 3.9e-3. Identity above 20, as _softplus.
    y = _exp2(tl.minimum(x, 20.0) * LOG2_E, PTX)
    series = y * (1.0 - y * (0.5 - y * (1.0 / 3.0 - y * (0.25 - y * (0.2 - y * (1.0 / 6.0))))))
    lp = tl.where(y < 0.125, series, _log2(1.0 + y, PTX) * LN_2)
    return tl.where(x > 20.0, x, lp)


@triton.jit
def _rcp(x, PTX: tl.constexpr):
    # rcp.approx.ftz (one MUFU op) on NVIDIA GPUs; a division elsewhere
    if PTX:
        return _mufu(x, "rcp.approx.ftz.f32 $0, $1;")
    else:
        return 1.0 / x


@triton.jit
def _softplus_grad(x, SOFTPLUS: tl.constexpr):
    # softplus'(x) = sigmoid(x); the fast modes by exp2 and one reciprocal
    if SOFTPLUS >= SOFTPLUS_FAST:
        ptx: tl.constexpr = SOFTPLUS == SOFTPLUS_FAST
        return tl.where(x > 20.0, 1.0, _rcp(1.0 + _exp2(-x * LOG2_E, ptx), ptx))
    else:
        return tl.where(x > 20.0, 1.0, 1.0 / (1.0 + tl.exp(-x)))


@triton.jit
def _row(tile, idx, i):
    # tile[i, :] of a tile whose first axis lives in registers: with i a compile-time constant the pick folds
    # to one register (-0.0, not 0.0: x + -0.0 == x, so the additions fold away too)
    return tl.sum(tl.where(idx[:, None] == i, tile, -0.0), axis=0)


@triton.jit
def _positions(table_ptr, g, t, tmask, L, HAS_TABLE: tl.constexpr):
    if HAS_TABLE:
        pos = tl.load(table_ptr + g * L + t, mask=tmask, other=0).to(tl.int64)
    else:
        pos = t.to(tl.int64)
    return pos


@triton.jit
def _delta(x, bias, m2, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    # (delta + bias before softplus, delta); bias comes broadcast to the tile's shape ([:, None] for [BD, T]
    # tiles, [None, :] for [TR, BD] ones). SOFTPLUS: one of the SOFTPLUS_* modes (softplus_mode)
    if HAS_BIAS:
        x = x + bias
    if SOFTPLUS >= SOFTPLUS_FAST:
        dt = _softplus_fast(x, SOFTPLUS == SOFTPLUS_FAST)
    elif SOFTPLUS:
        dt = _softplus(x)
    else:
        dt = x
    return x, tl.where(m2, dt, 0.0)  # zero on padding: a = exp2(0) = 1, b = 0


@triton.jit
def _load_rows(B_row, C_row, n, sB_n, sC_n, tmask):
    # state n's B and C rows over the chunk
    return tl.load(B_row + n * sB_n, mask=tmask, other=0.0), tl.load(C_row + n * sC_n, mask=tmask, other=0.0)


@triton.jit
def _fwd_state(y, dt, dtu, first, Bn, Cn, A2n, h0n, h_out, h_mask, FAST_EXP: tl.constexpr):
    # one state of a chunk: scan h_t = a_t h_{t-1} + delta_t B_t u_t from h0, add C_t h_t to y, store the
    # chunk's final state for the next chunk (h_mask: the last step, if a next chunk exists)
    Bn, Cn = Bn.to(tl.float32), Cn.to(tl.float32)
    a = _exp2(dt * A2n[:, None], FAST_EXP)
    bb = dtu * Bn[None, :]
    _, hs = tl.associative_scan((a, tl.where(first, bb + a * h0n[:, None], bb)), axis=1,
                                combine_fn=_pair_combine)
    tl.store(h_out, hs, mask=h_mask)
    return y + hs * Cn[None, :]


@triton.jit
def _pair_combine2(a_l, b_l, c_l, d_l, a_r, b_r, c_r, d_r):
    # two independent pair scans in one: their shuffles and FMAs interleave, twice the work per latency
    return a_l * a_r, a_r * b_l + b_r, c_l * c_r, c_r * d_l + d_r


@triton.jit
def _bwd_state(d_dtA, d_dtu, y, dt, dtn, dtu, gy, gy_r, first, last, rev, tt, n, Bn, Cn, A2n, h0n, lam_n,
               dA_row, dB_base, dC_base, L, pos, tmask, dmask, lam_out,
               T: tl.constexpr, FLIP: tl.constexpr, HAS_Z: tl.constexpr, FAST_EXP: tl.constexpr):
    # one state of a chunk in the backward: recompute h from h0, run the adjoint lambda from the one carried
    # in (lam_n), add this state's terms to the gradients (the accumulators are returned, dA / dB / dC are
    # added to memory) and store lambda at the chunk's first step for the next chunk
    Bn, Cn = Bn.to(tl.float32), Cn.to(tl.float32)
    a = _exp2(dt * A2n[:, None], FAST_EXP)
    bb = dtu * Bn[None, :]
    bh = tl.where(first, bb + a * h0n[:, None], bb)
    alpha = _exp2(dtn * A2n[:, None], FAST_EXP)  # a_{t+1}; 1 beyond L, where lambda is 0 anyway
    if FLIP:  # the adjoint's inputs in reverse time order, scanned forwards and gathered back
        cg = gy_r * tl.gather(Cn, T - 1 - tt, axis=0)[None, :]
        cg = tl.where(first, cg + alpha * lam_n[:, None], cg)
        if FLIP == 2:  # both scans run forwards over their inputs: one scan call for the two
            _, hs, _, lt_r = tl.associative_scan((a, bh, alpha, cg), axis=1, combine_fn=_pair_combine2)
        else:
            _, hs = tl.associative_scan((a, bh), axis=1, combine_fn=_pair_combine)
            _, lt_r = tl.associative_scan((alpha, cg), axis=1, combine_fn=_pair_combine)
        lt = tl.gather(lt_r, rev, axis=1)
    else:
        _, hs = tl.associative_scan((a, bh), axis=1, combine_fn=_pair_combine)
        cg = gy * Cn[None, :]
        _, lt = tl.associative_scan((alpha, tl.where(last, cg + alpha * lam_n[:, None], cg)), axis=1,
                                    combine_fn=_pair_combine, reverse=True)
    if HAS_Z:
        y += hs * Cn[None, :]
    w = lt * (hs - bb)  # lambda_t a_t h_{t-1}
    # dA partials go straight to memory (each address is this program's alone): accumulating them in a
    # [BD, NP] tile would cost a layout conversion per state
    tl.atomic_add(dA_row + n, tl.sum(w * dt, axis=1), mask=dmask, sem="relaxed")
    tl.atomic_add(dB_base + n * L + pos, tl.sum(lt * dtu, axis=0), mask=tmask, sem="relaxed")
    tl.atomic_add(dC_base + n * L + pos, tl.sum(gy * hs, axis=0), mask=tmask, sem="relaxed")
    # lambda at the chunk's first step, for the next chunk: one masked store, no cross-lane pick
    tl.store(lam_out + n, lt, mask=dmask[:, None] & first)
    return d_dtA + A2n[:, None] * w, d_dtu + lt * Bn[None, :], y


@triton.jit
def _add_at(ptrs, values, mask, PTX: tl.constexpr):
    """values added at ptrs (fp32, relaxed) where mask: the fused path's maps that every direction adds into.
    On NVIDIA GPUs one predicated `red` per element in the values' own layout: tl.atomic_add moved the tile
    and its 64-bit addresses through shared memory into a layout of its own first (a lane forward block:
    about 40 instructions and two barriers, local sm_90 compile)."""
    if PTX:
        tl.inline_asm_elementwise(
            "{ .reg .pred p; setp.ne.u32 p, $3, 0; @p red.relaxed.gpu.global.add.f32 [$1], $2; }", "=r,l,r,r",
            [ptrs.to(tl.int64), values, mask.to(tl.int32)], dtype=tl.int32, is_pure=False, pack=1)
    else:  # + 0.0: a copy (Triton 3.8's interpreter adds a strided column's buffer as if it were dense)
        tl.atomic_add(ptrs, values + 0.0, mask=mask, sem="relaxed")


@triton.jit
def _add_all(ptrs, values, PTX: tl.constexpr):
    """values added at every one of ptrs (fp32, relaxed): _add_at where no element is masked. On NVIDIA GPUs
    an unpredicated `red`: ptxas wrapped each predicated one in a branch of its own (BSSY / BRA / BSYNC, and
    the warp's branch_resolving stalls: 6 % of the fused forward's samples at 64 x 64; kernels/NOTES.md
    v1.32)."""
    if PTX:
        tl.inline_asm_elementwise("red.relaxed.gpu.global.add.f32 [$1], $2;", "=r,l,r",
                                  [ptrs.to(tl.int64), values], dtype=tl.int32, is_pure=False, pack=1)
    else:  # + 0.0: as in _add_at
        tl.atomic_add(ptrs, values + 0.0, sem="relaxed")


@triton.jit
def _input_grad_terms(u, x, dt, gy, d_dtu, d_dtA, Dv, dD, dbias, m2, HAS_D: tl.constexpr,
                      SOFTPLUS: tl.constexpr):
    # a chunk's du = delta sum_n lambda B_n + D gy and d(delta) = u sum_n lambda B_n + ln 2 sum_n A_n lambda q
    # (through softplus', zero off m2), and the per-channel dD and dbias partials with this chunk's terms
    d_dt = u * d_dtu + LN_2 * d_dtA
    du = d_dtu * dt
    if HAS_D:
        du += Dv[:, None] * gy
        dD += tl.sum(gy * u, axis=1)
    if SOFTPLUS:
        d_dt = d_dt * _softplus_grad(x, SOFTPLUS)
    d_dt = tl.where(m2, d_dt, 0.0)
    return du, d_dt, dD, dbias + tl.sum(d_dt, axis=1)


@triton.jit
def _input_grads(u, x, dt, gy, d_dtu, d_dtA, Dv, dD, dbias, m2, du_out, ddt_out, HAS_D: tl.constexpr,
                 SOFTPLUS: tl.constexpr):
    # _input_grad_terms' du and d(delta) stored (the lane kernels through a table add du by _steps_out
    # instead); the per-channel dD and dbias partials returned with this chunk's terms
    du, d_dt, dD, dbias = _input_grad_terms(u, x, dt, gy, d_dtu, d_dtA, Dv, dD, dbias, m2, HAS_D, SOFTPLUS)
    tl.store(du_out, du.to(du_out.dtype.element_ty), mask=m2)
    tl.store(ddt_out, d_dt.to(ddt_out.dtype.element_ty), mask=m2)
    return dD, dbias


@triton.jit
def _state_rows(ckpt_ptr, b, G, DG, ch, n_chunks, nn, nm, N: tl.constexpr, BD: tl.constexpr,
                NP: tl.constexpr, STORE_CKPT: tl.constexpr):
    # the forward's chunk-start states, this program's rows: in training the checkpoints (rows of n_chunks
    # slots, slot c at c * N, which the backward reads), at inference two slots by chunk parity. Slot 0 is
    # set to h = 0 here.
    if STORE_CKPT:
        state = ckpt_ptr + (b * G * DG + ch) * n_chunks * N
    else:
        state = ckpt_ptr + (b * G * DG + ch) * 2 * N
    tl.store(state[:, None] + nn[None, :], tl.zeros([BD, NP], tl.float32), mask=nm)
    return state


@triton.jit
def _state_slots(c, N: tl.constexpr, STORE_CKPT: tl.constexpr):
    # offsets in a _state_rows row of chunk c's start state and of the next chunk's
    if STORE_CKPT:
        return c * N, (c + 1) * N
    else:
        return c % 2 * N, (c + 1) % 2 * N


@triton.jit
def _program_channels(DG, N: tl.constexpr, NP: tl.constexpr, BD: tl.constexpr, BLOCKS_LAST: tl.constexpr):
    # program (channel block, group, batch): its channels within the group (d), overall (ch), the states.
    # BLOCKS_LAST: the grid is (group, batch, channel block) instead, so that the programs resident at once
    # belong to many (batch, group) pairs rather than to few (fewer of them add into the same dB / dC rows)
    if BLOCKS_LAST:
        g, b, block, G = tl.program_id(0), tl.program_id(1), tl.program_id(2), tl.num_programs(0)
    else:
        g, b, block, G = tl.program_id(1), tl.program_id(2), tl.program_id(0), tl.num_programs(1)
    g = g.to(tl.int64)
    b = b.to(tl.int64)
    d = block * BD + tl.arange(0, BD)
    dmask = d < DG
    nn = tl.arange(0, NP)  # N padded to a power of two
    nm = dmask[:, None] & (nn[None, :] < N)
    return g, b, G, d, dmask, g * DG + d, nn, nm


@triton.jit
def _load_A2(ptr, mask):
    # A of the program's channels (one state) in log2 units: exp(A x) = exp2(A2 x). Scaled here, not on the
    # host: a torch op fewer per call, where small scans are bound by the host's launches (kernels/NOTES.md)
    return tl.load(ptr, mask=mask, other=0.0).to(tl.float32) * 1.4426950408889634


@triton.jit
def _channel_vectors(D_ptr, bias_ptr, ch, dmask, BD: tl.constexpr, HAS_D: tl.constexpr,
                     HAS_BIAS: tl.constexpr):
    # D and delta_bias of the program's channels (zeros when absent)
    if HAS_D:
        Dv = tl.load(D_ptr + ch, mask=dmask, other=0.0).to(tl.float32)
    else:
        Dv = tl.zeros([BD], tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + ch, mask=dmask, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros([BD], tl.float32)
    return Dv, bias


# --------------------------------------------------------------------------------------------------------
# kernels


@triton.jit
def _scan_fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, z_ptr, out_ptr, ckpt_ptr, table_ptr,
    L, DG, n_chunks,
    su_b, su_g, su_d, su_l,
    sdt_b, sdt_g, sdt_d, sdt_l,
    sB_b, sB_g, sB_n, sB_l,
    sC_b, sC_g, sC_n, sC_l,
    sz_b, sz_g, sz_d, sz_l,
    so_b, so_g, so_d, so_l,
    N: tl.constexpr, NP: tl.constexpr, T: tl.constexpr, BD: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    STORE_CKPT: tl.constexpr, HAS_TABLE: tl.constexpr, UNROLL: tl.constexpr, FAST_EXP: tl.constexpr,
    PREFETCH: tl.constexpr,
):
    """The state at each chunk start goes through memory: ckpt (rows, n_chunks, N) in training, which the
    backward reads, or a (rows, 2, N) scratch slot by chunk parity at inference. The thread that holds a
    chunk's last step stores its final states and, after one barrier per chunk, every thread loads its own:
    carrying them in a [BD, N] register tile instead costs two cross-lane reductions per state and chunk.

    PREFETCH: the state loop's loads (B_n and C_n rows, A_n, the chunk-start state) ahead of their use. With
    few warps per SM (one-warp programs, register-bound) nothing else hides an L2 load: Nsight Compute on the
    H200 found half of this kernel's stall samples (a third of the backward's) on instructions waiting for
    these loads when each state loaded its own (PREFETCH=0). 1 loads the next state's B and C rows one state
    ahead, 2 its A_n and chunk-start state too (the forward's best; the backward's is 1). Two states per
    iteration with alternating buffers, which avoids the copy of the loaded values at the loop's end (where
    Nsight Compute still finds waits), timed slower on the H200 in both kernels (kernels/NOTES.md)."""
    g, b, G, d, dmask, ch, nn, nm = _program_channels(DG, N, NP, BD, False)
    tt = tl.arange(0, T)
    Dv, bias = _channel_vectors(D_ptr, bias_ptr, ch, dmask, BD, HAS_D, HAS_BIAS)
    first = tt[None, :] == 0
    last = tt[None, :] == T - 1
    state = _state_rows(ckpt_ptr, b, G, DG, ch, n_chunks, nn, nm, N, BD, NP, STORE_CKPT)

    for c in range(n_chunks):
        t = c * T + tt
        tmask = t < L
        m2 = dmask[:, None] & tmask[None, :]
        pos = _positions(table_ptr, g, t, tmask, L, HAS_TABLE)
        u = tl.load(u_ptr + b * su_b + g * su_g + d[:, None] * su_d + pos[None, :] * su_l,
                    mask=m2, other=0.0).to(tl.float32)
        dt_raw = tl.load(dt_ptr + b * sdt_b + g * sdt_g + d[:, None] * sdt_d + pos[None, :] * sdt_l,
                         mask=m2, other=0.0).to(tl.float32)
        _, dt = _delta(dt_raw, bias[:, None], m2, HAS_BIAS, SOFTPLUS)
        dtu = dt * u
        if HAS_D:
            y = Dv[:, None] * u
        else:
            y = tl.zeros([BD, T], tl.float32)
        s_in, s_out = _state_slots(c, N, STORE_CKPT)
        tl.debug_barrier()  # the previous chunk's final states are stored, its loads done
        B_row = B_ptr + b * sB_b + g * sB_g + pos * sB_l
        C_row = C_ptr + b * sC_b + g * sC_g + pos * sC_l
        # A_n and the chunk-start state from memory (L1), not picked from a register tile
        A_row = A_ptr + ch * N
        h0_row = state + s_in
        h_out = state[:, None] + s_out + 0 * tt[None, :]  # + n: where state n's final value goes
        h_mask = dmask[:, None] & last & (c + 1 < n_chunks)
        # loads one state ahead (see the docstring); the first state's, where PREFETCH leaves them unused, are
        # compiled away
        B_nx, C_nx = _load_rows(B_row, C_row, 0, sB_n, sC_n, tmask)
        A2_nx = _load_A2(A_row, dmask)
        h0_nx = tl.load(h0_row, mask=dmask, other=0.0)
        for n in tl.range(0, N, loop_unroll_factor=UNROLL):
            m = tl.minimum(n + 1, N - 1)  # the next state (the last loads its own values again: no mask)
            if PREFETCH >= 1:  # B and C rows one state ahead
                Bn, Cn = B_nx, C_nx
                B_nx, C_nx = _load_rows(B_row, C_row, m, sB_n, sC_n, tmask)
            else:
                Bn, Cn = _load_rows(B_row, C_row, n, sB_n, sC_n, tmask)
            if PREFETCH >= 2:  # and the per-channel values
                A2n, h0n = A2_nx, h0_nx
                A2_nx = _load_A2(A_row + m, dmask)
                h0_nx = tl.load(h0_row + m, mask=dmask, other=0.0)
            else:
                A2n = _load_A2(A_row + n, dmask)
                h0n = tl.load(h0_row + n, mask=dmask, other=0.0)
            y = _fwd_state(y, dt, dtu, first, Bn, Cn, A2n, h0n, h_out + n, h_mask, FAST_EXP)
        if HAS_Z:
            z = tl.load(z_ptr + b * sz_b + g * sz_g + d[:, None] * sz_d + pos[None, :] * sz_l,
                        mask=m2, other=0.0).to(tl.float32)
            y = y * z / (1.0 + tl.exp(-z))
        tl.store(out_ptr + b * so_b + g * so_g + d[:, None] * so_d + pos[None, :] * so_l,
                 y.to(out_ptr.dtype.element_ty), mask=m2)


@triton.jit(do_not_specialize=["su_d", "sdt_d", "sz_d", "so_d"])
def _scan_fwd_rows_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, z_ptr, out_ptr, ckpt_ptr, table_ptr,
    L, DG, n_chunks,
    su_b, su_g, su_d, su_l,
    sdt_b, sdt_g, sdt_d, sdt_l,
    sB_b, sB_g, sB_n, sB_l,
    sC_b, sC_g, sC_n, sC_l,
    sz_b, sz_g, sz_d, sz_l,
    so_b, so_g, so_d, so_l,
    N: tl.constexpr, NP: tl.constexpr, T: tl.constexpr, BD: tl.constexpr, TR: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    STORE_CKPT: tl.constexpr, HAS_TABLE: tl.constexpr,
):
    """The forward for channels-last data (stride 1 over channels), with time in registers: tiles are
    [TR, BD], one channel per lane, so each lane runs its piece of the recurrence sequentially (one FMA per
    step and state, no shuffles) and one step of BD channels is one coalesced row, whatever the scan order.
    TR steps are processed per iteration (a register budget); checkpoints are still written every T steps,
    the backward's chunk. The channel strides are left unspecialised so that Triton keeps one channel per
    lane instead of packing 4 per lane; the n loop is unrolled so that every row pick folds to a register;
    the next piece's loads are issued before the current piece is computed."""
    g, b, G, d, dmask, ch, nn, nm = _program_channels(DG, N, NP, BD, False)
    tt = tl.arange(0, TR)
    Dv, bias = _channel_vectors(D_ptr, bias_ptr, ch, dmask, BD, HAS_D, HAS_BIAS)
    u_base = u_ptr + b * su_b + g * su_g + d[None, :] * su_d
    dt_base = dt_ptr + b * sdt_b + g * sdt_g + d[None, :] * sdt_d
    h = tl.zeros([NP, BD], tl.float32)  # state carried between pieces, state n in row n
    n_pieces = tl.cdiv(L, TR)
    tmask = tt < L
    pos = _positions(table_ptr, g, tt, tmask, L, HAS_TABLE)
    u_next = tl.load(u_base + pos[:, None] * su_l, mask=tmask[:, None] & dmask[None, :], other=0.0)
    x_next = tl.load(dt_base + pos[:, None] * sdt_l, mask=tmask[:, None] & dmask[None, :], other=0.0)
    for p in range(n_pieces):
        t = p * TR + tt
        tmask = t < L
        m2 = tmask[:, None] & dmask[None, :]
        pos_here = pos
        u = u_next.to(tl.float32)
        x = x_next.to(tl.float32)
        # prefetch the next piece (masked off past L)
        tmask_n = (t + TR) < L
        pos = _positions(table_ptr, g, t + TR, tmask_n, L, HAS_TABLE)
        u_next = tl.load(u_base + pos[:, None] * su_l, mask=tmask_n[:, None] & dmask[None, :], other=0.0)
        x_next = tl.load(dt_base + pos[:, None] * sdt_l, mask=tmask_n[:, None] & dmask[None, :], other=0.0)
        _x, dt = _delta(x, bias[None, :], m2, HAS_BIAS, SOFTPLUS)
        dtu = dt * u
        if HAS_D:
            y = Dv[None, :] * u
        else:
            y = tl.zeros([TR, BD], tl.float32)
        if STORE_CKPT:
            if (p * TR) % T == 0:
                c = (p * TR) // T
                tl.store(ckpt_ptr + ((b * G * DG + ch)[None, :] * n_chunks + c) * N + nn[:, None], h,
                         mask=dmask[None, :] & (nn[:, None] < N))
        for n in tl.static_range(N):
            A2n = _load_A2(A_ptr + ch * N + n, dmask)
            Bn = tl.load(B_ptr + b * sB_b + g * sB_g + n * sB_n + pos_here * sB_l, mask=tmask,
                         other=0.0).to(tl.float32)
            Cn = tl.load(C_ptr + b * sC_b + g * sC_g + n * sC_n + pos_here * sC_l, mask=tmask,
                         other=0.0).to(tl.float32)
            h0 = tl.sum(tl.where(nn[:, None] == n, h, -0.0), axis=0)  # -0.0: x + -0.0 == x folds away
            a = tl.exp2(dt * A2n[None, :])
            bb = dtu * Bn[:, None]
            bb = tl.where(tt[:, None] == 0, bb + a * h0[None, :], bb)
            _, hs = tl.associative_scan((a, bb), axis=0, combine_fn=_pair_combine)
            y += hs * Cn[:, None]
            last = tl.sum(tl.where(tt[:, None] == TR - 1, hs, -0.0), axis=0)
            h = tl.where(nn[:, None] == n, last[None, :], h)
        if HAS_Z:
            z = tl.load(z_ptr + b * sz_b + g * sz_g + d[None, :] * sz_d + pos_here[:, None] * sz_l,
                        mask=m2, other=0.0).to(tl.float32)
            y = y * z / (1.0 + tl.exp(-z))
        tl.store(out_ptr + b * so_b + g * so_g + d[None, :] * so_d + pos_here[:, None] * so_l,
                 y.to(out_ptr.dtype.element_ty), mask=m2)


@triton.jit
def _scan_bwd_kernel(
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
    N: tl.constexpr, NP: tl.constexpr, T: tl.constexpr, BD: tl.constexpr, UNROLL: tl.constexpr,
    FLIP: tl.constexpr, FAST_EXP: tl.constexpr, PREFETCH: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_TABLE: tl.constexpr,
):
    """Gradients. du, ddt and dz share one (batch, G, DG, L) layout (sdu_*); dB/dC are contiguous fp32
    (batch, G, N, L) accumulated with atomics; dA (batch, dim, N), zeroed by the caller and added to
    per chunk, dD and dbias (batch, dim) are per-batch partials. lam (batch, dim, N) is scratch: the adjoint
    at the first step of the chunk just done, per state, handed to the next chunk through memory: two
    slots (batch * dim * N each) by chunk parity, so that one barrier per chunk orders its stores and loads.

    Register pressure matters here (at 255 registers v1.1 spilled and ran 8 warps per SM), so
    the state loop keeps only five [BD, T] tiles alive across it: delta at t and t + 1, delta * u, the
    gradient reaching y, and two accumulators. u and delta's raw value are read again after the loop, and
    the u part of d(delta) is factored out of the state sum: sum_n lambda (B_n u + A_n q) =
    u * sum_n lambda B_n + sum_n A_n lambda q.

    The adjoint runs backwards in time. Triton lowers a reverse scan with lane-reversing butterflies (368
    shuffles per state for a [8, 128] tile at 2 warps, where the forward scan takes 48), so with FLIP its
    inputs are put in reverse time order with a register gather (delta and the gradient once per chunk, C
    per state), scanned forwards, and the result gathered back: the state loop's shuffles go from 171 to 63
    ([2, 128] tile, one warp). FLIP=2 also runs h's scan and the flipped adjoint's in one call (both go
    forwards over their inputs; fewer instructions, the same time at the large shapes). FLIP=0 keeps the
    reverse scan: faster at L = 64 in the v1.2 sweep. PREFETCH: as in the forward (1 timed best here)."""
    g, b, G, d, dmask, ch, nn, nm = _program_channels(DG, N, NP, BD, False)
    tt = tl.arange(0, T)
    Dv, bias = _channel_vectors(D_ptr, bias_ptr, ch, dmask, BD, HAS_D, HAS_BIAS)
    dD = tl.zeros([BD], tl.float32)
    dbias = tl.zeros([BD], tl.float32)
    dB_base = dB_ptr + (b * G + g) * N * L
    dC_base = dC_ptr + (b * G + g) * N * L
    row_n = (b * G * DG + ch) * N  # this program's rows of dA and lam
    slot = tl.num_programs(2) * G * DG * N  # elements per lam slot
    first = tt[None, :] == 0
    last = tt[None, :] == T - 1
    rev = tl.broadcast_to((T - 1 - tt)[None, :], [BD, T])

    for i in range(n_chunks):
        c = n_chunks - 1 - i
        t = c * T + tt
        tmask = t < L
        m2 = dmask[:, None] & tmask[None, :]
        pos = _positions(table_ptr, g, t, tmask, L, HAS_TABLE)
        tmask_n = (t + 1) < L
        m2_n = dmask[:, None] & tmask_n[None, :]
        pos_n = _positions(table_ptr, g, t + 1, tmask_n, L, HAS_TABLE)
        at_u = b * su_b + g * su_g + d[:, None] * su_d + pos[None, :] * su_l
        at_dt = b * sdt_b + g * sdt_g + d[:, None] * sdt_d + pos[None, :] * sdt_l

        dt_raw = tl.load(dt_ptr + at_dt, mask=m2, other=0.0).to(tl.float32)
        _, dt = _delta(dt_raw, bias[:, None], m2, HAS_BIAS, SOFTPLUS)
        dtn_raw = tl.load(dt_ptr + b * sdt_b + g * sdt_g + d[:, None] * sdt_d + pos_n[None, :] * sdt_l,
                          mask=m2_n, other=0.0).to(tl.float32)
        _, dtn = _delta(dtn_raw, bias[:, None], m2_n, HAS_BIAS, SOFTPLUS)
        dtu = dt * tl.load(u_ptr + at_u, mask=m2, other=0.0).to(tl.float32)
        gy = tl.load(dout_ptr + b * so_b + g * so_g + d[:, None] * so_d + pos[None, :] * so_l,
                     mask=m2, other=0.0).to(tl.float32)
        if HAS_Z:
            z = tl.load(z_ptr + b * sz_b + g * sz_g + d[:, None] * sz_d + pos[None, :] * sz_l,
                        mask=m2, other=0.0).to(tl.float32)
            gy = gy * z / (1.0 + tl.exp(-z))  # gradient reaching y (before the gate)
        if FLIP:  # the adjoint's inputs in reverse time order: index j is step c * T + T - 1 - j
            dtn = tl.gather(dtn, rev, axis=1)
            gy_r = tl.gather(gy, rev, axis=1)
        else:
            gy_r = gy  # unused
        y = tl.zeros([BD, T], tl.float32)
        d_dtA = tl.zeros([BD, T], tl.float32)  # sum_n A_n lambda q, q = a_t h_{t-1} (A in log2 units here)
        d_dtu = tl.zeros([BD, T], tl.float32)  # sum_n lambda B_n: du = d_dtu * delta + D gy
        tl.debug_barrier()  # the previous chunk's lam stores are visible to every thread, its loads done
        B_row = B_ptr + b * sB_b + g * sB_g + pos * sB_l
        C_row = C_ptr + b * sC_b + g * sC_g + pos * sC_l
        A_row = A_ptr + ch * N
        h0_row = ckpt_ptr + ((b * G * DG + ch) * n_chunks + c) * N
        lam_row = lam_ptr + (i + 1) % 2 * slot + row_n
        lam_mask = dmask & (i > 0)
        # per-state values straight from memory (L1 hits) rather than picked from [BD, NP] register tiles (a
        # pick from a tile costs a cross-lane reduction, or a trip through shared memory), loaded ahead of
        # their state as in the forward (PREFETCH)
        lam_out = lam_ptr + i % 2 * slot + row_n[:, None] + 0 * tt[None, :]  # + n: lambda at chunk start
        B_nx, C_nx = _load_rows(B_row, C_row, 0, sB_n, sC_n, tmask)
        A2_nx = _load_A2(A_row, dmask)
        h0_nx = tl.load(h0_row, mask=dmask, other=0.0)
        lam_nx = tl.load(lam_row, mask=lam_mask, other=0.0)
        for n in tl.range(0, N, loop_unroll_factor=UNROLL):
            m = tl.minimum(n + 1, N - 1)
            if PREFETCH >= 1:
                Bn, Cn = B_nx, C_nx
                B_nx, C_nx = _load_rows(B_row, C_row, m, sB_n, sC_n, tmask)
            else:
                Bn, Cn = _load_rows(B_row, C_row, n, sB_n, sC_n, tmask)
            if PREFETCH >= 2:
                A2n, h0n, lam_n = A2_nx, h0_nx, lam_nx
                A2_nx = _load_A2(A_row + m, dmask)
                h0_nx = tl.load(h0_row + m, mask=dmask, other=0.0)
                lam_nx = tl.load(lam_row + m, mask=lam_mask, other=0.0)
            else:
                A2n = _load_A2(A_row + n, dmask)
                h0n = tl.load(h0_row + n, mask=dmask, other=0.0)
                lam_n = tl.load(lam_row + n, mask=lam_mask, other=0.0)
            d_dtA, d_dtu, y = _bwd_state(d_dtA, d_dtu, y, dt, dtn, dtu, gy, gy_r, first, last, rev, tt, n,
                                         Bn, Cn, A2n, h0n, lam_n, dA_ptr + row_n, dB_base, dC_base,
                                         L, pos, tmask, dmask, lam_out, T, FLIP, HAS_Z, FAST_EXP)

        # read u and delta again rather than keep them in registers through the state loop
        u = tl.load(u_ptr + at_u, mask=m2, other=0.0).to(tl.float32)
        x, _ = _delta(tl.load(dt_ptr + at_dt, mask=m2, other=0.0).to(tl.float32), bias[:, None], m2, HAS_BIAS,
                      SOFTPLUS)
        at_du = b * sdu_b + g * sdu_g + d[:, None] * sdu_d + pos[None, :] * sdu_l
        dD, dbias = _input_grads(u, x, dt, gy, d_dtu, d_dtA, Dv, dD, dbias, m2, du_ptr + at_du,
                                 ddt_ptr + at_du, HAS_D, SOFTPLUS)
        if HAS_Z:
            if HAS_D:
                y += Dv[:, None] * u
            gout = tl.load(dout_ptr + b * so_b + g * so_g + d[:, None] * so_d + pos[None, :] * so_l,
                           mask=m2, other=0.0).to(tl.float32)
            sig_z = 1.0 / (1.0 + tl.exp(-z))
            dz = gout * y * sig_z * (1.0 + z * (1.0 - sig_z))
            tl.store(dz_ptr + at_du, dz.to(dz_ptr.dtype.element_ty), mask=m2)

    row = b * G * DG + ch
    tl.store(dD_ptr + row, dD, mask=dmask)
    tl.store(dbias_ptr + row, dbias, mask=dmask)


@triton.jit(do_not_specialize=["su_d", "sdt_d", "sz_d", "so_d", "sdu_d"])
def _scan_bwd_rows_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, z_ptr, dout_ptr, ckpt_ptr, table_ptr,
    du_ptr, ddt_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, scratch_ptr,
    L, DG, n_chunks,
    su_b, su_g, su_d, su_l,
    sdt_b, sdt_g, sdt_d, sdt_l,
    sB_b, sB_g, sB_n, sB_l,
    sC_b, sC_g, sC_n, sC_l,
    sz_b, sz_g, sz_d, sz_l,
    so_b, so_g, so_d, so_l,
    sdu_b, sdu_g, sdu_d, sdu_l,
    N: tl.constexpr, NP: tl.constexpr, T: tl.constexpr, BD: tl.constexpr, TR: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_TABLE: tl.constexpr,
):
    """The backward for channels-last data, time in registers like ``_scan_fwd_rows_kernel``: per chunk
    (reverse order) a forward pass over its pieces saves each piece's start state to a per-program
    scratch (batch, dim, T/TR, NP), then the pieces are walked in reverse: recompute h from the saved
    state, adjoint scan in-lane, gradients; dB/dC are summed over the program's channels (across lanes)
    before one fp32 atomic per (b, g, n, t). Same outputs as ``_scan_bwd_kernel``."""
    g, b, G, d, dmask, ch, nn, nm = _program_channels(DG, N, NP, BD, False)
    tt = tl.arange(0, TR)
    Dv, bias = _channel_vectors(D_ptr, bias_ptr, ch, dmask, BD, HAS_D, HAS_BIAS)
    PIECES: tl.constexpr = T // TR
    rows = nn[:, None] < N
    state_mask = rows & dmask[None, :]
    scratch = scratch_ptr + (b * G * DG + ch)[None, :] * (PIECES * NP) + nn[:, None]
    lam = tl.zeros([NP, BD], tl.float32)  # adjoint at the first step after the current piece
    dA = tl.zeros([NP, BD], tl.float32)
    dD = tl.zeros([BD], tl.float32)
    dbias = tl.zeros([BD], tl.float32)
    u_base = u_ptr + b * su_b + g * su_g + d[None, :] * su_d
    dt_base = dt_ptr + b * sdt_b + g * sdt_g + d[None, :] * sdt_d
    for i in range(n_chunks):
        c = n_chunks - 1 - i
        # 1) forward through the chunk from its checkpoint, keeping each piece's start state
        h = tl.load(ckpt_ptr + ((b * G * DG + ch)[None, :] * n_chunks + c) * N + nn[:, None], mask=state_mask,
                    other=0.0)
        tl.debug_barrier()  # the previous chunk's readers are done with the scratch
        for p in range(PIECES):
            tl.store(scratch + p * NP, h, mask=state_mask)
            t = c * T + p * TR + tt
            tmask = t < L
            m2 = tmask[:, None] & dmask[None, :]
            pos = _positions(table_ptr, g, t, tmask, L, HAS_TABLE)
            u = tl.load(u_base + pos[:, None] * su_l, mask=m2, other=0.0).to(tl.float32)
            x = tl.load(dt_base + pos[:, None] * sdt_l, mask=m2, other=0.0).to(tl.float32)
            _x, dt = _delta(x, bias[None, :], m2, HAS_BIAS, SOFTPLUS)
            dtu = dt * u
            for n in tl.static_range(N):
                A2n = _load_A2(A_ptr + ch * N + n, dmask)
                Bn = tl.load(B_ptr + b * sB_b + g * sB_g + n * sB_n + pos * sB_l, mask=tmask, other=0.0)
                a = tl.exp2(dt * A2n[None, :])
                bb = dtu * Bn.to(tl.float32)[:, None]
                bb = tl.where(tt[:, None] == 0, bb + a * _row(h, nn, n)[None, :], bb)
                _, hs = tl.associative_scan((a, bb), axis=0, combine_fn=_pair_combine)
                h = tl.where(nn[:, None] == n, _row(hs, tt, TR - 1)[None, :], h)
        tl.debug_barrier()  # the scratch is written before it is read back
        # 2) the pieces in reverse
        for q in range(PIECES):
            p = PIECES - 1 - q
            t = c * T + p * TR + tt
            tmask = t < L
            m2 = tmask[:, None] & dmask[None, :]
            pos = _positions(table_ptr, g, t, tmask, L, HAS_TABLE)
            tmask_n = (t + 1) < L
            m2_n = tmask_n[:, None] & dmask[None, :]
            pos_n = _positions(table_ptr, g, t + 1, tmask_n, L, HAS_TABLE)
            h = tl.load(scratch + p * NP, mask=state_mask, other=0.0)
            u = tl.load(u_base + pos[:, None] * su_l, mask=m2, other=0.0).to(tl.float32)
            x = tl.load(dt_base + pos[:, None] * sdt_l, mask=m2, other=0.0).to(tl.float32)
            x, dt = _delta(x, bias[None, :], m2, HAS_BIAS, SOFTPLUS)
            xn = tl.load(dt_base + pos_n[:, None] * sdt_l, mask=m2_n, other=0.0).to(tl.float32)
            _xn, dtn = _delta(xn, bias[None, :], m2_n, HAS_BIAS, SOFTPLUS)
            gout = tl.load(dout_ptr + b * so_b + g * so_g + d[None, :] * so_d + pos[:, None] * so_l,
                           mask=m2, other=0.0).to(tl.float32)
            if HAS_Z:
                z = tl.load(z_ptr + b * sz_b + g * sz_g + d[None, :] * sz_d + pos[:, None] * sz_l,
                            mask=m2, other=0.0).to(tl.float32)
                sig_z = 1.0 / (1.0 + tl.exp(-z))
                gy = gout * z * sig_z
            else:
                gy = gout
            dtu = dt * u
            y = tl.zeros([TR, BD], tl.float32)
            d_dt = tl.zeros([TR, BD], tl.float32)
            d_dtu = tl.zeros([TR, BD], tl.float32)
            for n in tl.static_range(N):
                A2n = _load_A2(A_ptr + ch * N + n, dmask)
                Bn = tl.load(B_ptr + b * sB_b + g * sB_g + n * sB_n + pos * sB_l, mask=tmask, other=0.0)
                Cn = tl.load(C_ptr + b * sC_b + g * sC_g + n * sC_n + pos * sC_l, mask=tmask, other=0.0)
                Bn, Cn = Bn.to(tl.float32)[:, None], Cn.to(tl.float32)[:, None]
                a = tl.exp2(dt * A2n[None, :])
                bb = dtu * Bn
                bb0 = tl.where(tt[:, None] == 0, bb + a * _row(h, nn, n)[None, :], bb)
                _, hs = tl.associative_scan((a, bb0), axis=0, combine_fn=_pair_combine)
                if HAS_Z:
                    y += hs * Cn
                alpha = tl.exp2(dtn * A2n[None, :])  # a_{t+1}; 1 beyond L, where lambda is 0 anyway
                cg = gy * Cn
                cg = tl.where(tt[:, None] == TR - 1, cg + alpha * _row(lam, nn, n)[None, :], cg)
                _, lt = tl.associative_scan((alpha, cg), axis=0, combine_fn=_pair_combine, reverse=True)
                qv = hs - bb  # a_t * h_{t-1}
                d_dt += lt * (Bn * u + (A2n * LN_2)[None, :] * qv)
                d_dtu += lt * Bn
                dA = tl.where(nn[:, None] == n, dA + tl.sum(lt * dt * qv, axis=0)[None, :], dA)
                row = (b * G + g) * N + n
                tl.atomic_add(dB_ptr + row * L + pos, tl.sum(lt * dtu, axis=1), mask=tmask, sem="relaxed")
                tl.atomic_add(dC_ptr + row * L + pos, tl.sum(gy * hs, axis=1), mask=tmask, sem="relaxed")
                lam = tl.where(nn[:, None] == n, _row(lt, tt, 0)[None, :], lam)
            du = d_dtu * dt
            if HAS_D:
                y += Dv[None, :] * u
                du += Dv[None, :] * gy
                dD += tl.sum(gy * u, axis=0)
            if SOFTPLUS:
                d_dt = d_dt * _softplus_grad(x, SOFTPLUS)
            d_dt = tl.where(m2, d_dt, 0.0)
            dbias += tl.sum(d_dt, axis=0)
            grad_at = b * sdu_b + g * sdu_g + d[None, :] * sdu_d + pos[:, None] * sdu_l
            tl.store(du_ptr + grad_at, du.to(du_ptr.dtype.element_ty), mask=m2)
            tl.store(ddt_ptr + grad_at, d_dt.to(ddt_ptr.dtype.element_ty), mask=m2)
            if HAS_Z:
                dz = gout * y * sig_z * (1.0 + z * (1.0 - sig_z))
                tl.store(dz_ptr + grad_at, dz.to(dz_ptr.dtype.element_ty), mask=m2)

    out_row = b * G * DG + ch
    tl.store(dA_ptr + out_row[None, :] * N + nn[:, None], dA, mask=state_mask)
    tl.store(dD_ptr + out_row, dD, mask=dmask)
    tl.store(dbias_ptr + out_row, dbias, mask=dmask)


# --------------------------------------------------------------------------------------------------------
# launch: autotuned over channels per program and warps; the chunk length T is fixed per L on the host
# because the forward's checkpoints and the backward must agree on it.

MAX_CHUNK = 128
# (BD, num_warps, num_stages, unroll factor of the state loop, FLIP, PREFETCH). One warp per program made the
# backward ~1.5x faster on the H200 (kernels/NOTES.md, v1.2): its scans and sums over channels never cross
# warps. FLIP (backward only): 0 reverse scan, 1 flipped by register gathers, 2 flipped and scanned in one
# call with h. PREFETCH: the state loop's loads ahead of their state (see _scan_fwd_kernel): 2 in the forward,
# 1 in the backward timed best (kernels/NOTES.md, v1.4). The backward's last config, with the reverse scan,
# timed best at L = 64 (v1.2).
_FWD_CONFIGS = [(2, 1, 3, 1, 1, 2), (2, 1, 3, 2, 1, 2), (4, 1, 3, 1, 1, 2), (8, 2, 3, 1, 1, 2)]
_BWD_CONFIGS = [(2, 1, 3, 1, 1, 1), (2, 1, 3, 1, 2, 1), (2, 1, 3, 2, 2, 1), (4, 1, 3, 1, 2, 1),
                (8, 2, 3, 1, 0, 0)]
_INTERPRETER_BD = 4  # the interpreter loops over every element: keep tiles tiny


def chunk_length(length: int) -> int:
    """Steps per chunk for a sequence of ``length``: one chunk up to MAX_CHUNK, at least 16."""
    return min(_chunk_override() or MAX_CHUNK, max(16, next_power_of_2(length)))


def _chunk_override() -> int | None:
    value = os.environ.get("MAMBAAD_SCAN_CHUNK")  # developer knob for benchmarks/scan_gpu_dev.py
    return int(value) if value else None


def _prune(configs, named_args, **kwargs):
    # no point in more channels per program than a group has (G = dim in the extreme)
    limit = max(4, next_power_of_2(int(named_args["DG"])))
    kept = [c for c in configs if c.kwargs["BD"] <= limit]
    return kept or configs[:1]


def _config_space(backward: bool) -> list[tuple[int, ...]]:
    # developer knob, for both kernels: "16:4,4:1:3:2:0:1"
    # (BD:num_warps[:num_stages[:unroll[:FLIP[:PREFETCH]]]])
    return _configs_from_env("MAMBAAD_SCAN_CONFIGS", _BWD_CONFIGS if backward else _FWD_CONFIGS)


def _configs_from_env(name: str, default: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    # "a:b:c,d:e:f" -> [(a, b, c), (d, e, f)]; the default where the variable is unset or empty
    value = os.environ.get(name)
    if not value:
        return default
    return [tuple(int(x) for x in item.split(":")) for item in value.split(",")]


def register_cap(rest: list[int]) -> int | None:
    """A block config's optional seventh field, MAXNREG: registers per thread (ptxas's .maxnreg), so that
    more warps fit on an SM (65536 registers: 8 one-warp programs at 255, 12 at 168, 16 at 128) at the cost
    of spills to local memory; absent or 0: the compiler's choice. In the lane forward's default space for 4
    lanes a channel (SPLIT4_REGISTERS, since v1.33); elsewhere a developer knob for config sweeps
    (MAMBAAD_SCAN_*_CONFIGS)."""
    return rest[0] if rest and rest[0] else None


def _config(bd: int, warps: int, stages: int = 3, unroll: int = 1, flip: int = 1, prefetch: int = 2,
            backward=False):
    params = {"BD": bd, "UNROLL": unroll, "PREFETCH": prefetch, **({"FLIP": flip} if backward else {})}
    return triton.Config(params, num_warps=warps, num_stages=stages)


# The autotuners' keys. A forward's includes STORE_CKPT: the inference forward (no checkpoints) is another
# kernel than the training one and gets a pick of its own, instead of whichever of the two ran first in the
# process. The batch is in no key (it is not a kernel argument): one pick per shape serves every batch size
KEY = ["DG", "L", "N", "T"]
FWD_KEY = [*KEY, "STORE_CKPT"]


def _autotune(kernel, reset_to_zero=None, backward=False):
    configs = [_config(*item, backward=backward) for item in _config_space(backward)]
    configs = list({str(c): c for c in configs}.values())  # the forward ignores FLIP: drop repeats
    return triton.autotune(
        configs, key=KEY if backward else FWD_KEY, prune_configs_by={"early_config_prune": _prune},
        reset_to_zero=reset_to_zero, **_cache_option(),
    )(kernel)


def _cache_option() -> dict:
    # keep the autotuner's choice on disk with Triton's compile cache, where this Triton can. Developer knob
    # MAMBAAD_SCAN_TUNE_CACHE=0: not for processes that share the GPU (a benchmark's parallel warm-ups, which
    # should fill the compile cache only): their timings, and so their picks, are disturbed by each other
    if os.environ.get("MAMBAAD_SCAN_TUNE_CACHE", "1") == "0":
        return {}
    return {"cache_results": True} if "cache_results" in inspect.signature(triton.autotune).parameters else {}


ROWS_PIECE = 8  # steps per register tile in the channels-last forward: 16 spills registers at N = 16
_ROWS_CONFIGS = [(32, 1), (64, 2), (128, 4)]  # (BD, num_warps): one channel per lane


# The segment forward (triton_seg.py): (BD, num_warps, num_stages, unroll, E steps per lane, PREFETCH).
# Kept for a chunk length T when a lane holds E or 2E elements of a [BD, T] tile (_seg_prune). PREFETCH:
# 0 none, 1 the next state's values in registers, 2 the next state's B / C rows into L1 (prefetch.global.L1:
# no registers held), 3 as 1 plus the rows two states ahead into L1. Two channels per lane with PREFETCH=2
# timed 2-9 % faster than without in fp32, 0-3 % in bf16 (where one channel with PREFETCH=1 stays best at the
# long sequences): H200, kernels/NOTES.md v1.9. PREFETCH=3 took 3 % off bf16's forward at 4096 steps and was
# level or slower elsewhere (v1.10)
_SEG_FWD_CONFIGS = [(8, 1, 3, 1, 16, 2), (4, 1, 3, 1, 16, 1), (4, 1, 3, 1, 16, 3), (4, 1, 3, 1, 16, 0),
                    (16, 1, 3, 1, 16, 0), (32, 1, 3, 1, 16, 0)]
# the backward keeps one channel per lane (two would spill): E steps, BD = 32 * warps * E / T. Two warps per
# program timed 2x slower (their dB / dC sums meet in shared memory), as did every channel adding its own.
# Segments of 8 steps timed slower than 16 at 128-step chunks (BD = 2) and faster at 64 (BD = 4): H200, v1.7.
# PREFETCH=1 spills 64 bytes at 128-step chunks in bf16 (local sm_90 compile) and still timed 6-7 % faster at
# the long sequences, where PREFETCH=2 gained 4-6 % (v1.9); PREFETCH=3 (80 bytes spilled) 1.5 % more in bf16
# at 4096 steps (v1.10)
_SEG_BWD_CONFIGS = [(4, 1, 3, 1, 16, 0), (4, 1, 3, 1, 16, 1), (4, 1, 3, 1, 16, 3), (4, 1, 3, 1, 8, 0),
                    (4, 1, 3, 1, 8, 1), (8, 1, 3, 1, 16, 0), (16, 1, 3, 1, 16, 0), (32, 1, 3, 1, 16, 0)]


# the lane forward (triton_lane.py; by shape by default since v1.12): one channel per lane, so BD = 32 *
# warps; E = 16 steps per block (H200, v1.11: BD = 32 picked at 7 of 8 shapes, PREFETCH 0 and 2 about evenly;
# BD = 64 only at 8192 x 64, which auto leaves to the segment kernel, so it is out: every config is a long
# compile at first use). 8-step blocks: not timed yet; in the local sm_90 compile they drop the 16-step
# body's spill (192 bytes of stack in bf16) at 246 registers, with the same instructions per element and state
# PREFETCH 6 (since v1.29, in 2's place) = 2 and the next block's u and delta asked into L1 (4): forward
# -10 % (bf16) and -15 % (fp32) at 1024 x 4096; 8-step blocks with 4: fp32 -5 % at 2048 x 1024 and 4096 x
# 256, bf16 +2-5 % (the autotuner keeps 0 there). H200, batch 16, kernels/NOTES.md v1.29. 8-step blocks
# with 6, for 32-bit inputs only (_lane_fwd_prune; since v1.32): the fused SS2D core at 64 x 64 in fp32 took
# 4.008 -> 3.894 ms with them (the autotuner's 8:4 pick had waited on its B / C rows), 16:6 4.028 (v1.32)
# At 4 lanes a channel (lane_split) the configs capped at 128 registers (MAXNREG) instead, so that 16
# programs share an SM: in the local sm_90 compile (fp32) 16:6 and 16:0 spill 24 bytes, 8:4 none. The fused
# SS2D core at 64 x 64, fp32, split 4 (H200, batch 16, forward + backward): the uncapped space 3.748 ms,
# 16:6:128 3.656, 8:4:128 3.672 (call 2); with all three the autotuner took 16:0:128, 3.606 (call 3); bf16
# 16:0:128 2.891 against 2.944 uncapped (kernels/NOTES.md v1.33). Since v1.34 every forward with N >= 4 runs
# at 4 lanes (lane_split), so by default only the three capped configs are tried; the others serve 1 or 2
# lanes (N < 4, or the MAMBAAD_SCAN_LANE_SPLIT knob). PREFETCH 8 (v1.35, u / delta a block ahead in
# registers; 10: and 2) is in no default space: at 4 lanes it timed level or slower (fp32 8:8:128 0.719 /
# 16:8:128 0.738 ms against the auto pick's 0.714 at 1024 x 4096, kernels/NOTES.md v1.35)
_LANE_FWD_CONFIGS = [(32, 1, 3, 1, 16, 0), (32, 1, 3, 1, 16, 6), (32, 1, 3, 1, 8, 0), (32, 1, 3, 1, 8, 4),
                     (32, 1, 3, 1, 8, 6), (32, 1, 3, 1, 16, 6, 128), (32, 1, 3, 1, 8, 4, 128),
                     (32, 1, 3, 1, 16, 0, 128)]
FP32_ONLY_LANE_FWD = {(8, 6)}  # (E, PREFETCH) of the lane forward's configs kept for 32-bit inputs alone
SPLIT4_REGISTERS = 128  # the MAXNREG of the configs the lane forward takes at 4 lanes a channel


def _lane_blocks_prune(configs, named_args, **kwargs):
    # both lane kernels: blocks that tile a chunk (E divides T; T = 8 where MAMBAAD_SCAN_LANE_CKPT=8)
    kept = [c for c in configs if kwargs["T"] % c.kwargs["E"] == 0]
    if not kept:
        raise ValueError(f"no lane scan config has blocks that divide {kwargs['T']}-step chunks "
                         "(MAMBAAD_SCAN_LANE_CKPT against MAMBAAD_SCAN_LANE_CONFIGS / LANE_BWD_CONFIGS)")
    return kept


def _lane_fwd_prune(configs, named_args, **kwargs):
    # the lane forward's space: at 4 lanes a channel its SPLIT4_REGISTERS configs, else the others (where the
    # space has both kinds); less FP32_ONLY_LANE_FWD's configs where u is 16-bit: one compile fewer per
    # shape, for a config that was timed for fp32 only
    configs = _lane_blocks_prune(configs, named_args, **kwargs)
    capped = kwargs["SPLIT"] == 4
    configs = [c for c in configs if (c.maxnreg == SPLIT4_REGISTERS) == capped] or configs
    if kwargs.get("PAIRS"):  # two channel sets a lane: not with the steps a block ahead in registers, and
        # at the cap in 8-step blocks (16-step ones spill there: local sm_90 compile, v1.38)
        configs = [c for c in configs if c.kwargs["PREFETCH"] < 8 and (not capped or c.kwargs["E"] == 8)] \
            or configs
    if named_args["u_ptr"].element_size() >= 4:
        return configs
    kept = [c for c in configs if (c.kwargs["E"], c.kwargs["PREFETCH"]) not in FP32_ONLY_LANE_FWD]
    return kept or configs[:1]


# the lane backward (v1.12; by shape for 16-bit inputs by default since v1.13): the same fields, PREFETCH
# 1 = the next state's B / C rows in registers; 4 (since v1.25, in 1's place) = and its A, start state and
# adjoint (H200, bf16, batch 16: backward 2.209 -> 1.968 ms at 1024 x 4096, -1 % at 2048 x 1024 and 4096 x
# 256; kernels/NOTES.md v1.25); 5 (since v1.27, in 4's place) = 4 with the rows carried in their own dtype
# (backward 1.5 / 11.7 / 10.5 / 7.5 % faster at MambaAD's four batch-16 shapes, training +3.4 %: v1.27).
# Its scratch holds T / E block start states per channel, so E is at least LANE_BWD_MIN_E
_LANE_BWD_CONFIGS = [(32, 1, 3, 1, 16, 0), (32, 1, 3, 1, 16, 5), (32, 1, 3, 1, 8, 1)]
LANE_BWD_MIN_E = 8


_LANE_PICKS: dict[tuple, bool] = {}  # per forward key: whether the lane kernel timed faster (this process)
LANE_MIN_WARPS_PER_SM = 6  # auto: lane forward from this many of its warps per SM (H200: 3.9 lost, 7.8 won)
# auto: and sequences of at least this many steps: 64 for 16-bit inputs (bf16 at 8192 x 64, batch 16: forward
# 0.087 -> 0.075 ms, backward 0.330 -> 0.251 ms of GPU time, training +0.6-0.9 %: kernels/NOTES.md v1.26) and,
# since v1.38, for fp32 (128 until then: the forward had lost 46 % at 64 steps in v1.11, before the 4-lane
# split and its step shares; H200, v1.38, 8192 x 64, GPU ms: forward 0.113 -> 0.094 at batch 16 and 0.423 ->
# 0.354 at 64 without pairs (calls 2 and 1), backward 0.363 -> 0.278 and 1.396 -> 1.038 (one run, call 2)).
# Developer knob MAMBAAD_SCAN_LANE_MIN_STEPS: both dtypes
LANE_MIN_STEPS = {4: 64, 2: 64}


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def lane_by_shape(lanes: int, length: int, sm_count: int, element_size: int = 4) -> bool:
    """MAMBAAD_SCAN_LANE=auto's rule: the lane forward where its one warp per 32 (batch, channel) pairs gives
    each SM at least LANE_MIN_WARPS_PER_SM warps, on sequences of at least LANE_MIN_STEPS steps for the
    inputs' element size. On the H200 at batch 16 (132 SMs) that is 2048 x 1024 and 4096 x 256 (7.8 and 15.5
    warps per SM, 15-22 % faster than the segment forward), not 1024 x 4096 (3.9, 43-55 % slower), and 8192 x
    64 (bf16 faster since v1.26; fp32 46 % slower in v1.11, faster since the 4-lane split: v1.38):
    kernels/NOTES.md, v1.11, v1.26 and v1.38."""
    knob = os.environ.get("MAMBAAD_SCAN_LANE_MIN_STEPS")
    min_steps = int(knob) if knob else LANE_MIN_STEPS.get(element_size, LANE_MIN_STEPS[4])
    return lanes / 32 / sm_count >= LANE_MIN_WARPS_PER_SM and length >= min_steps


def _lane_forward(shape: tuple[int, int, int, int], args: tuple, consts: dict) -> bool:
    """Whether the lane forward (kernels/triton_lane.py) runs instead of the segment one. It has one lane
    per (batch, channel), so it wins where there are many of them and loses where there are few (H200,
    kernels/NOTES.md v1.11). Knob MAMBAAD_SCAN_LANE:
    - auto (the default since v1.12): by shape (lane_by_shape, counting lane_split's lanes per channel
      since v1.24), with no extra work at first use, also while a CUDA graph is captured. In the graphed
      bf16 model at batch 64: 441.9 / 1550.0 img/s (training / inference), where v1.11's segment forward
      gave 429.8 / 1408.1 and the lane one forced 439.6 / 1521.4 (H200, kernels/NOTES.md v1.12);
    - 0: never (v1.10's segment forward); 1: always;
    - time: both kernels run, each autotuned, on the first call of each shape and kind (training or inference
      forward, dtypes), and the faster is kept for the process (slow at first use: a model benchmark on a
      fresh H200 did not finish its first setting within 230 s).
    The interpreter: 1 only."""
    mode = os.environ.get("MAMBAAD_SCAN_LANE", "auto")
    if mode in ("0", "1"):
        return mode == "1"
    if interpreting():
        return False
    if mode == "auto":  # by shape alone, so also while a CUDA graph is captured
        index = args[0].device.index or 0
        size = args[0].element_size()
        return _lanes_enough(shape, index, lane_split(shape, consts["N"], index, False, size), size)
    key = (shape, consts["STORE_CKPT"], consts["T"], args[0].dtype, args[1].dtype, args[3].dtype,
           *(consts[f] for f in ("HAS_D", "HAS_Z", "HAS_BIAS", "SOFTPLUS", "EVEN_L")))
    if torch.cuda.is_current_stream_capturing():  # no timing inside a capture: the eager warm-up's pick
        return _LANE_PICKS.get(key, False)
    if key not in _LANE_PICKS:
        from triton.testing import do_bench

        ms = {}
        for index in (4, 6):  # the segment and lane kernels, autotuned by their first launch
            _launch(index, shape, args, consts)
            ms[index] = do_bench(lambda index=index: _launch(index, shape, args, consts), warmup=5, rep=20)
        _LANE_PICKS[key] = ms[6] < ms[4]
    return _LANE_PICKS[key]


def _lane_backward(shape: tuple[int, int, int, int], gated: bool, device_index: int,
                   element_size: int, n_state: int) -> bool:
    """Whether the lane backward (kernels/triton_lane.py, v1.12) runs instead of the segment one (or the tiles
    one, fp32), knob MAMBAAD_SCAN_LANE_BWD:
    - auto (the default since v1.13): 16-bit inputs, by shape as the forward's auto (lane_by_shape, with
      lane_split's lanes per channel since v1.24: 1024 x 4096 at batch 16 runs here over 2 lanes). In the
      graphed bf16 model it gave training 441.9 -> 482.2 img/s at batch 64 and 373.4 -> 390.0 at batch 16,
      for 6.4 and 1.1 GiB more peak memory (the 16-step checkpoints: _lane_checkpoint_steps); forced at
      batch 16 it lost (336.9), its one lane per (batch, channel) being too few at the longest sequence
      (H200, kernels/NOTES.md v1.13). fp32 too since v1.26 (from 128 steps, LANE_MIN_STEPS), where it beat
      the tiles backward by 20-27 % at batch 16 (3.02 -> 2.43 ms at 1024 x 4096, 1.45 -> 1.05 at 2048 x 1024,
      0.74 -> 0.54 at 4096 x 256; kernels/NOTES.md v1.26);
    - 0: never (v1.12's default; fp32's until v1.25); 1: always.
    Never with the gate z (not implemented there)."""
    mode = os.environ.get("MAMBAAD_SCAN_LANE_BWD", "auto")
    if gated or mode == "0":
        return False
    if mode == "1":
        return True
    if interpreting():
        return False
    split = lane_split(shape, n_state, device_index, True, element_size)
    return _lanes_enough(shape, device_index, split, element_size)


def _lanes_enough(shape: tuple[int, int, int, int], device_index: int, split: int, element_size: int) -> bool:
    # both lane kernels' auto: lane_by_shape for a (channels per group, groups, batch, steps) scan, whose
    # channels each take `split` lanes
    dg, groups, batch, length = shape
    return lane_by_shape(dg * groups * batch * split, length, _sm_count(device_index), element_size)


LANE_SPLITS = (1, 2, 4)
SHORT_WAVE_WARPS_PER_SM = 8  # one_short_wave: one wave of 255-register programs (65536 registers an SM)


def one_short_wave(shape: tuple[int, int, int, int], device_index: int) -> bool:
    """Whether the lane forward over 2 lanes a channel runs at most SHORT_WAVE_WARPS_PER_SM one-warp programs
    an SM: one wave, with registers to spare (MambaAD's 64 x 64 maps at batch 16: 7.8 on the H200)."""
    dg, groups, batch, _ = shape
    return dg * groups * batch * 2 / 32 / _sm_count(device_index) <= SHORT_WAVE_WARPS_PER_SM


def lane_split(shape: tuple[int, int, int, int], n_state: int, device_index: int, backward: bool,
               element_size: int = 2) -> int:
    """How many lanes share a channel's states in the lane forward (knob MAMBAAD_SCAN_LANE_SPLIT) or
    backward (MAMBAAD_SCAN_LANE_BWD_SPLIT): 1, 2 or 4 (each lane then holds N / split states; N a power of
    two, else 1), or auto (both defaults since v1.24; 1 in the interpreter). Splitting trades the lane
    kernels' per-lane parallelism (independent states) for more warps: one lane per (batch, channel) leaves
    the H200 3.9 warps per SM at 1024 x 4096 and batch 16, 7.8 over two lanes. Measured there in bf16
    (scan_ab.py, kernels/NOTES.md v1.24), ms, forward / backward:
    - 1024 x 4096: segment kernels 0.817 / 2.405, lanes split in 2 0.705 / 2.245, in 4 0.782 / 2.618;
    - 2048 x 1024: one lane per channel 0.333 / 1.013, split in 2 0.311 / 1.107, in 4 0.384 / 1.293.
    So auto split the forward in 2 wherever N allowed (until v1.34), and the backward only as far as
    lane_by_shape's warps per SM need (2 at 1024 x 4096 and batch 16, else 1). The same for fp32 inputs
    since v1.26 (until then one lane per channel, untimed); there the training forward and backward took
    4.11 -> 3.65 ms of GPU time at 1024 x 4096, 1.89 -> 1.58 at 2048 x 1024 and 0.95 -> 0.80 at 4096 x 256
    (kernels/NOTES.md).
    Since v1.34 the forward splits in 4 wherever N >= 4 (else as far as N allows), with _LANE_FWD_CONFIGS'
    128-register configs (_lane_fwd_prune: 16 programs an SM instead of 8 at 255 registers) and its rows
    each taking a share of a block's steps (lane_shares). v1.33 had split the fp32 forward through a table
    in 4 at one short wave only (fused core at 64 x 64: 3.938 -> 3.606 ms); without step shares 4 lanes
    lost everywhere else (plain fp32 forward at 1024 x 4096 1.005 -> 1.103 ms), with them they won at every
    shape timed (H200, batch 16, GPU ms, kernels/NOTES.md v1.34): plain forward fp32 1.002 / 0.473 / 0.234
    -> 0.748 / 0.370 / 0.189 at 1024 x 4096 / 2048 x 1024 / 4096 x 256, bf16 0.604 / 0.283 / 0.144 -> 0.555
    / 0.277 / 0.140; the fused core's forward + backward fp32 3.553 / 1.446 / 0.723 / 0.376 -> 3.196 / 1.352
    / 0.683 / 0.359 (64 / 32 / 16 / 8), bf16 2.738 / 1.239 / 0.614 / 0.323 -> 2.622 / 1.185 / 0.601 / 0.317.
    """
    knob = "MAMBAAD_SCAN_LANE_BWD_SPLIT" if backward else "MAMBAAD_SCAN_LANE_SPLIT"
    mode = os.environ.get(knob, "auto")
    if mode != "auto" and (not mode.isdigit() or int(mode) not in LANE_SPLITS):
        raise ValueError(f"{knob} must be auto or one of {', '.join(map(str, LANE_SPLITS))}, got {mode!r}")
    if n_state & (n_state - 1):  # the rows of a channel hold equal powers of two of its states
        return 1
    if mode != "auto":
        return min(int(mode), n_state)
    if interpreting():
        return 1
    if not backward:
        return 4 if n_state >= 4 else min(2, n_state)
    fits = [s for s in LANE_SPLITS if s <= n_state and _lanes_enough(shape, device_index, s, element_size)]
    return fits[0] if fits else 1


def lane_shares(split: int, shape: tuple[int, int, int, int], device_index: int,
                backward: bool = False) -> bool:
    """The lane forward's SHARES where a channel's states are split over lanes (split > 1): each of its rows
    loads u and delta and computes softplus for its own share of a block's steps, the rows exchanging delta
    and delta u by shuffles, and sums y into those shares by a reduce-scatter, instead of every row loading
    and computing all of a block's steps and summing all of y (local sm_90 compile, fp32 through a table at 4
    lanes: 1032 -> 654 instructions a 16-step block; bf16 at 2 lanes 1926 -> 1572). Knob
    MAMBAAD_SCAN_LANE_SHARES: auto (default: at 4 lanes, lane_split's default since v1.34; at 2 where the
    forward runs one short wave, one_short_wave, not in the interpreter), 0 or 1. H200, batch 16
    (kernels/NOTES.md v1.34): at v1.33's splits, the fused SS2D core at 64 x 64 (4 lanes in fp32) took 3.604
    -> 3.261 ms in fp32 (its forward kernel 1.087 -> 0.730) and 2.763 -> 2.675 in bf16 (2 lanes), the plain
    forward at 1024 x 4096 (2 lanes) 1.015 -> 0.992 (fp32) and 0.606 -> 0.574 (bf16); at 2 lanes and more
    warps it lost up to 6 %; 4 lanes with shares won at every shape timed (lane_split). The lane backward's
    pass 2 takes the same shares (knob MAMBAAD_SCAN_LANE_BWD_SHARES, auto / 0 / 1): auto since v1.35 wherever
    it splits a channel's states (lane_split: 1024 x 4096 at batch 16), not in the interpreter. With each
    row's du and d(delta) written by one vector store (column by column they had been scalar 16-bit stores,
    v1.34's +11 %), the plain backward at 1024 x 4096 took 2.468 -> 2.244 ms (fp32) and 1.936 -> 1.797 (bf16),
    the graphed bf16 model at batch 16 trained at 528.9 img/s against 521.4 without them; through a table
    the fused core at 64 x 64 took 3.194 -> 3.049 (fp32) and 2.615 -> 2.482 (bf16) in v1.34 (H200,
    kernels/NOTES.md v1.34 and v1.35)."""
    mode = _choice("MAMBAAD_SCAN_LANE_BWD_SHARES" if backward else "MAMBAAD_SCAN_LANE_SHARES", "auto",
                   ("auto", "0", "1"))
    if split == 1 or mode == "0":
        return False
    if backward:  # wherever the backward splits a channel's states (not in the interpreter: both ways tested)
        return mode == "1" or not interpreting()
    return mode == "1" or split >= 4 or (not interpreting() and one_short_wave(shape, device_index))


# lane_pairs' auto: PAIRS where the halved grid still gives each SM this many warps, by u's element size
# (H200, v1.38, forward GPU ms at the 128-register cap: fp32 lost 14 % at 7.8 warps and gained 11-14 % from
# 15.5; bf16 gained 1-3 % from 31 but lost 1.5 % at batch 16, 8192 x 64: lane_pairs)
PAIRS_MIN_WARPS_PER_SM = {4: 12, 2: 24}


def lane_pairs(split: int, shape: tuple[int, int, int, int], device_index: int, element_size: int) -> bool:
    """The lane forward's PAIRS (knob MAMBAAD_SCAN_LANE_PAIRS: auto, the default since v1.38, 0 or 1;
    v1.35): each lane serves two channels of its (batch, group), so that every B and C value it loads feeds
    two channels' states: half the L1 data-pipe wavefronts an element and state that B and C cost
    (kernels/NOTES.md v1.37 item 2), for half the programs. Only where a channel's states are split over
    lanes (split > 1), and not with PREFETCH 8; at 4 lanes in the 128-register configs of 8-step blocks
    (_lane_fwd_prune: 16-step ones spill there in the local sm_90 compile). auto: at 4 lanes, where the
    halved grid keeps PAIRS_MIN_WARPS_PER_SM warps an SM, with or without an index table.
    H200, v1.38 against v1.37's rules in one run (kernels/NOTES.md v1.38, GPU ms of the training forward,
    B / C L-major): fp32 batch 16 0.354 -> 0.311 / 0.182 -> 0.156 ms at 2048 x 1024 / 4096 x 256 (15.5 / 31
    warps an SM paired), batch 64 -11 to -14 % at 1024 x 4096 to 4096 x 256; at 1024 x 4096 and batch 16
    (7.8) pairs lost 14 % and are not taken. bf16 from 24 warps: batch 64 -1.2 to -2.7 % at the four
    shapes, batch 16 -1.5 % at 4096 x 256 and +1.5 % at 8192 x 64. Through the tables (the fused SS2D core
    at 32 x 32 / 16 x 16 / 8 x 8, forward + backward GPU ms, one process): fp32 -2.1 / -2.7 / -2.7 % at
    batch 16, -2.8 / -3.1 / -3.2 % at 64; bf16 -0.4 to -0.9 % at 64, level (+-0.1 %) at 16. Until v1.37
    opt-in and uncapped (168 registers, half the programs an SM): it lost where the grid was short."""
    mode = _choice("MAMBAAD_SCAN_LANE_PAIRS", "auto", ("auto", "0", "1"))
    if split < 2 or mode == "0":
        return False
    if mode == "1":
        return True
    if split != 4 or interpreting():
        return False
    dg, groups, batch, _ = shape
    warps = dg * groups * batch * split / 2 / 32 / _sm_count(device_index)
    return warps >= PAIRS_MIN_WARPS_PER_SM.get(element_size, PAIRS_MIN_WARPS_PER_SM[4])


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    # a knob's value, one of choices: else a ValueError that names the variable and lists them
    value = os.environ.get(name, default)
    if value not in choices:
        raise ValueError(f"{name} must be {', '.join(choices[:-1])} or {choices[-1]}, got {value!r}")
    return value


def _lane_checkpoint_steps() -> int:
    """Where the lane backward will run, the training forward keeps the state every 16 steps instead of every
    chunk (128 steps), so that the backward reads each block's start state instead of running each chunk
    forwards first (about a quarter of its instructions, and a kernel ptxas compiles in a fraction of the
    time), for 8x the checkpoint memory: (batch, dim, L / 16, N) fp32, twice a bf16 u's size (peak memory
    17.1 -> 23.5 GiB in the bf16 model at batch 64). Developer knob MAMBAAD_SCAN_LANE_CKPT: 0 keeps the
    chunk checkpoints (untimed: its first compile did not finish within 200 s on the H200)."""
    value = os.environ.get("MAMBAAD_SCAN_LANE_CKPT", "16")
    steps = int(value) if value.isdigit() else -1
    if steps and (steps < 8 or steps % 8):  # a chunk must hold whole blocks of the lane kernels (8 or 16):
        # at 8 steps _lane_blocks_prune leaves both kernels their 8-step configs only
        raise ValueError(f"MAMBAAD_SCAN_LANE_CKPT must be 0 or a multiple of 8, got {value!r}")
    return steps


def _lane_block_steps(T: int) -> int:
    # the lane kernels' steps per block in the interpreter (SEG_E, at most the chunk); on GPUs the backward's
    # scratch is sized for its shortest block (LANE_BWD_MIN_E)
    if interpreting():
        return min(_interpreter_knob("SEG_E"), T)
    return min(LANE_BWD_MIN_E, T)


def _seg_fits(bd: int, warps: int, e: int, T: int, backward: bool = False) -> bool:
    per_lane = bd * T // (32 * warps)
    return e <= T and per_lane in ((e,) if backward else (e, 2 * e))


def _seg_kept(space, dg: int, T: int, backward: bool) -> list:
    # the tiles kernels' limit on BD (at most the group's channels, rounded up), then the layout's fit
    limit = max(4, next_power_of_2(dg))
    return [c for c in space if c[0] <= limit and _seg_fits(c[0], c[1], c[4], T, backward)]


def _seg_prune(configs, named_args, **kwargs):
    def key(c):
        k = c.kwargs
        return (k["BD"], c.num_warps, c.num_stages, k["UNROLL"], k["E"], k["PREFETCH"])

    kept = {key(c) for c in configs}
    kept = set(_seg_kept(kept, int(named_args["DG"]), kwargs["T"], "dout_ptr" in named_args))
    return [c for c in configs if key(c) in kept]


def _seg_config_space(backward: bool) -> list[tuple[int, ...]]:
    # developer knob, both kernels: "4:1:3:1:16:0,.."
    return _configs_from_env("MAMBAAD_SCAN_SEG_CONFIGS", _SEG_BWD_CONFIGS if backward else _SEG_FWD_CONFIGS)


def seg_enabled(T: int, dg: int, backward: bool = False) -> bool:
    """Whether a segment kernel has a config for chunk length T and dg channels per group, so that its lanes
    hold whole segments (the inline-PTX reductions rely on it); MAMBAAD_SCAN_SEG=0 turns both off."""
    if os.environ.get("MAMBAAD_SCAN_SEG", "1") == "0":
        return False
    return interpreting() or bool(_seg_kept(_seg_config_space(backward), dg, T, backward))


@functools.cache
def _tuned_kernels():
    def rows(kernel, reset_to_zero=None, backward=False):
        return triton.autotune(
            [triton.Config({"BD": bd}, num_warps=w) for bd, w in _ROWS_CONFIGS],
            key=[*(KEY if backward else FWD_KEY), "TR"],
            prune_configs_by={"early_config_prune": _prune}, reset_to_zero=reset_to_zero,
        )(kernel)

    from .triton_seg import _scan_bwd_seg_kernel, _scan_fwd_seg_kernel

    def block_configs(space):
        # the segment and lane kernels' (BD, num_warps, num_stages, unroll, E, PREFETCH[, MAXNREG]) tuples
        return [triton.Config({"BD": bd, "UNROLL": unroll, "E": e, "PREFETCH": pf}, num_warps=w,
                              num_stages=st, maxnreg=register_cap(rest))
                for bd, w, st, unroll, e, pf, *rest in space]

    def seg(kernel, backward, reset_to_zero=None):
        return triton.autotune(block_configs(_seg_config_space(backward)), key=KEY if backward else FWD_KEY,
                               reset_to_zero=reset_to_zero,
                               prune_configs_by={"early_config_prune": _seg_prune}, **_cache_option())(kernel)

    from .triton_lane import _scan_bwd_lane_kernel, _scan_fwd_lane_kernel

    lane_space = _configs_from_env("MAMBAAD_SCAN_LANE_CONFIGS", _LANE_FWD_CONFIGS)
    # the outputs the kernels add into must be zeroed between the autotuner's trial runs: the backwards' dB,
    # dC and dA; through a table, the lane kernels' output and du too (added over the directions: zeroing
    # them costs the plain path one fill per trial, when it is tuned)
    added = ["dB_ptr", "dC_ptr", "dA_ptr"]
    # (SHARES: another kernel than without, for its own pick; only 2 lanes a channel have both, by shape)
    lane = triton.autotune(block_configs(lane_space),
                           key=[*FWD_KEY, "SPLIT", "SHARES", "PAIRS", "NMAJOR"],
                           reset_to_zero=["out_ptr"],
                           prune_configs_by={"early_config_prune": _lane_fwd_prune},
                           **_cache_option())(_scan_fwd_lane_kernel)
    lane_bwd = triton.autotune(block_configs(_lane_bwd_config_space()), key=[*KEY, "SPLIT", "SHARES"],
                               reset_to_zero=[*added, "du_ptr"],
                               prune_configs_by={"early_config_prune": _lane_blocks_prune},
                               **_cache_option())(_scan_bwd_lane_kernel)
    return (_autotune(_scan_fwd_kernel), _autotune(_scan_bwd_kernel, reset_to_zero=added, backward=True),
            rows(_scan_fwd_rows_kernel), rows(_scan_bwd_rows_kernel, ["dB_ptr", "dC_ptr"], backward=True),
            seg(_scan_fwd_seg_kernel, False), seg(_scan_bwd_seg_kernel, True, reset_to_zero=added), lane,
            lane_bwd)


def _lane_bwd_config_space() -> list[tuple[int, ...]]:
    # developer knob MAMBAAD_SCAN_LANE_BWD_CONFIGS; blocks under LANE_BWD_MIN_E steps would overrun scratch
    space = _configs_from_env("MAMBAAD_SCAN_LANE_BWD_CONFIGS", _LANE_BWD_CONFIGS)
    return [c for c in space if c[4] >= LANE_BWD_MIN_E] or _LANE_BWD_CONFIGS


TUNED_KERNEL_NAMES = ("tiles_fwd", "tiles_bwd", "rows_fwd", "rows_bwd", "seg_fwd", "seg_bwd", "lane_fwd",
                      "lane_bwd")


def tuned_picks() -> dict[str, dict[str, str]]:
    """This process's autotuner picks, {kernel: {key: config}} (the key: DG, L, N, T, ..., then the argument
    dtypes), for benchmark records: the same shape has timed up to 1.5x apart in two processes (v1.7)."""
    if interpreting() or _tuned_kernels.cache_info().currsize == 0:
        return {}
    picks = {name: {str(key): str(config) for key, config in tuner.cache.items()}
             for name, tuner in zip(TUNED_KERNEL_NAMES, _tuned_kernels(), strict=True) if tuner.cache}
    if _LANE_PICKS:  # the forward kernel chosen per shape (_lane_forward)
        picks["lane_or_seg_fwd"] = {str(key): "lane" if lane else "seg" for key, lane in _LANE_PICKS.items()}
    return picks


def _launch(kernel_index: int, shape: tuple[int, int, int, int], args: tuple, consts: dict) -> None:
    dg, groups, batch, length = shape  # channels per group, groups, batch, steps
    last = consts.get("BLOCKS_LAST", False)  # the segment backward's grid order (_program_channels)
    split, sets = 1, 1
    if kernel_index in (6, 7):  # the lane kernels: lanes per channel (BD // split channels per program)
        index, backward = args[0].device.index or 0, kernel_index == 7
        split = lane_split(shape, consts["N"], index, backward=backward, element_size=args[0].element_size())
        consts = {**consts, "SPLIT": split, "SHARES": lane_shares(split, shape, index, backward=backward)}
        if not backward:  # PAIRS: two sets of BD // split channels a program; B / C's layout (args 3, 4)
            consts["PAIRS"] = lane_pairs(split, shape, index, args[0].element_size())
            consts["NMAJOR"] = n_major(args[3], args[4])
            sets = 2 if consts["PAIRS"] else 1

    def grid(bd):
        bd = bd // split * sets
        return (groups, batch, cdiv(dg, bd)) if last else (cdiv(dg, bd), groups, batch)
    if interpreting():
        from .triton_lane import _scan_bwd_lane_kernel, _scan_fwd_lane_kernel
        from .triton_seg import _scan_bwd_seg_kernel, _scan_fwd_seg_kernel

        kernels = (_scan_fwd_kernel, _scan_bwd_kernel, _scan_fwd_rows_kernel, _scan_bwd_rows_kernel,
                   _scan_fwd_seg_kernel, _scan_bwd_seg_kernel, _scan_fwd_lane_kernel, _scan_bwd_lane_kernel)
        kernel = kernels[kernel_index]
        bd = min(_INTERPRETER_BD, next_power_of_2(dg)) * split
        tiles = {"UNROLL": 1, "FAST_EXP": False, "PREFETCH": _interpreter_knob("PREFETCH")}  # no PTX: tl.exp2
        seg = {**tiles, "PREFETCH": _interpreter_knob("SEG_PREFETCH"),
               "E": min(_interpreter_knob("SEG_E"), consts["T"])}
        lane = {**tiles, "PREFETCH": _interpreter_knob("LANE_PREFETCH"), "E": _lane_block_steps(consts["T"])}
        lane_bwd = {**lane, "PREFETCH": _interpreter_knob("SEG_PREFETCH")}
        extra = {0: tiles, 1: {**tiles, "FLIP": _interpreter_knob("FLIP")}, 4: seg, 5: seg, 6: lane,
                 7: lane_bwd}
        extra = extra.get(kernel_index, {})
        kernel[grid(bd)](*args, BD=bd, **extra, **consts)
        return
    tuner = _tuned_kernels()[kernel_index]
    if kernel_index in (0, 1, 4, 5, 6, 7):  # the tiles, segment and lane kernels
        consts = {**consts, "FAST_EXP": fast_exp()}
    launch_tuned(tuner, lambda meta: grid(meta["BD"]), args, consts, {"DG": dg, "L": length, **consts})


def fast_exp() -> bool:
    """ex2.approx.ftz (inline PTX) on NVIDIA GPUs, tl.exp2 elsewhere (ROCm)."""
    return torch.version.hip is None


def _interpreter_knob(name: str) -> int:
    # tests run both ways of the adjoint scan (FLIP) and each way of the state loop's loads (PREFETCH, and
    # SEG_PREFETCH in the segment kernels and the lane backward, LANE_PREFETCH in the lane forward: 0, or 8,
    # its one mode without inline PTX) and segments of SEG_E steps (4 by default: 4 per 16-step chunk)
    defaults = {"FLIP": "1", "PREFETCH": "2", "SEG_PREFETCH": "1", "LANE_PREFETCH": "0", "SEG_E": "4"}
    return int(os.environ.get(f"MAMBAAD_SCAN_{name}", defaults[name]))


def _strides(t: torch.Tensor | None, scale: int = 1) -> tuple[int, ...]:
    """t's strides (zeros for an absent tensor), the last (L) divided by ``scale`` (_table_positions)."""
    if t is None:
        return (0, 0, 0, 0)
    *outer, step = t.stride()
    return (*outer, step // scale)


def table_scale_enabled() -> bool:
    """Developer knob MAMBAAD_SCAN_TABLE_SCALE=1 (opt-in): _table_positions scales the tables. Off by default:
    on the H200 the fused SS2D core ran no faster with it (GPU ms, batch 16, against v1.30 in one process:
    bf16 -0.8 % at 64 x 64 and +1.0-1.2 % at the smaller maps; fp32 +0.1 % at 64 x 64, +3-6 % at the others,
    whose forward then spills 16 bytes: kernels/NOTES.md v1.31), so the instructions it saves are not what
    the fused kernels wait on."""
    return os.environ.get("MAMBAAD_SCAN_TABLE_SCALE", "0") == "1"


def _table_positions(table: torch.Tensor, maps) -> tuple[torch.Tensor, int]:
    """The lane kernels' table where every map they address through it (u, delta, the output; in the
    backward dout, du and ddelta; None where absent) has one L stride s > 1, as the fused path's channels-last
    maps do (s = the channels): table * s, with their L strides passed as s / s = 1, which Triton compiles as
    a constant, so a step's addresses are the position itself. Otherwise every step pays, per map, a
    multiply by its stride and a move from the uniform registers (local sm_90 compile, bf16, two lanes a
    channel: the forward's block 2007 -> 1788 instructions at PREFETCH 6, the backward's 1845 -> 1783 outside
    its state loop). Opt-in (table_scale_enabled). Returns (the kernel's table, s) or (table, 1). B / C and
    their gradients are moved by the natural table (they are read in step order)."""
    strides = {m.stride(3) for m in maps if m is not None}
    if len(strides) != 1 or not table_scale_enabled():
        return table, 1
    s = strides.pop()
    if s <= 1 or (table.shape[1] - 1) * s >= 2**31:  # positions stay int32
        return table, 1
    return table * s, s


def softplus_mode(softplus: bool, delta_dtype: torch.dtype) -> int:
    """The kernels' SOFTPLUS constexpr. 16-bit deltas get _softplus_fast (relative error below 4e-6, against
    the 3.9e-3 a bf16 delta carries; by PTX's approximations on NVIDIA GPUs, by tl.exp2 / tl.log2 in the
    interpreter and on ROCm); fp32 deltas the exact one, as mamba_ssm's kernel computes it, so that the fp32
    recipe reproduces the paper's numerics. Developer knob MAMBAAD_SCAN_SOFTPLUS: exact or fast for every
    dtype (auto by default)."""
    if not softplus:
        return int(SOFTPLUS_NONE)
    choice = _choice("MAMBAAD_SCAN_SOFTPLUS", "auto", ("auto", "exact", "fast"))
    fast = choice == "fast" or (choice == "auto" and delta_dtype.itemsize == 2)
    if not fast:
        return int(SOFTPLUS_EXACT)
    return int(SOFTPLUS_FAST if fast_exp() and not interpreting() else SOFTPLUS_FAST_PORTABLE)


def _flags(D, z, delta_bias, softplus, table, delta_dtype) -> dict:
    return {
        "HAS_D": D is not None, "HAS_Z": z is not None, "HAS_BIAS": delta_bias is not None,
        "SOFTPLUS": softplus_mode(softplus, delta_dtype), "HAS_TABLE": table is not None,
    }


def _rows_piece(T: int) -> int:
    return min(int(os.environ.get("MAMBAAD_SCAN_PIECE", ROWS_PIECE)), T)  # env: developer sweeps


def _host_params(A, D, delta_bias):
    """A, D and delta_bias contiguous, in their own dtypes: the kernels cast them to fp32 and scale A by
    log2(e) (_load_A2). A stands in for an absent D or delta_bias: never read."""
    A = A.contiguous()
    bias = delta_bias.contiguous() if delta_bias is not None else A
    return A, (D.contiguous() if D is not None else A), bias


def channels_last(u4, dt4, z4=None) -> bool:
    """Whether u / delta (/ z) have stride 1 over channels, the layout the rows kernels (v3) are for."""
    tensors = [t for t in (u4, dt4, z4) if t is not None]
    return all(t.stride(2) == 1 and t.stride(3) != 1 for t in tensors) and u4.shape[2] > 1


def rows_enabled() -> bool:
    """The rows kernels (v3) are opt-in, MAMBAAD_SCAN_ROWS=1: on the H200 their forward took 6.4 ms where
    the tiles kernels (v1) take 1.6 ms (1024 x 4096, fp32, kernels/NOTES.md). v1 reads any strides."""
    return os.environ.get("MAMBAAD_SCAN_ROWS", "0") == "1"


def table_lanes(table: torch.Tensor | None, gated: bool) -> bool:
    """Whether a scan through index tables (the fused SS2D path) runs on the lane kernels (triton_lane.py,
    since v1.28) rather than the tiles ones (v1's). Knob MAMBAAD_SCAN_FUSED_KERNEL: lane (the default) or
    tiles. Never with the gate z (the lane backward has none; the directions path passes none)."""
    mode = _choice("MAMBAAD_SCAN_FUSED_KERNEL", "lane", ("lane", "tiles"))
    return table is not None and not gated and mode == "lane"


def _rows_path(u4, dt4, z4, backward: bool = False) -> bool:
    """Whether the rows kernels run: channels-last inputs with MAMBAAD_SCAN_ROWS=1 (opt-in). The developer
    knob MAMBAAD_SCAN_BWD=tiles sends the backward to v1's tiles kernel after the rows forward, to compare."""
    rows = channels_last(u4, dt4, z4) and rows_enabled()
    return rows and not (backward and os.environ.get("MAMBAAD_SCAN_BWD") == "tiles")


def _lanes_table(u4, dt4, z4, table, backward: bool = False) -> bool:
    """Whether this scan runs through index tables on the lane kernels, which read B / C in step order."""
    return not _rows_path(u4, dt4, z4, backward) and table_lanes(table, z4 is not None)


def _bc_steps(B4, C4, table, given=None):
    """B and C in the table's step order: ``given`` (the forward's, kept for the backward) or gathered now."""
    return given if given is not None else (_steps_order(B4, table), _steps_order(C4, table))


def _steps_order(rows4: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """B or C (batch, G, N, L) in natural order, gathered into each direction's step order (contiguous): the
    lane kernels read B / C rows as contiguous blocks of steps. N rows a direction, where u's gather would be
    D. One Triton pass (torch's gather with its int64 index ran at about 0.7 TB/s on the H200, v1.29)."""
    out = torch.empty(rows4.shape, device=rows4.device, dtype=rows4.dtype)
    return permute_steps_triton(rows4, table, out, to_steps=True)


def _stacked_like(like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An empty (2, *like.shape) tensor, each half with like's order of strides: dB / dC in B's layout, where
    the caller's views (the model's B / C are slices of x_proj's output) take their gradients as they are."""
    order = sorted(range(like.dim()), key=lambda d: -like.stride(d))  # outermost first
    base = torch.empty((2, *(like.shape[d] for d in order)), device=like.device, dtype=dtype)
    return base.permute(0, *(1 + order.index(d) for d in range(like.dim())))


def _channels_last_buffer(like4: torch.Tensor, dtype: torch.dtype, channels_last_: bool) -> torch.Tensor:
    """An empty (batch, G, DG, L) tensor, (batch, L, G, DG) in memory where channels_last_ (the rows kernel's
    gradients: whole rows stored)."""
    batch, groups, dg, length = like4.shape
    if channels_last_:
        return torch.empty((batch, length, groups, dg), device=like4.device, dtype=dtype).permute(0, 2, 3, 1)
    return torch.empty((batch, groups, dg, length), device=like4.device, dtype=dtype)


def _shared_map(like4: torch.Tensor, u4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A zeroed fp32 (batch, DG, L) map that the lane kernels add every direction's output (or du) into
    through a table, in u's layout (on channels-last maps a warp then adds 32 adjacent channels of one
    position at a time): (the map, for the kernel's pointer and the autotuner's zeroing; the map as
    (batch, G, DG, L) with stride 0 over the group, for the kernel's strides)."""
    batch, groups, dg, length = like4.shape
    if u4.stride(2) == 1 and dg > 1:  # (batch, L, DG) in memory
        map3 = torch.zeros((batch, length, dg), device=like4.device, dtype=torch.float32).transpose(1, 2)
    else:
        map3 = torch.zeros((batch, dg, length), device=like4.device, dtype=torch.float32)
    return map3, map3.unsqueeze(1).expand(batch, groups, dg, length)


def _scan_forward(u4, dt4, A, B4, C4, D, z4, delta_bias, table, softplus, out_dtype, need_ckpt, chunk,
                  bc_steps=None):
    """Forward on 4-D views (batch, G, DG, L) of u / delta / z and (batch, G, N, L) of B / C.

    Returns out (batch, G, DG, L) in ``out_dtype`` (channels-last in memory when the inputs are), the
    checkpoints (or None) and the chunk length. The tiles kernel runs, or the rows kernel on channels-last
    inputs when MAMBAAD_SCAN_ROWS=1. bc_steps: B and C already in the table's step order (_steps_order), for
    the lane kernels through a table, which otherwise gather them here.
    """
    batch, groups, dg, length = dt4.shape
    n_state = A.shape[1]
    T = chunk or chunk_length(length)
    rows = _rows_path(u4, dt4, z4)
    lanes_table = _lanes_table(u4, dt4, z4, table)
    if (need_ckpt and not rows and _lane_checkpoint_steps()
            and (lanes_table or table is None and _lane_backward((dg, groups, batch, length), z4 is not None,
                                                                  u4.device.index or 0, u4.element_size(),
                                                                  n_state))):
        T = min(T, _lane_checkpoint_steps())  # the lane backward then skips its pass over each chunk
    n_chunks = cdiv(length, T)
    Ac, Df, bias = _host_params(A, D, delta_bias)
    if lanes_table:  # the directions' outputs summed by the kernel (their merge)
        out_ptr, out = _shared_map(dt4, u4)
    else:  # in u's layout where the rows kernel runs
        out = out_ptr = _channels_last_buffer(dt4, out_dtype, rows)
    # the checkpoints, or at inference the tiles kernel's two state slots (the rows kernel ignores them)
    ckpt = torch.empty((batch, groups * dg, n_chunks if need_ckpt else 2, n_state), device=u4.device,
                       dtype=torch.float32)
    seg = not rows and table is None and seg_enabled(T, dg)  # the segment forward: no index tables
    if lanes_table:
        B4, C4 = _bc_steps(B4, C4, table, bc_steps)
    if seg or lanes_table:
        B4, C4 = _bc_for_segments(B4, C4)
    tab, scale = table if table is not None else Ac, 1
    if lanes_table:
        tab, scale = _table_positions(table, (u4, dt4, z4, out))

    def kernel_args(B4, C4):
        return (u4, dt4, Ac, B4, C4, Df, bias, z4 if z4 is not None else u4, out_ptr, ckpt, tab, length, dg,
                n_chunks, *_strides(u4, scale), *_strides(dt4, scale), *_strides(B4), *_strides(C4),
                *_strides(z4, scale), *_strides(out, scale))
    args = kernel_args(B4, C4)
    consts = dict(N=n_state, NP=next_power_of_2(n_state), T=T, STORE_CKPT=need_ckpt,
                  **_flags(D, z4, delta_bias, softplus, table, dt4.dtype))
    if rows:
        consts["TR"] = _rows_piece(T)
        kernel_index = 2
    elif lanes_table:
        consts["EVEN_L"] = length % T == 0
        consts["EVEN_D"] = dg % 32 == 0  # with EVEN_L: the adds into the shared map unpredicated
        kernel_index = 6
    elif seg:
        consts["EVEN_L"] = length % T == 0
        kernel_index = 6 if _lane_forward((dg, groups, batch, length), args, consts) else 4
    else:
        kernel_index = 0
    if kernel_index != 6 and n_major(B4, C4):  # the lane forward alone reads N-major rows a step at a time
        args = kernel_args(*_rows_along_l(B4, C4))
    _launch(kernel_index, (dg, groups, batch, length), args, consts)
    return out, (ckpt if need_ckpt else None), T


def _fp32(t: torch.Tensor | None) -> torch.Tensor | None:
    """t as fp32 with its strides; an expanded view (stride 0) is cast once and expanded again."""
    if t is None or t.dtype == torch.float32:
        return t
    if 0 in t.stride():
        one = t[tuple(slice(0, 1) if stride == 0 else slice(None) for stride in t.stride())]
        return one.float().expand(t.shape)
    return t.float()


def segment_backward_on_gpu(T: int, element_size: int, gated: bool) -> bool:
    """Whether a GPU runs the segment backward rather than the tiles one (where a segment config fits). For
    16-bit inputs, and in fp32 at chunks of up to 64 steps: at longer chunks the tiles one timed faster in
    fp32 on the H200 (3.0 against 3.2 ms at 1024 x 4096, but 0.45 against 0.39 at 8192 x 64:
    kernels/NOTES.md, v1.5 and v1.9). Never with the gate z: its terms make the kernel spill (304 bytes of
    stack at (4, 1), local sm_90 compile). Developer knob MAMBAAD_SCAN_SEG_BWD=1: always, z aside."""
    if gated:
        return False
    return element_size == 2 or T <= 64 or os.environ.get("MAMBAAD_SCAN_SEG_BWD") == "1"


def n_major(B4: torch.Tensor, C4: torch.Tensor) -> bool:
    """Whether B and C (batch, G, N, L) are N-major in memory, (batch, G, L, N) underneath: state stride 1, L
    stride N. The lane forward then reads each step's states of a lane in one vector load at a constant
    offset (NMAJOR, triton_lane._step_rows). On the H200 (v1.37, GPU time, one process, same outputs): the
    training forward 4-6 % faster in fp32, 5 % faster to 1 % slower in bf16, the inference forward 3-6 %
    faster (bf16 8192 x 64: 17 %). The other kernels take L-major copies (_rows_along_l). The model gives
    the scan L-major rows, so this serves callers that have N-major B / C, mostly for forwards."""
    n = B4.shape[2]
    return all(t.stride(2) == 1 and t.stride(3) == n for t in (B4, C4)) and n > 1


def _rows_along_l(B4, C4):
    """B and C with unit L stride (copies where they are N-major), for the kernels that read them in rows
    along L: every backward and the forwards but the lane one, which read N-major rows element by element
    (H200, v1.37: the backwards 1.3-1.6x their time with L-major rows, the fp32 segment forward at 8192 x 64
    2.8x), where the copy costs a pass over B and C."""
    if n_major(B4, C4):
        return B4.contiguous(), C4.contiguous()
    return B4, C4


def _bc_for_segments(B4, C4):
    # developer knob MAMBAAD_SCAN_BC_FP32=1: 16-bit B / C rows cast to fp32 once per call (one torch op each)
    # instead of in every program's state loop, where the local sm_90 compile spends 48 of the backward's 540
    # loop instructions converting them. Off by default: it timed slower on the H200, the fp32 rows doubling
    # the bytes each state loads (bf16 backward 2.74 -> 3.13 ms at 1024 x 4096: kernels/NOTES.md, v1.9)
    if B4.element_size() == 2 and os.environ.get("MAMBAAD_SCAN_BC_FP32") == "1":
        return _fp32(B4), _fp32(C4)
    return B4, C4


def _scan_backward(dout4, u4, dt4, A, B4, C4, D, z4, delta_bias, table, softplus, ckpt, T, bc_steps=None):
    """Gradients on the same 4-D views: (du4, ddt4, dz4) as (batch, G, DG, L) (fp32, or the inputs' dtypes
    where the segment kernel runs), dB4 and dC4 stacked as dBC (2, batch, G, N, L) fp32 (one cast for both),
    and dA (dim, N), dD, dbias (dim,) fp32 summed over the batch. Through a table on the lane kernels:
    bc_steps as _scan_forward's, and dBC put back in natural order by one Triton pass that also casts it to
    B's and C's dtype where they share one, in B's layout (_stacked_like)."""
    batch, groups, dg, length = dt4.shape
    n_state = A.shape[1]
    n_chunks = cdiv(length, T)
    Ac, Df, bias = _host_params(A, D, delta_bias)
    dev = u4.device
    delta_dtype = dt4.dtype  # the forward's softplus mode, before the tiles path's fp32 casts
    bc_dtype = B4.dtype if B4.dtype == C4.dtype else None  # dBC's through a table, before any cast
    if table is None:
        B4, C4 = _rows_along_l(B4, C4)
    B_natural = B4  # its layout, for dB / dC through a table
    # developer knob MAMBAAD_SCAN_BWD=tiles: v1's backward after the rows forward, to compare the two
    rows = _rows_path(u4, dt4, z4, backward=True)
    lanes_table = _lanes_table(u4, dt4, z4, table, backward=True)
    lane = not rows and (lanes_table or table is None and _lane_backward(
        (dg, groups, batch, length), z4 is not None, u4.device.index or 0, u4.element_size(), n_state))
    seg = lane or (not rows and table is None and seg_enabled(T, dg, backward=True)
                   and (interpreting() or segment_backward_on_gpu(T, u4.element_size(), z4 is not None)))
    if not rows and not seg:  # bf16 loads set the tiles kernel's layouts astray (Triton 3.6): 1.3x slower
        dout4, u4, dt4, B4, C4, z4 = (_fp32(t) for t in (dout4, u4, dt4, B4, C4, z4))
    elif seg:
        if lanes_table:
            B4, C4 = _bc_steps(B4, C4, table, bc_steps)
        B4, C4 = _bc_for_segments(B4, C4)

    def grad_buffer(like):
        # the segment kernel stores du / ddt / dz in their input's dtype (16-bit: no fp32 buffer and cast
        # afterwards); the others in fp32; in the inputs' layout where the rows kernel runs
        return _channels_last_buffer(dt4, like.dtype if seg else torch.float32, rows)
    if lanes_table:  # du summed over the directions by the kernel; ddt in delta's layout where it is dense
        (du_ptr, du), ddt = _shared_map(dt4, u4), torch.empty_like(dt4)  # (empty_like keeps dense strides)
    else:
        du, ddt = grad_buffer(u4), grad_buffer(dt4)
        du_ptr = du
    dz = grad_buffer(z4) if z4 is not None else du
    # what the kernels add into, zeroed by one op (every torch op costs the H200's slow host time, and small
    # scans are bound by the host): dB and dC, stacked, and dA per batch element (the tiles kernel adds over
    # chunks)
    n_bc = batch * groups * n_state * length
    added = torch.zeros(2 * n_bc + batch * groups * dg * n_state, device=dev, dtype=torch.float32)
    dBC = added[:2 * n_bc].view(2, batch, groups, n_state, length)
    dB, dC = dBC[0], dBC[1]
    dA = added[2 * n_bc:].view(batch, groups * dg, n_state)
    dDb = torch.empty((2, batch, groups * dg), device=dev, dtype=torch.float32)  # dD, dbias per batch element
    dD, dbias = dDb[0], dDb[1]
    consts = dict(N=n_state, NP=next_power_of_2(n_state), T=T,
                  **_flags(D, z4, delta_bias, softplus, table, delta_dtype))
    if rows:
        consts["TR"] = _rows_piece(T)
        scratch = torch.empty((batch, groups * dg, T // consts["TR"], consts["NP"]), device=dev,
                              dtype=torch.float32)
    elif lane:  # each block's start states and the adjoint between blocks (triton_lane._scan_bwd_lane_kernel)
        slots = T // _lane_block_steps(T) + 1
        scratch = torch.empty(slots * consts["NP"] * batch * groups * dg, device=dev, dtype=torch.float32)
    else:  # the adjoint handed from chunk to chunk, two slots by chunk parity
        scratch = torch.empty((2, batch * groups * dg * n_state), device=dev, dtype=torch.float32)
    if seg:  # the segment and lane backwards (seg holds where lane does)
        consts["EVEN_L"] = length % T == 0
        # dB / dC added by inline PTX (both kernels' reductions): NVIDIA GPUs, whole chunks
        consts["PTX_RED"] = consts["EVEN_L"] and fast_exp() and not interpreting()
    if seg and not lane:
        # the segment backward's dB / dC reduction (triton_seg._red_add_segments, by PTX_RED). Modes: 2
        # sums over the lane rows first, 1 adds every channel's own, 3 the reduce-scatter
        # (triton_seg._red_scatter_rows), which also runs without PTX (tl.atomic_add). 3 timed faster on
        # the H200 at 128-step chunks (bf16 backward 3.20 -> 2.78 ms at 1024 x 4096, 0.85 -> 0.69 at
        # 4096 x 256), 2 at 64 (0.82 against 1.01 at 8192 x 64): kernels/NOTES.md, v1.7. Developer knob
        # MAMBAAD_SCAN_SEG_RED
        mode = int(os.environ.get("MAMBAAD_SCAN_SEG_RED", "3" if T >= 128 else "2"))
        consts["VEC_RED"] = mode if consts["PTX_RED"] or mode == 3 else 0
        # the grid with channel blocks last (_program_channels) at up to two chunks: the backward timed 5 %
        # (4096 x 256) and 13 % (8192 x 64) faster, 0-2 % either way at longer sequences (H200, bf16,
        # kernels/NOTES.md v1.8). Developer knobs: MAMBAAD_SCAN_SEG_ORDER, and MAMBAAD_SCAN_SEG_RED_SKIP=1,
        # which leaves dB / dC at zero (wrong gradients; it timed their adds at 17 % of the backward)
        order = os.environ.get("MAMBAAD_SCAN_SEG_ORDER", "1" if n_chunks <= 2 else "0")
        consts["BLOCKS_LAST"] = order == "1"
        consts["RED_SKIP"] = os.environ.get("MAMBAAD_SCAN_SEG_RED_SKIP", "0") == "1"
    tab, scale = table if table is not None else Ac, 1
    if lanes_table:
        tab, scale = _table_positions(table, (u4, dt4, z4, dout4, du, ddt))
        consts["EVEN_D"] = dg % 32 == 0  # with EVEN_L: du's adds and ddt's stores unpredicated
    args = (u4, dt4, Ac, B4, C4, Df, bias, z4 if z4 is not None else u4, dout4, ckpt, tab,
            du_ptr, ddt, dz, dB, dC, dA, dD, dbias, scratch, length, dg, n_chunks,
            *_strides(u4, scale), *_strides(dt4, scale), *_strides(B4), *_strides(C4), *_strides(z4, scale),
            *_strides(dout4, scale), *_strides(du, scale))
    if lane:  # the lane backward's own strides of ddt
        args = args + _strides(ddt, scale)
    _launch(3 if rows else 7 if lane else 5 if seg else 1, (dg, groups, batch, length), args, consts)
    if lanes_table:  # dB / dC from step order back to natural order, cast in the same pass
        dBC = permute_steps_triton(dBC, table, _stacked_like(B_natural, bc_dtype or torch.float32),
                                   to_steps=False)
    dD, dbias = dDb.sum(1)
    return du, ddt, (dz if z4 is not None else None), dBC, dA.sum(0), dD, dbias


# --------------------------------------------------------------------------------------------------------
# autograd


def _cast(grad: torch.Tensor | None, like: torch.Tensor | None) -> torch.Tensor | None:
    if grad is None or like is None:
        return None
    return grad.to(like.dtype)


def _cast_pair(dBC: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # dB and dC in B's and C's dtypes: one cast where they share one
    if B.dtype == C.dtype:
        dB, dC = dBC.to(B.dtype)
        return dB, dC
    return dBC[0].to(B.dtype), dBC[1].to(C.dtype)


def _grouped(B, C, dim):
    """B and C as (batch, G, N, L) and the (G, dim // G) split of the channel axis."""
    B4 = B if B.dim() == 4 else B.unsqueeze(1)
    C4 = C if C.dim() == 4 else C.unsqueeze(1)
    return B4, C4, (B4.shape[1], dim // B4.shape[1])


def _split(t: torch.Tensor | None, split: tuple[int, int]) -> torch.Tensor | None:
    return t.unflatten(1, split) if t is not None else None


def selective_scan_fwd(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       need_ckpt=True, chunk=None):
    """The forward without autograd, as mamba_ssm's ``selective_scan_cuda.fwd``: (out, ckpt, T), where ckpt
    (the chunks' start states, None without ``need_ckpt``) and the chunk length T are what
    ``selective_scan_bwd`` needs. ``selective_scan_triton`` is these two inside an autograd Function;
    ``mambaad bench`` times them directly too, as it times the CUDA kernel."""
    batch, dim, length = u.shape
    B4, C4, split = _grouped(B, C, dim)
    out, ckpt, T = _scan_forward(_split(u, split), _split(delta, split), A, B4, C4, D, _split(z, split),
                                 delta_bias, None, delta_softplus, u.dtype, need_ckpt, chunk)
    return out.view(batch, dim, length), ckpt, T


def selective_scan_bwd(dout, u, delta, A, B, C, D, z, delta_bias, delta_softplus, ckpt, T):
    """The gradients of u, delta, A, B, C, D, z, delta_bias (None for an absent input) in the inputs'
    dtypes, from ``selective_scan_fwd``'s ckpt and T."""
    B4, C4, split = _grouped(B, C, u.shape[1])
    du, ddt, dz, dBC, dA, dD, dbias = _scan_backward(
        _split(dout, split), _split(u, split), _split(delta, split), A, B4, C4, D, _split(z, split),
        delta_bias, None, delta_softplus, ckpt, T,
    )
    dB, dC = _cast_pair(dBC if B.dim() == 4 else dBC.squeeze(2), B, C)
    return (_cast(du.flatten(1, 2), u), _cast(ddt.flatten(1, 2), delta), _cast(dA, A), dB, dC,
            _cast(dD, D), _cast(dz.flatten(1, 2) if dz is not None else None, z), _cast(dbias, delta_bias))


def _inference() -> bool:
    """Whether a forward skips autograd and the backward's checkpoints because grad mode is off (no_grad,
    inference_mode), so that no backward can follow: knob MAMBAAD_SCAN_INFER_CKPT=0 (opt-in). By default
    (1) the forward goes through autograd's Function, whose ctx.needs_input_grad marks a Parameter's input
    (the model's D) as needing its gradient even under no_grad, so scoring forwards store checkpoints (16-step
    ones where the lane backward would run: 4 fp32 bytes per step and channel at N = 16, twice a bf16 u).
    Skipping them was not faster on the H200 (v1.26, batch 16: the model's inference +0.1 % against v1.25's
    routing where the 8 x 8 maps' lane kernels alone gave +0.5 %; the inference forward's own autotuner pick
    at 2048 x 1024, 16-step blocks, ran 0.339 ms where the training forward's 8-step one ran 0.310 with its
    checkpoints: kernels/NOTES.md v1.26), so it stays opt-in until its picks are understood."""
    return not torch.is_grad_enabled() and os.environ.get("MAMBAAD_SCAN_INFER_CKPT", "1") == "0"


class _TritonScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk):
        need_ckpt = any(ctx.needs_input_grad)  # under no_grad too where an input is a Parameter: _inference
        out, ckpt, T = selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, need_ckpt,
                                          chunk)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, ckpt)
        ctx.delta_softplus, ctx.T = delta_softplus, T
        return out

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, z, delta_bias, ckpt = ctx.saved_tensors
        grads = selective_scan_bwd(dout, u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, ckpt, ctx.T)
        return (*grads, None, None)


def _directions_forward(u, delta, A, B, C, D, delta_bias, table, delta_softplus, need_ckpt, chunk):
    batch, dn, length = u.shape
    K = delta.shape[1]
    u4 = u.unsqueeze(1).expand(batch, K, dn, length)  # every direction reads the same natural-order map
    # B / C in the lane kernels' step order: gathered once, kept for the backward
    bc_steps = _bc_steps(B, C, table) if _lanes_table(u4, delta, None, table) else None
    out, ckpt, T = _scan_forward(u4, delta, A, B, C, D, None, delta_bias, table, delta_softplus,
                                 torch.float32, need_ckpt, chunk, bc_steps)
    # the merge: directions are already in natural order
    return _merge(out).to(u.dtype), ckpt, T, (bc_steps if need_ckpt else None)


def _merge(per_direction: torch.Tensor) -> torch.Tensor:
    """The sum over directions of (batch, K, Dn, L): the lane kernels' shared map as it is (stride 0 over
    the directions: they added into it), or the tiles kernels' per-direction outputs summed."""
    if per_direction.stride(1) == 0:
        return per_direction[:, 0]
    return per_direction.sum(1)


class _TritonDirections(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, table, delta_softplus, chunk):
        need_ckpt = any(ctx.needs_input_grad)  # as _TritonScan's
        out, ckpt, T, bc_steps = _directions_forward(u, delta, A, B, C, D, delta_bias, table, delta_softplus,
                                                     need_ckpt, chunk)
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, table, ckpt, *(bc_steps or (None, None)))
        ctx.delta_softplus, ctx.T = delta_softplus, T
        return out

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, delta_bias, table, ckpt, Bs, Cs = ctx.saved_tensors
        batch, dn, length = u.shape
        K = delta.shape[1]
        du, ddt, _, dBC, dA, dD, dbias = _scan_backward(
            dout.unsqueeze(1).expand(batch, K, dn, length), u.unsqueeze(1).expand(batch, K, dn, length),
            delta, A, B, C, D, None, delta_bias, table, ctx.delta_softplus, ckpt, ctx.T,
            bc_steps=(Bs, Cs) if Bs is not None else None,
        )
        dB, dC = _cast_pair(dBC, B, C)
        return (_cast(_merge(du), u), _cast(ddt, delta), _cast(dA, A), dB, dC,
                _cast(dD, D), _cast(dbias, delta_bias), None, None, None)


def selective_scan_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    chunk: int | None = None,
) -> torch.Tensor:
    """mamba_ssm's ``selective_scan_fn`` in Triton (shapes as ``selective_scan_ref``); returns u's dtype.

    u, delta, z: fp32 or bf16; state and accumulation in fp32. ``chunk`` overrides the chunk length (a power
    of two, for tests).
    """
    if _inference():  # no autograd node and no checkpoints
        return selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), False, chunk)[0]
    return _TritonScan.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), chunk)


def selective_scan_directions_triton(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    table: torch.Tensor,
    delta_softplus: bool = True,
    chunk: int | None = None,
) -> torch.Tensor:
    """The fused SS2D core: K directional scans read through ``table`` and merged in natural order, without
    the K copies. Shapes and semantics: ``kernels.directions.selective_scan_directions`` (its backend
    "triton-fused" calls this); returns (batch, Dn, L) in u's dtype."""
    table = table.to(torch.int32).contiguous()
    if _inference():
        out, _, _, _ = _directions_forward(u, delta, A, B, C, D, delta_bias, table, bool(delta_softplus),
                                           False, chunk)
        return out
    return _TritonDirections.apply(u, delta, A, B, C, D, delta_bias, table, bool(delta_softplus), chunk)
