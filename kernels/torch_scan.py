"""Chunked selective scan in plain PyTorch: the CPU path, with memory bounded in the sequence length.

Same signature and semantics as ``selective_scan_ref`` (mamba_ssm's ``selective_scan_fn``). The sequence is
cut into chunks of T steps (``auto_chunk``), processed one after another with the state carried between them:

* forward: per chunk, build the pairs (a, b) = (exp(delta*A), delta*B*u) for (batch, dim, T, N), fold the
  carried state into the first b, scan, contract with C. Only the inputs and the state at the start of every
  chunk, (batch, dim, n_chunks, N) in fp32 (stored as (batch, G, n_chunks, N, J)), are saved for backward.
* backward: walks the chunks in reverse, recomputes each chunk's states from its saved start state, runs the
  adjoint scan lambda_t = C_t g_t + a_{t+1} lambda_{t+1} (reference/scan_kernels.md section 1.3) and
  accumulates every gradient. The working set is O(batch * dim * T * N), never O(batch * dim * L * N).

Within a chunk the first-order linear recurrence is solved by odd-even reduction (a work-efficient parallel
scan): combine neighbouring pairs, recurse on the half-length sequence, then fill in the other half. It only
multiplies decays (all in (0, 1]), so extreme deltas underflow to 0 instead of overflowing, unlike
exp(cumsum) formulations. It works in place on strided views and touches each element O(1) times, where
a Hillis-Steele doubling scan touches it log2(T) times: about 7x faster on CPU here.

Internal layout: channels are split into (G groups, J = dim // G channels per group) and chunk tensors are
(batch, G, T, N, J): B/C broadcast over J, the time axis (dim 2) is sliced in contiguous N*J blocks, and the
sums over N become fast outer reductions (or a vector-matrix product for C.h).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Chunk length: chunk tensors of batch*dim*T*N elements should stay near CHUNK_ELEMENTS (2 MB in fp32, about
# cache-sized), while Python's per-op overhead wants long chunks. Timed on a 2-core CPU (fwd+bwd, T in 8..64),
# this rule picked the fastest T for (batch, dim, N) = (8, 384, 16), (8, 640, 16), (2, 256, 16).
CHUNK_ELEMENTS = 2**19
MIN_CHUNK, MAX_CHUNK = 8, 64
# On a GPU each op is a kernel launch: few, long chunks. Measured on an H200 (MambaAD, batch 16): the CPU rule
# left the model launch-bound at 5.5 training images/s.
GPU_CHUNK_ELEMENTS, GPU_MAX_CHUNK = 2**25, 1024

_TIME = 2  # the time axis of the internal (batch, G, T, N, J) layout
LOG2_E = 1.4426950408889634  # exp(x) = exp2(x * log2(e)); torch's exp2 is ~3x faster than exp on CPU


def _pair_scan_(a: torch.Tensor, b: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """In place: b becomes the inclusive scan h_t = a_t h_{t-1} + b_t along dim 2, h_{-1} = 0.

    ``reverse`` scans from the end: h_t = a_t h_{t+1} + b_t. ``a`` is overwritten at every second position
    (with products of decays); ``a`` of the first element in scan order is never read. Returns ``b``.

    Odd-even reduction: neighbours (first, second) in scan order combine into (a_s a_f, b_s + a_s b_f) at the
    second position, the half-length scan over the second positions gives their h, and one multiply-add per
    remaining position gives the rest. Working in place on strided views allocates nothing.
    """
    length = a.shape[_TIME]
    if length == 1:
        return b
    half = length // 2
    if reverse:
        odd = length % 2
        first, second = slice(odd + 1, length, 2), slice(odd, length - 1, 2)
        rest, rest_prev = slice(1 - odd, length - 1, 2), slice(1 - odd, None)
    else:
        first, second = slice(0, 2 * half, 2), slice(1, 2 * half, 2)
        rest, rest_prev = slice(2, length, 2), slice(0, (length + 1) // 2 - 1)
    a_s, b_s = a[:, :, second], b[:, :, second]
    b_s.addcmul_(a_s, b[:, :, first])
    if half > 1:  # the single pair's decay would never be read
        a_s.mul_(a[:, :, first])
    _pair_scan_(a_s, b_s, reverse)
    if length > 2:  # for length 2 nothing is left to fill in
        b[:, :, rest].addcmul_(a[:, :, rest], b_s[:, :, rest_prev])
    return b


def _softplus_grad(x: torch.Tensor) -> torch.Tensor:
    """d softplus(x) / dx as mamba_ssm: sigmoid(x), and 1 above the threshold 20."""
    return torch.where(x > 20.0, torch.ones_like(x), torch.sigmoid(x))


def _effective_delta(delta, delta_bias, softplus, dtype):
    """(pre-softplus argument, Delta) in the compute dtype, both (batch, dim, L)."""
    x = delta.to(dtype)
    if delta_bias is not None:
        x = x + delta_bias.to(dtype)[:, None]
    return x, (F.softplus(x) if softplus else x)


def _to_groups(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(batch, dim, L) -> contiguous (batch, G, L, J)."""
    batch, dim, length = x.shape
    return x.reshape(batch, groups, dim // groups, length).transpose(2, 3).contiguous()


def _from_groups(x: torch.Tensor) -> torch.Tensor:
    """(batch, G, L, J) -> (batch, dim, L)."""
    batch, groups, length, per_group = x.shape
    return x.transpose(2, 3).reshape(batch, groups * per_group, length)


def _time_major(BC: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, G, N, L) -> contiguous (batch, G, L, N) in the compute dtype."""
    return BC.to(dtype).transpose(2, 3).contiguous()


def _state_major(A: torch.Tensor, groups: int, dtype: torch.dtype) -> torch.Tensor:
    """(dim, N) -> (1, G, 1, N, J), broadcasting against the (batch, G, T, N, J) chunk layout."""
    dim, n_state = A.shape
    return A.to(dtype).reshape(groups, dim // groups, n_state).transpose(1, 2).contiguous()[None, :, None]


def auto_chunk(batch: int, dim: int, n_state: int, on_gpu: bool = False) -> int:
    """Power-of-two chunk length in [MIN_CHUNK, MAX_CHUNK] with about CHUNK_ELEMENTS per chunk tensor
    (GPU: up to GPU_MAX_CHUNK steps and GPU_CHUNK_ELEMENTS)."""
    target, longest = (GPU_CHUNK_ELEMENTS, GPU_MAX_CHUNK) if on_gpu else (CHUNK_ELEMENTS, MAX_CHUNK)
    steps = target // max(1, batch * dim * n_state)
    chunk = 1 << max(0, steps.bit_length() - 1)  # largest power of two <= steps
    return min(longest, max(MIN_CHUNK, chunk))


def _chunks(length: int, chunk: int):
    return [slice(t0, min(t0 + chunk, length)) for t0 in range(0, length, chunk)]


class _SelectiveScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk):
        dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
        batch, dim, length = u.shape
        groups, n_state = B.shape[1], A.shape[1]
        _, dt = _effective_delta(delta, delta_bias, delta_softplus, dtype)
        dt_g = _to_groups(dt, groups)  # (batch, G, L, J)
        dtu_g = dt_g * _to_groups(u.to(dtype), groups)
        B_g, C_g = _time_major(B, dtype), _time_major(C, dtype)  # (batch, G, L, N)
        A2_g = _state_major(A, groups, dtype) * LOG2_E

        spans = _chunks(length, chunk)
        starts = u.new_zeros((batch, groups, len(spans), n_state, dim // groups), dtype=dtype)
        y_g = u.new_empty((batch, groups, length, dim // groups), dtype=dtype)
        h = None
        for index, span in enumerate(spans):
            a = torch.exp2(dt_g[:, :, span, None, :] * A2_g)
            b = dtu_g[:, :, span, None, :] * B_g[:, :, span, :, None]
            if h is not None:
                starts[:, :, index] = h
                b[:, :, 0].addcmul_(a[:, :, 0], h)
            hs = _pair_scan_(a, b)
            y_g[:, :, span] = torch.matmul(C_g[:, :, span, None, :], hs).squeeze(3)
            h = hs[:, :, -1].clone()

        y = _from_groups(y_g)
        if D is not None:
            y = torch.addcmul(y, D.to(dtype)[:, None], u.to(dtype))
        out = y * F.silu(z.to(dtype)) if z is not None else y
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, starts)
        ctx.delta_softplus, ctx.chunk = delta_softplus, chunk
        return out.to(u.dtype)

    @staticmethod
    def backward(ctx, dout):
        u, delta, A, B, C, D, z, delta_bias, starts = ctx.saved_tensors
        dtype = starts.dtype
        batch, dim, length = u.shape
        groups, n_state = B.shape[1], A.shape[1]
        x, dt = _effective_delta(delta, delta_bias, ctx.delta_softplus, dtype)
        u32, dout = u.to(dtype), dout.to(dtype)
        if z is not None:
            z32 = z.to(dtype)
            g = dout * F.silu(z32)
        else:
            g = dout
        dt_g, u_g, g_g = (_to_groups(t, groups) for t in (dt, u32, g))
        dtu_g = dt_g * u_g
        B_g, C_g = _time_major(B, dtype), _time_major(C, dtype)  # (batch, G, L, N)
        A_g = _state_major(A, groups, dtype)
        A2_g = A_g * LOG2_E

        sum_lam_B = torch.empty_like(dt_g)  # sum_n lambda B, (batch, G, L, J)
        sum_lam_q_A = torch.empty_like(dt_g)  # sum_n lambda q A
        dB_g, dC_g = torch.empty_like(B_g), torch.empty_like(C_g)
        dA = dt_g.new_zeros((batch, groups, n_state, dim // groups))  # summed over batch at the end
        y_g = torch.empty_like(dt_g) if z is not None else None
        carry = None  # a_{t1} * lambda_{t1} at the first step t1 of the later chunk
        spans = _chunks(length, ctx.chunk)
        for index in reversed(range(len(spans))):
            span = spans[index]
            dt_c, dtu_c, g_c = dt_g[:, :, span, None, :], dtu_g[:, :, span, None, :], g_g[:, :, span, None, :]
            B_c, C_c = B_g[:, :, span, None, :], C_g[:, :, span, None, :]  # (batch, G, T, 1, N)
            steps = span.stop - span.start
            # a gets a spare step at the end so that a[1:] is the one-step-shifted decay of the adjoint scan
            a_ext = dt_g.new_empty((batch, groups, steps + 1, n_state, dim // groups))
            a_ext[:, :, steps] = 1.0
            a = a_ext[:, :, :steps]
            torch.exp2(dt_c * A2_g, out=a)
            b = dtu_c * B_c.transpose(3, 4)
            h0 = starts[:, :, index]
            if index > 0:
                b[:, :, 0].addcmul_(a[:, :, 0], h0)
            h = _pair_scan_(a.clone(), b)
            # q_t = a_t h_{t-1}: the decayed previous state (no division by a, which may underflow to 0)
            q = torch.empty_like(h)
            torch.mul(a[:, :, 1:], h[:, :, :-1], out=q[:, :, 1:])
            torch.mul(a[:, :, 0], h0, out=q[:, :, 0])
            c = g_c * C_c.transpose(3, 4)
            if carry is not None:
                c[:, :, -1] += carry
            lam = _pair_scan_(a_ext[:, :, 1:], c, reverse=True)  # overwrites a_ext[1:], not a_0
            carry = a[:, :, 0] * lam[:, :, 0]
            sum_lam_B[:, :, span] = torch.matmul(B_c, lam).squeeze(3)
            torch.sum(lam * dtu_c, dim=-1, out=dB_g[:, :, span])
            torch.sum(h * g_c, dim=-1, out=dC_g[:, :, span])
            if y_g is not None:
                y_g[:, :, span] = torch.matmul(C_c, h).squeeze(3)
            lam_q = q.mul_(lam)
            torch.sum(lam_q * A_g, dim=3, out=sum_lam_q_A[:, :, span])
            dA += (lam_q * dt_c).sum(dim=2)  # one reduced axis: torch is ~8x slower at sum(dim=(0, 2))

        sum_lam_B, sum_lam_q_A = _from_groups(sum_lam_B), _from_groups(sum_lam_q_A)
        du = dt * sum_lam_B
        d_dt = u32 * sum_lam_B + sum_lam_q_A
        dD = dz = None
        if D is not None:
            du = du + D.to(dtype)[:, None] * g
            dD = (g * u32).sum(dim=(0, 2)).to(D.dtype)
        if z is not None:
            y = _from_groups(y_g)
            if D is not None:
                y = y + D.to(dtype)[:, None] * u32
            sig = torch.sigmoid(z32)
            dz = (dout * y * sig * (1 + z32 * (1 - sig))).to(z.dtype)
        d_delta = d_dt * _softplus_grad(x) if ctx.delta_softplus else d_dt
        d_bias = d_delta.sum(dim=(0, 2)).to(delta_bias.dtype) if delta_bias is not None else None
        dB = dB_g.transpose(2, 3).to(B.dtype)
        dC = dC_g.transpose(2, 3).to(C.dtype)
        dA = dA.sum(0).transpose(1, 2).reshape(dim, n_state).to(A.dtype)
        return (du.to(u.dtype), d_delta.to(delta.dtype), dA, dB, dC, dD, dz, d_bias, None, None)


def selective_scan_torch(
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
    """Selective scan, chunked PyTorch implementation with a hand-written backward.

    u, delta, z: (batch, dim, L); A: (dim, N); B, C: (batch, G, N, L) or (batch, N, L); D, delta_bias: (dim,).
    Computes in fp32 (fp64 for fp64 inputs); returns (batch, dim, L) in u's dtype. Gradients come back in each
    input's dtype. Shapes are not validated here: ``kernels.selective_scan`` does that. ``chunk`` (steps per
    chunk) defaults to ``auto_chunk``; it changes speed and memory, not results beyond rounding.
    """
    if chunk is None:
        chunk = auto_chunk(u.shape[0], u.shape[1], A.shape[1], on_gpu=u.is_cuda)
    if chunk < 1:
        raise ValueError(f"selective_scan_torch: chunk must be a positive number of steps, got {chunk}")
    if B.dim() == 3:  # (batch, N, L) is one group; autograd squeezes the gradients back
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    return _SelectiveScan.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), int(chunk))
