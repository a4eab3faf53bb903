"""The Triton selective scan (kernels/triton_scan.py) against the float64 loop, forward and every gradient.

Without a GPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set by tests/conftest.py before
triton is imported), which executes the same kernel code on CPU tensors: tiny shapes only. On a GPU the
same tests run compiled.
"""

from __future__ import annotations

import importlib
import math
import os
from types import SimpleNamespace

import pytest
import torch

from kernels import selective_scan_ref
from kernels.directions import selective_scan_directions, selective_scan_directions_unfused
from mambaad_cli.model.scans import direction_tables

triton = pytest.importorskip("triton")
import triton.language as tl  # noqa: E402

from kernels.triton_scan import _delta, _softplus_grad  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


@pytest.fixture(scope="module")
def ts():
    if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no GPU and TRITON_INTERPRET is not set (tests/conftest.py sets it before triton loads)")
    return importlib.import_module("kernels.triton_scan")


def make(batch, dim, length, n_state, groups, z=False, bias=True, D=True, seed=0, delta_scale=0.5, a_max=2.0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return {
        "u": r(batch, dim, length),
        "delta": r(batch, dim, length) * delta_scale,
        "A": -(torch.rand(dim, n_state, generator=g, dtype=torch.float64) * a_max + 0.05),
        "B": r(batch, groups, n_state, length),
        "C": r(batch, groups, n_state, length),
        "D": r(dim) if D else None,
        "z": r(batch, dim, length) if z else None,
        "delta_bias": r(dim) * 0.3 if bias else None,
    }


def run_both(ts, inputs, softplus=True, chunk=16, dtype=torch.float32):
    ref_in = {k: (v.clone().requires_grad_() if v is not None else None) for k, v in inputs.items()}
    test_in = {k: (v.to(DEVICE, dtype if k in ("u", "delta", "B", "C", "z") else torch.float32)
                   .requires_grad_() if v is not None else None) for k, v in inputs.items()}
    ref = selective_scan_ref(**ref_in, delta_softplus=softplus)
    out = ts.selective_scan_triton(**test_in, delta_softplus=softplus, chunk=chunk)
    dout = torch.randn(ref.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    ref.backward(dout)
    out.backward(dout.to(DEVICE, out.dtype))
    return ref_in, test_in, ref, out


def rel(a, b):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


CASES = {
    # batch, dim, L, N, G, z, bias, D, softplus, chunk
    "L not a multiple of the chunk, 3 chunks, z": (2, 4, 37, 3, 2, True, True, True, True, 16),
    "L = 1": (1, 3, 1, 2, 1, False, True, True, True, 16),
    "N = 1, G = 1": (1, 4, 20, 1, 1, False, True, True, True, 16),
    "G = D": (1, 4, 18, 2, 4, True, True, True, True, 16),
    "no D, bias or softplus": (2, 4, 16, 4, 2, False, False, False, False, 16),
    "one chunk, non-power-of-two D": (1, 5, 9, 4, 1, False, True, True, True, 16),
    # N a power of two, for the lane kernels' state split (MAMBAAD_SCAN_LANE_SPLIT); 6 channels: a partial
    # channel block
    "N = 8, 6 channels, 3 chunks": (2, 6, 37, 8, 2, False, True, True, True, 16),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_fp32_forward_and_every_gradient_match_float64_loop(ts, case):
    check_every_gradient(ts, case)


TUNINGS = {  # knob settings the autotuner can pick, each of which must give the same result
    # the tiles kernels (SEG=0; GPUs run their backward on fp32 inputs)
    "tiles: the adjoint as a reverse scan (FLIP=0)": {"SEG": "0", "FLIP": "0"},
    "tiles: loads not ahead (PREFETCH=0)": {"SEG": "0", "PREFETCH": "0"},
    "tiles: rows one state ahead (PREFETCH=1)": {"SEG": "0", "PREFETCH": "1"},
    "tiles: one scan call for h and lambda (FLIP=2)": {"SEG": "0", "FLIP": "2"},
    "tiles: both": {"SEG": "0", "PREFETCH": "1", "FLIP": "2"},
    # the segment kernels (kernels/triton_seg.py): 4 steps per lane by default, so 4 segments per chunk of 16
    "segments: loads not ahead": {"SEG_PREFETCH": "0"},
    # PREFETCH=2 asks for the next state's rows in L1 on NVIDIA GPUs; here the loads stay in their own state
    "segments: rows asked for ahead (PREFETCH=2)": {"SEG_PREFETCH": "2"},
    # PREFETCH=3: 1's loads, and on NVIDIA GPUs the rows two states ahead into L1 as well
    "segments: rows one state ahead and asked for two ahead (PREFETCH=3)": {"SEG_PREFETCH": "3"},
    "segments of 8 steps": {"SEG_E": "8"},
    "one segment per chunk": {"SEG_E": "16"},
    # dB / dC by a reduce-scatter over the lane rows (triton_seg._red_scatter_rows; tl.atomic_add here)
    "segments: reduce-scatter of dB / dC": {"SEG_RED": "3"},
    "segments of 8 steps, reduce-scatter": {"SEG_E": "8", "SEG_RED": "3"},
    # the segment backward's grid: channel blocks first, or last (the default at up to two chunks)
    "segments: channel blocks first in the grid": {"SEG_ORDER": "0"},
    "segments: channel blocks last in the grid": {"SEG_ORDER": "1"},
    # the lane forward (kernels/triton_lane.py, MAMBAAD_SCAN_LANE=1): blocks of 4 steps here, 4 per chunk
    # of 16, so the checkpoints are stored every 4th block; then blocks of 16, one per chunk
    "lane forward": {"LANE": "1"},
    "lane forward, 16-step blocks": {"LANE": "1", "SEG_E": "16"},
    "lane forward, 8-step blocks": {"LANE": "1", "SEG_E": "8"},
    # the lane backward (MAMBAAD_SCAN_LANE_BWD=1; the gated case runs the segment one): blocks of 4 steps
    # here, of 8 and 16, and each state's B / C rows loaded an iteration ahead (PREFETCH=1)
    "lane backward": {"LANE_BWD": "1", "SEG_PREFETCH": "0"},
    # the 16-bit deltas' softplus (_softplus_fast) forced on these fp32 inputs, so that the fp32 bounds check
    # it: on the tiles kernels, and on the lane forward and backward
    "fast softplus": {"SOFTPLUS": "fast"},
    "fast softplus, lane forward and backward": {"SOFTPLUS": "fast", "LANE": "1", "LANE_BWD": "1"},
    "lane backward, rows ahead": {"LANE_BWD": "1", "SEG_PREFETCH": "1"},
    # PREFETCH=4: the rows and each state's A, start state and adjoint an iteration ahead
    "lane backward, rows and state values ahead": {"LANE_BWD": "1", "SEG_PREFETCH": "4"},
    # PREFETCH=5 (the default since v1.27): as 4, with the rows carried in their own dtype to the iteration
    # that converts them
    "lane backward, rows ahead in their own dtype": {"LANE_BWD": "1", "SEG_PREFETCH": "5"},
    "lane backward, states over 2 lanes, rows ahead in their own dtype, 16-step blocks": {
        "LANE_BWD": "1", "LANE_BWD_SPLIT": "2", "SEG_PREFETCH": "5", "SEG_E": "16"},
    "lane backward, 8-step blocks": {"LANE_BWD": "1", "SEG_E": "8"},
    "lane forward and backward, 16-step blocks": {"LANE": "1", "LANE_BWD": "1", "SEG_E": "16"},
    # each channel's states over 2 or 4 lanes (triton_lane._lane_channels; N / 2 or N / 4 states per lane,
    # 1 where N is not a power of two, at most N lanes)
    "lane forward and backward, states over 2 lanes": {"LANE": "1", "LANE_BWD": "1", "LANE_SPLIT": "2",
                                                        "LANE_BWD_SPLIT": "2"},
    "lane forward and backward, states over 4 lanes, rows ahead": {
        "LANE": "1", "LANE_BWD": "1", "LANE_SPLIT": "4", "LANE_BWD_SPLIT": "4", "SEG_PREFETCH": "1"},
    "lane forward and backward, states over 2 lanes, 16-step blocks": {
        "LANE": "1", "LANE_BWD": "1", "LANE_SPLIT": "2", "LANE_BWD_SPLIT": "2", "SEG_E": "16"},
    # each of a channel's lanes loads and writes its share of a block's steps (LANE_SHARES=1; 4-step blocks
    # here: 2 steps a lane over 2 lanes; 16-step blocks over 4 lanes: 4)
    "lane forward, states over 2 lanes, step shares": {"LANE": "1", "LANE_SPLIT": "2", "LANE_SHARES": "1"},
    "lane forward, states over 4 lanes, step shares, 16-step blocks": {
        "LANE": "1", "LANE_SPLIT": "4", "LANE_SHARES": "1", "SEG_E": "16"},
    # PREFETCH=8: each block loads the next one's u and delta into registers (the first block's before the
    # loop; the last one's loads fall past L, masked)
    "lane forward, u and delta loaded a block ahead": {"LANE": "1", "LANE_PREFETCH": "8"},
    "lane forward, states over 4 lanes, step shares, u and delta a block ahead, 16-step blocks": {
        "LANE": "1", "LANE_SPLIT": "4", "LANE_SHARES": "1", "LANE_PREFETCH": "8", "SEG_E": "16"},
    # the backward's pass 2 likewise (LANE_BWD_SHARES=1), with the rows ahead in their own dtype
    "lane backward, states over 2 lanes, step shares": {
        "LANE_BWD": "1", "LANE_BWD_SPLIT": "2", "LANE_BWD_SHARES": "1", "SEG_PREFETCH": "5"},
    "lane forward and backward, states over 4 lanes, step shares, 16-step blocks": {
        "LANE": "1", "LANE_BWD": "1", "LANE_SPLIT": "4", "LANE_BWD_SPLIT": "4", "LANE_SHARES": "1",
        "LANE_BWD_SHARES": "1", "SEG_PREFETCH": "5", "SEG_E": "16"},
    # (16-step blocks: a chunk of 16 is one block, its start states the checkpoints, as on GPUs)
    "lane backward, states over 2 lanes, rows and state values ahead, 16-step blocks": {
        "LANE_BWD": "1", "LANE_BWD_SPLIT": "2", "SEG_PREFETCH": "4", "SEG_E": "16"},
}
BF16_TUNINGS = {"as shipped": {}, "B / C cast to fp32 before the segment kernels": {"BC_FP32": "1"},
                "the lane forward": {"LANE": "1"}, "the lane backward": {"LANE_BWD": "1"}}


@pytest.mark.parametrize("tuning", list(TUNINGS), ids=list(TUNINGS))
@pytest.mark.parametrize("case", ["L not a multiple of the chunk, 3 chunks, z", "N = 1, G = 1", "G = D"])
def test_every_tuning_of_the_state_loop_matches_too(ts, monkeypatch, tuning, case):
    # N = 3, 1 and 2: the last state's look-ahead loads its own values again
    for name, value in TUNINGS[tuning].items():
        monkeypatch.setenv(f"MAMBAAD_SCAN_{name}", value)
    check_every_gradient(ts, case)


# the state split's tunings, and two without it (the interpreter is slow: each case costs 5-30 s); the
# three cases above run the lane backward only at N = 1, where no state is ahead of another
LANE_TUNINGS = [t for t in TUNINGS if "lanes" in t] + ["lane forward and backward, 16-step blocks",
                                                        "lane backward, rows and state values ahead",
                                                        "lane backward, rows ahead in their own dtype"]


@pytest.mark.parametrize("tuning", LANE_TUNINGS, ids=LANE_TUNINGS)
def test_lane_kernels_at_eight_states(ts, monkeypatch, tuning):
    """The lane kernels where N is a power of two (so the state split applies: 4 or 2 states per lane), over
    a partial channel block. The split must reach the kernels."""
    for name, value in TUNINGS[tuning].items():
        monkeypatch.setenv(f"MAMBAAD_SCAN_{name}", value)
    splits = {}  # kernel index: lanes per channel
    launch = ts._launch

    def spy(index, shape, args, consts):
        if index in (6, 7):
            splits[index] = ts.lane_split(shape, consts["N"], 0, backward=index == 7)
        launch(index, shape, args, consts)

    monkeypatch.setattr(ts, "_launch", spy)
    check_every_gradient(ts, "N = 8, 6 channels, 3 chunks")
    knobs = TUNINGS[tuning]
    # auto, the default: 1 in the interpreter and for these fp32 inputs
    if "LANE_BWD" in knobs:
        assert splits[7] == int(knobs.get("LANE_BWD_SPLIT", "1"))
    if "LANE" in knobs and DEVICE == "cpu":  # a GPU runs the tiles forward at this size (no segment config)
        assert 6 in splits
    if 6 in splits:
        assert splits[6] == int(knobs.get("LANE_SPLIT", "1"))


# two channel sets a lane (MAMBAAD_SCAN_LANE_PAIRS=1, the forward): with and without step shares
PAIRS_TUNINGS = {
    "4 lanes, step shares": {"LANE": "1", "LANE_SPLIT": "4", "LANE_SHARES": "1", "LANE_PAIRS": "1"},
    "2 lanes, 16-step blocks": {"LANE": "1", "LANE_SPLIT": "2", "LANE_SHARES": "0", "LANE_PAIRS": "1",
                                "SEG_E": "16"},
}
# (added after the tests parametrised over every case: this one only for the pairs, at its interpreter cost)
CASES["N = 8, 14 channels in one group, z"] = (2, 14, 37, 8, 1, True, True, True, True, 16)


@pytest.mark.parametrize("tuning", list(PAIRS_TUNINGS), ids=list(PAIRS_TUNINGS))
def test_lane_forward_with_two_channel_sets_a_lane(ts, monkeypatch, tuning):
    """Each lane serves two channels (a program two sets of BD // split, here 4 and 4): 14 channels make the
    second program's second set partial (channels 12 and 13 of 12-15), over 37 steps (the last block
    masked), with z. The pairs must reach the kernel."""
    for name, value in PAIRS_TUNINGS[tuning].items():
        monkeypatch.setenv(f"MAMBAAD_SCAN_{name}", value)
    picked = spy_results(ts, monkeypatch, "lane_pairs")
    check_every_gradient(ts, "N = 8, 14 channels in one group, z")
    if DEVICE == "cpu":
        assert picked and all(picked)


# B / C N-major in memory ((batch, G, L, N) underneath, as a product can write them): the lane forward reads
# each step's states of a lane in one vector load (NMAJOR, triton_lane._step_rows)
N_MAJOR_TUNINGS = {
    "4 lanes, step shares, 8-step blocks": {"LANE": "1", "LANE_SPLIT": "4", "LANE_SHARES": "1", "SEG_E": "8"},
    "2 lanes, 16-step blocks": {"LANE": "1", "LANE_SPLIT": "2", "SEG_E": "16"},
    "4 lanes, two channel sets a lane": {"LANE": "1", "LANE_SPLIT": "4", "LANE_SHARES": "1",
                                         "LANE_PAIRS": "1"},
    "1 lane, 3 states (padded to 4)": {"LANE": "1"},
}


def n_major(t: torch.Tensor) -> torch.Tensor:
    # the same (batch, G, N, L) values with state stride 1 and L stride N
    return t.transpose(2, 3).contiguous().transpose(2, 3)


@pytest.mark.parametrize("tuning", list(N_MAJOR_TUNINGS), ids=list(N_MAJOR_TUNINGS))
def test_lane_forward_reads_n_major_b_and_c(ts, monkeypatch, tuning):
    """Against the float64 loop, and bitwise against the same inputs L-major (the same sums in the same
    order): 14 channels of one group over 37 steps (the last block masked), with z; 3 states where the lane
    holds 4 (the padding state masked). The layout must reach the kernel as NMAJOR."""
    for name, value in N_MAJOR_TUNINGS[tuning].items():
        monkeypatch.setenv(f"MAMBAAD_SCAN_{name}", value)
    n = 3 if "3 states" in tuning else 8
    inputs = make(2, 14, 37, n, 1, z=True, seed=37)
    picked = spy_forward_kernel(monkeypatch, "NMAJOR")
    _, _, ref, plain = run_both(ts, inputs)
    nmajor = {**inputs, "B": n_major(inputs["B"]), "C": n_major(inputs["C"])}
    ref_in, test_in, ref, out = run_both(ts, nmajor)
    assert test_in["B"].stride(2) == 1 and test_in["C"].stride(3) == n
    if DEVICE == "cpu":
        assert picked == [False, True]  # the forward kernel's NMAJOR: L-major, then N-major
    assert rel(out, ref) < 1e-5
    assert torch.equal(out, plain) or DEVICE == "cuda"
    for name in NAMES:
        assert rel(test_in[name].grad, ref_in[name].grad) < 1e-4, name


def spy_forward_kernel(monkeypatch, name: str) -> list:
    """The constexpr ``name`` of each launch of the lane forward kernel from now on: the interpreter's
    launches, which take the kernel from kernels.triton_lane at each call (a GPU's go through the autotuner,
    which wraps the kernel once a process: nothing is recorded there)."""
    if DEVICE != "cpu":
        return []
    lane = importlib.import_module("kernels.triton_lane")
    kernel, seen = lane._scan_fwd_lane_kernel, []

    class Spy:
        def __getitem__(self, grid):
            def launch(*args, **consts):
                seen.append(consts.get(name))
                return kernel[grid](*args, **consts)
            return launch

    monkeypatch.setattr(lane, "_scan_fwd_lane_kernel", Spy())
    return seen


@pytest.mark.parametrize("lane", ["segment kernels", "lane kernels"])
def test_kernels_but_the_lane_forward_get_l_major_copies_of_n_major_rows(ts, monkeypatch, lane):
    """The backwards and the segment forward read B / C in rows along L: N-major inputs reach them as
    L-major copies (the lane forward reads them as given), with the same results."""
    if lane == "lane kernels":
        monkeypatch.setenv("MAMBAAD_SCAN_LANE", "1")
        monkeypatch.setenv("MAMBAAD_SCAN_LANE_BWD", "1")
    inputs = make(1, 6, 21, 4, 2, seed=21)
    nmajor = {**inputs, "B": n_major(inputs["B"]), "C": n_major(inputs["C"])}
    seen = []  # (kernel, B's and C's state and L strides as the kernel receives them)
    launch = ts._launch

    def spy(index, shape, args, consts):
        seen.append((index, args[3].stride()[2:], args[4].stride()[2:]))
        return launch(index, shape, args, consts)

    monkeypatch.setattr(ts, "_launch", spy)
    ref_in, test_in, ref, out = run_both(ts, nmajor)
    assert rel(out, ref) < 1e-5
    for name in NAMES:
        if test_in[name] is not None:
            assert rel(test_in[name].grad, ref_in[name].grad) < 1e-4, name
    if DEVICE == "cpu":  # (a GPU runs the tiles kernels at this size)
        kernels = [index for index, _, _ in seen]
        assert kernels == ([6, 7] if lane == "lane kernels" else [4, 5])
    for index, b_strides, c_strides in seen:
        want = (1, 4) if index == 6 else (21, 1)
        assert b_strides == c_strides == want, index


def test_n_major_needs_unit_state_stride_and_l_stride_n(ts):
    B = torch.zeros(2, 3, 8, 5)
    assert not ts.n_major(B, B)  # L-major
    assert ts.n_major(n_major(B), n_major(B))
    assert not ts.n_major(n_major(B), B)  # both or neither
    padded = torch.zeros(2, 3, 5, 16)[..., :8].transpose(2, 3)  # state stride 1, L stride 16, not N = 8
    assert padded.stride(2) == 1 and not ts.n_major(padded, padded)
    one = torch.zeros(2, 3, 1, 5)
    assert not ts.n_major(n_major(one), n_major(one))  # N = 1: nothing to vectorise


def test_lane_pairs_knob(ts, monkeypatch):
    monkeypatch.setattr(ts, "interpreting", lambda: False)
    monkeypatch.setattr(ts, "_sm_count", lambda index: 132)
    many = (2048, 8, 64, 4096)  # 64 x 16 K channels: 62 warps an SM paired at 4 lanes
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_PAIRS", "0")
    assert [ts.lane_pairs(split, many, 0, 4) for split in (1, 2, 4)] == [False, False, False]
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_PAIRS", "1")  # only over split states, even on a short grid
    assert [ts.lane_pairs(split, (1, 1, 1, 64), 0, 4) for split in (1, 2, 4)] == [False, True, True]
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_PAIRS", "2")
    with pytest.raises(ValueError, match="MAMBAAD_SCAN_LANE_PAIRS must be auto, 0 or 1"):
        ts.lane_pairs(2, many, 0, 4)


@pytest.mark.parametrize("dim,length,batch,fp32,bf16", [
    # paired warps an SM on 132 SMs at 4 lanes a channel (MambaAD's shapes, 8 directions folded into dim)
    (1024, 4096, 16, False, False),  # 7.8: fp32 lost 14 %
    (2048, 1024, 16, True, False),  # 15.5: fp32 gained 12 %, bf16 level
    (4096, 256, 16, True, True),  # 31
    (8192, 64, 16, True, True),  # 62
    (1024, 4096, 64, True, True),  # 31: fp32 gained 11 %, bf16 2 %
])
def test_lane_pairs_auto_where_the_halved_grid_keeps_the_warps(ts, monkeypatch, dim, length, batch, fp32,
                                                                bf16):
    monkeypatch.delenv("MAMBAAD_SCAN_LANE_PAIRS", raising=False)  # auto, the default
    monkeypatch.setattr(ts, "interpreting", lambda: False)
    monkeypatch.setattr(ts, "_sm_count", lambda index: 132)
    shape = (dim // 8, 8, batch, length)
    assert ts.lane_pairs(4, shape, 0, 4) is fp32
    assert ts.lane_pairs(4, shape, 0, 2) is bf16
    # never at 2 lanes (its uncapped configs, untimed) or in the interpreter
    assert not ts.lane_pairs(2, shape, 0, 4)
    monkeypatch.setattr(ts, "interpreting", lambda: True)
    assert not ts.lane_pairs(4, shape, 0, 4)


def test_lane_shares_auto_rules(ts, monkeypatch):
    # auto (the default) on a GPU of 132 SMs: the forward's step shares where 2 lanes a channel leave at most
    # SHORT_WAVE_WARPS_PER_SM one-warp programs an SM, and only where a channel has more than one lane
    monkeypatch.setattr(ts, "interpreting", lambda: False)
    monkeypatch.setattr(ts, "_sm_count", lambda index: 132)
    # (at 4 lanes, the default split since v1.34, everywhere)
    long, short = (128, 8, 16, 4096), (256, 8, 16, 1024)  # 7.8 and 15.5 warps an SM over 2 lanes
    assert [ts.lane_shares(split, long, 0) for split in (1, 2, 4)] == [False, True, True]
    assert [ts.lane_shares(split, short, 0) for split in (1, 2, 4)] == [False, False, True]
    assert ts.lane_shares(2, (128, 8, 17, 4096), 0) is False  # 8.2 warps an SM
    # the backward's (since v1.35): wherever it splits a channel's states, at any size; 0 turns them off
    assert [ts.lane_shares(split, short, 0, backward=True) for split in (1, 2, 4)] == [False, True, True]
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_BWD_SHARES", "0")
    assert [ts.lane_shares(split, long, 0, backward=True) for split in (2, 4)] == [False, False]
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_BWD_SHARES", "1")
    assert [ts.lane_shares(split, long, 0, backward=True) for split in (1, 2, 4)] == [False, True, True]
    # in the interpreter auto keeps the backward without them (the tests set the knob for each way)
    monkeypatch.setattr(ts, "interpreting", lambda: True)
    monkeypatch.delenv("MAMBAAD_SCAN_LANE_BWD_SHARES")
    assert ts.lane_shares(2, long, 0, backward=True) is False
    monkeypatch.setattr(ts, "interpreting", lambda: False)
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_SHARES", "1")
    assert [ts.lane_shares(split, short, 0) for split in (1, 2)] == [False, True]
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_SHARES", "0")
    assert [ts.lane_shares(split, long, 0) for split in (2, 4)] == [False, False]
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_SHARES", "yes")
    with pytest.raises(ValueError, match="MAMBAAD_SCAN_LANE_SHARES must be auto, 0 or 1"):
        ts.lane_shares(2, long, 0)


def test_lane_split_knob(ts, monkeypatch):
    shape = (4, 2, 1, 64)
    for value, n_state, want in (("2", 16, 2), ("4", 16, 4), ("4", 2, 2), ("2", 3, 1), ("1", 16, 1)):
        monkeypatch.setenv("MAMBAAD_SCAN_LANE_SPLIT", value)
        assert ts.lane_split(shape, n_state, 0, backward=False) == want
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_BWD_SPLIT", "3")
    with pytest.raises(ValueError, match="MAMBAAD_SCAN_LANE_BWD_SPLIT must be auto or one of 1, 2, 4"):
        ts.lane_split(shape, 16, 0, backward=True)
    # auto (the default) on a GPU of 132 SMs: the forward in 2 wherever N allows, the backward as far as
    # lane_by_shape's 6 warps per SM need
    monkeypatch.delenv("MAMBAAD_SCAN_LANE_SPLIT")
    monkeypatch.delenv("MAMBAAD_SCAN_LANE_BWD_SPLIT")
    monkeypatch.setattr(ts, "interpreting", lambda: False)
    monkeypatch.setattr(ts, "_sm_count", lambda index: 132)
    # (the forward in 4 since v1.34, as far as N allows)
    for shape, n_state, fwd, bwd in (((128, 8, 16, 4096), 16, 4, 2),  # 3.9 warps per SM in one lane, 7.8 in 2
                                     ((64, 8, 16, 4096), 16, 4, 4),  # 1.9, 3.9, 7.8
                                     ((256, 8, 16, 1024), 16, 4, 1),  # 7.8 in one lane
                                     ((1024, 8, 16, 64), 16, 4, 1),  # 31 warps per SM in one lane
                                     ((1024, 8, 16, 32), 16, 4, 1),  # too short for the lane kernels
                                     ((128, 8, 16, 4096), 2, 2, 2),
                                     ((128, 8, 16, 4096), 3, 1, 1), ((128, 8, 16, 4096), 1, 1, 1)):
        for size in (2, 4):  # fp32 inputs as 16-bit ones since v1.26 (one lane per channel until then)
            assert ts.lane_split(shape, n_state, 0, backward=False, element_size=size) == fwd, shape
            assert ts.lane_split(shape, n_state, 0, backward=True, element_size=size) == bwd, shape
    # at 64 steps the backward splits where lane_by_shape needs it, fp32 too since v1.38 (its LANE_MIN_STEPS
    # was 128: one lane); 32 steps are too short in both
    assert ts.lane_split((256, 8, 16, 64), 16, 0, backward=True, element_size=2) == 1
    for size in (2, 4):
        assert ts.lane_split((128, 8, 16, 64), 16, 0, backward=True, element_size=size) == 2
        assert ts.lane_split((128, 8, 16, 32), 16, 0, backward=True, element_size=size) == 1


def check_every_gradient(ts, case):
    batch, dim, length, n, groups, z, bias, D, softplus, chunk = CASES[case]
    inputs = make(batch, dim, length, n, groups, z=z, bias=bias, D=D, seed=length)
    ref_in, test_in, ref, out = run_both(ts, inputs, softplus, chunk)
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert rel(out, ref) < 1e-5
    for name in NAMES:
        if test_in[name] is None:
            continue
        r, t = ref_in[name].grad, test_in[name].grad
        assert t.shape == r.shape and t.dtype == test_in[name].dtype
        if r.abs().max() == 0:  # e.g. dA at L = 1 (h_{-1} = 0): zeros, up to fp32 rounding on a GPU (the
            # other gradients here are of order 1; a wrong h_{-1} gives values of order 0.1)
            assert t.abs().max() < 1e-6, name
        else:
            assert rel(t, r) < 1e-4, name


def test_extreme_deltas_underflow_to_zero_without_nan(ts):
    # delta up to ~10 and |A| up to 16: exp(delta * A) underflows; the chunk carries must stay exact
    inputs = make(1, 4, 40, 4, 2, seed=3, delta_scale=4.0, a_max=16.0)
    inputs["delta"] = inputs["delta"].abs() + 2.0
    ref_in, test_in, ref, out = run_both(ts, inputs, softplus=True, chunk=16)
    assert torch.isfinite(out).all()
    assert rel(out, ref) < 1e-5
    for name in ("u", "delta", "A", "B", "C", "delta_bias"):
        assert torch.isfinite(test_in[name].grad).all(), name
        assert rel(test_in[name].grad, ref_in[name].grad) < 1e-4, name


@pytest.mark.parametrize("tuning", list(BF16_TUNINGS), ids=list(BF16_TUNINGS))
def test_bf16_inputs_keep_fp32_state(ts, monkeypatch, tuning):
    for name, value in BF16_TUNINGS[tuning].items():
        monkeypatch.setenv(f"MAMBAAD_SCAN_{name}", value)
    launched = []  # (kernel, the dtype of B as it receives it: argument 3)
    launch = ts._launch

    def spy(index, shape, args, consts):
        launched.append((index, args[3].dtype))
        launch(index, shape, args, consts)

    monkeypatch.setattr(ts, "_launch", spy)
    lane_bwd = "LANE_BWD" in BF16_TUNINGS[tuning]
    inputs = make(1, 4, 24, 4, 2, z=not lane_bwd, seed=5)  # the lane backward has no gate z
    # round the inputs to bf16 first, so that both sides see the same numbers
    for k in ("u", "delta", "B", "C", "z"):
        if inputs[k] is not None:
            inputs[k] = inputs[k].to(torch.bfloat16).double()
    ref_in, test_in, ref, out = run_both(ts, inputs, chunk=16, dtype=torch.bfloat16)
    seg = [dtype for index, dtype in launched if index in (4, 5, 6, 7)]  # the segment (and lane) kernels
    assert seg == [torch.float32 if "BC_FP32" in BF16_TUNINGS[tuning] else torch.bfloat16] * len(seg)
    assert ("LANE" in BF16_TUNINGS[tuning]) == (6 in [index for index, _ in launched]) or DEVICE == "cuda"
    assert lane_bwd == (7 in [index for index, _ in launched])
    assert len(seg) == 2 or DEVICE == "cuda"  # a GPU runs the tiles kernels at this size (no segment config)
    assert out.dtype == torch.bfloat16 and test_in["u"].grad.dtype == torch.bfloat16
    assert test_in["B"].grad.dtype == test_in["C"].grad.dtype == torch.bfloat16
    assert rel(out, ref) < 1e-2  # only the bf16 rounding of the output
    for name in NAMES:
        if inputs[name] is not None:
            assert rel(test_in[name].grad, ref_in[name].grad) < 2e-2, name


@pytest.mark.parametrize("lane", ["0", "1"])
def test_inference_skips_checkpoints_and_matches_training_forward(ts, monkeypatch, lane):
    monkeypatch.setenv("MAMBAAD_SCAN_LANE", lane)
    inputs = make(1, 4, 33, 2, 1, seed=9)
    args = {k: (v.float().to(DEVICE) if v is not None else None) for k, v in inputs.items()}
    with torch.no_grad():
        infer = ts.selective_scan_triton(**args, delta_softplus=True, chunk=16)
    train_args = {k: (v.clone().requires_grad_() if v is not None else None) for k, v in args.items()}
    train = ts.selective_scan_triton(**train_args, delta_softplus=True, chunk=16)
    # In the interpreter both run numpy's same operations: the same bits. A GPU autotunes the inference
    # forward apart (its key holds STORE_CKPT), and its compiled kernel may round differently: within a few
    # float32 ulps (up to 4.8e-7 on an H200 in session 22, 27 of 132 elements),
    # far below what a wrong state gives.
    exact = DEVICE == "cpu"
    torch.testing.assert_close(infer, train.detach(), rtol=0 if exact else 1e-5, atol=0 if exact else 1e-6)


@pytest.mark.parametrize("case", ["L not a multiple of the chunk, 3 chunks, z", "no D, bias or softplus"])
def test_tiles_backward_reads_the_lane_forwards_checkpoints(ts, monkeypatch, case):
    """GPUs pair the lane forward (auto, the default) with the tiles backward for fp32 inputs at 128-step
    chunks (segment_backward_on_gpu); the interpreter always takes the segment backward, so here the segment
    kernels are refused to the backward only."""
    monkeypatch.setenv("MAMBAAD_SCAN_LANE", "1")
    monkeypatch.setattr(ts, "seg_enabled", lambda T, dg, backward=False: not backward)
    launched = []
    launch = ts._launch
    monkeypatch.setattr(ts, "_launch", lambda index, *a: (launched.append(index), launch(index, *a))[1])
    check_every_gradient(ts, case)
    assert launched == [6, 1]


@pytest.mark.parametrize(("lane_bwd", "gated", "every", "T"),
                         [("1", False, "16", 16), ("1", False, "8", 8), ("1", True, "16", 32),
                          ("0", False, "16", 32)])
def test_block_checkpoints_only_where_the_lane_backward_runs(ts, monkeypatch, lane_bwd, gated, every, T):
    """MAMBAAD_SCAN_LANE_CKPT=16 (or 8): the training forward keeps its state every 16 (8) steps instead of
    every chunk (32 here) where the lane backward will read them (not with the gate z, which it does not
    take), and every gradient still matches the float64 loop (at 8 with one 8-step block per chunk)."""
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_CKPT", every)
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_BWD", lane_bwd)
    monkeypatch.setenv("MAMBAAD_SCAN_SEG_E", "8")
    launched = []
    launch = ts._launch

    def spy(index, shape, args, consts):
        launched.append((index, consts["T"], args[9].shape))  # the checkpoints: argument 9 of both
        launch(index, shape, args, consts)

    monkeypatch.setattr(ts, "_launch", spy)
    inputs = make(1, 4, 70, 3, 2, z=gated, seed=11)
    ref_in, test_in, ref, out = run_both(ts, inputs, chunk=32)
    (fwd, fwd_T, ckpt), (bwd, bwd_T, _) = launched
    assert fwd_T == bwd_T == T and ckpt[2] == -(-70 // T)  # (batch, dim, chunks, N)
    # otherwise the segment backward; on GPUs the tiles one with z (segment_backward_on_gpu) or where no
    # segment config fits these 2 channels per group
    seg = DEVICE != "cuda" or (not gated and ts.seg_enabled(T, 2, backward=True))
    assert bwd == (7 if lane_bwd == "1" and not gated else 5 if seg else 1)
    assert rel(out, ref) < 1e-5
    for name in NAMES:
        if inputs[name] is not None:
            assert rel(test_in[name].grad, ref_in[name].grad) < 1e-4, name


@pytest.mark.parametrize("value", ["4", "12", "-16", "x"])
def test_lane_checkpoint_interval_must_hold_whole_blocks(ts, monkeypatch, value):
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_CKPT", value)
    with pytest.raises(ValueError, match="MAMBAAD_SCAN_LANE_CKPT must be 0 or a multiple of 8"):
        ts._lane_checkpoint_steps()


def test_lane_configs_keep_blocks_that_tile_the_chunk(ts):
    """Both lane autotuners drop configs whose blocks do not divide the chunk (8-step checkpoints: 16-step
    blocks would run no block at all), and say so where none is left."""
    import triton

    configs = [triton.Config({"E": e, "PREFETCH": 5}) for e in (16, 8)]
    kept = ts._lane_blocks_prune(configs, {}, T=8)
    assert [c.kwargs["E"] for c in kept] == [8]
    assert len(ts._lane_blocks_prune(configs, {}, T=32)) == 2
    with pytest.raises(ValueError, match="divide 8-step chunks"):
        ts._lane_blocks_prune(configs[:1], {}, T=8)


def spy_results(ts, monkeypatch, name: str) -> list:
    """What ts.<name> returns from now on, call by call (the function still runs)."""
    results = []
    fn = getattr(ts, name)
    monkeypatch.setattr(ts, name, lambda *a, **k: results.append(fn(*a, **k)) or results[-1])
    return results


def spy_launches(ts, monkeypatch, consts: list | None = None) -> list[int]:
    """The kernel indices ts._launch runs from now on (0 / 1 tiles, 6 / 7 lane forward / backward); with
    consts, each launch's constexpr dict appended to it too."""
    launched = []
    launch = ts._launch

    def spy(index, shape, args, kernel_consts):
        launched.append(index)
        if consts is not None:
            consts.append(kernel_consts)
        return launch(index, shape, args, kernel_consts)
    monkeypatch.setattr(ts, "_launch", spy)
    return launched


# (kernel, lanes per channel, channels): the fused path on the lane kernels (the default since v1.28), their
# state split, and v1's tiles kernels (MAMBAAD_SCAN_FUSED_KERNEL=tiles). 32 channels and whole chunks: the
# lane kernels' writes through the table unmasked (EVEN_D and EVEN_L), each of a channel's rows its share
# (over 4 lanes as the fp32 forward at one short wave of programs takes it, v1.33). every:
# MAMBAAD_SCAN_LANE_CKPT (8: one 8-step block a chunk, the backward's pass 1 skipped). shares:
# MAMBAAD_SCAN_LANE_SHARES and LANE_BWD_SHARES (each of a channel's rows loads and writes its share of the
# steps; 30 steps: the last block's writes masked)
@pytest.mark.parametrize(("method", "H", "W", "K", "kernel", "split", "dn", "every", "shares"),
                         [("hilbert", 5, 6, 8, "lane", "1", 3, 16, "0"),
                          ("zorder", 4, 4, 4, "lane", "2", 3, 16, "0"),
                          ("sweep", 4, 4, 2, "lane", "2", 32, 16, "0"),
                          ("scan", 3, 7, 2, "tiles", "1", 3, 16, "0"),
                          ("hilbert", 4, 6, 4, "lane", "2", 3, 8, "0"),
                          ("zigzag", 4, 4, 4, "lane", "4", 32, 16, "0"),
                          ("zigzag", 4, 4, 4, "lane", "4", 32, 16, "1"),
                          ("hilbert", 5, 6, 4, "lane", "2", 3, 16, "1")])
def test_fused_directions_match_gather_scan_scatter(ts, monkeypatch, method, H, W, K, kernel, split, dn,
                                                    every, shares):
    monkeypatch.setenv("MAMBAAD_SCAN_FUSED_KERNEL", kernel)
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_SHARES", shares)
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_BWD_SHARES", shares)
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_SPLIT", split)
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_BWD_SPLIT", split)
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_CKPT", str(every))
    monkeypatch.setenv("MAMBAAD_SCAN_SEG_E", "8" if every == 8 else "4")
    consts = []
    launched = spy_launches(ts, monkeypatch, consts)
    picked_shares = spy_results(ts, monkeypatch, "lane_shares")
    gathers = []
    steps_order = ts._steps_order
    monkeypatch.setattr(ts, "_steps_order",
                        lambda rows, tab: gathers.append(rows.shape) or steps_order(rows, tab))
    batch, n, length = 2, 4, H * W
    g = torch.Generator().manual_seed(H * W + K)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    A = -(torch.rand(K * dn, n, generator=g, dtype=torch.float64) + 0.1)
    xs = [r(batch, dn, length), r(batch, K, dn, length) * 0.5, A, r(batch, K, n, length),
          r(batch, K, n, length), r(K * dn), r(K * dn) * 0.3]
    table = direction_tables(method, H, W, K)
    ref_in = [x.clone().requires_grad_() for x in xs]
    test_in = [x.float().to(DEVICE).requires_grad_() for x in xs]
    ref = selective_scan_directions_unfused(*ref_in, table, backend="torch")
    out = selective_scan_directions(*test_in, table.to(DEVICE), backend="triton-fused")
    assert out.shape == (batch, dn, length)
    assert rel(out, ref) < 1e-5
    dout = r(batch, dn, length)
    ref.backward(dout)
    out.backward(dout.float().to(DEVICE))
    for name, t, q in zip(("u", "delta", "A", "B", "C", "D", "delta_bias"), test_in, ref_in, strict=True):
        assert rel(t.grad, q.grad) < 1e-4, name
    assert launched == ([6, 7] if kernel == "lane" else [0, 1])
    if kernel == "lane":  # unmasked writes exactly where every channel and step is in range
        assert [c["EVEN_D"] and c["EVEN_L"] for c in consts] == [dn % 32 == 0] * 2
        assert [c["T"] for c in consts] == [min(every, 128)] * 2
        assert picked_shares == [shares == "1" and split != "1"] * 2  # the forward's and backward's
    # the lane kernels read B and C in step order: gathered once, by the forward, and kept for the backward
    # (v1.29; the tiles kernels read them through the table)
    assert gathers == ([(batch, K, n, length)] * 2 if kernel == "lane" else [])


# the lane forward with two channel sets a lane (MAMBAAD_SCAN_LANE_PAIRS=1) through the tables: every channel
# and step in range (unpredicated adds), and 6 channels (the second set partial) over 30 steps or 16
@pytest.mark.parametrize(("method", "H", "W", "K", "split", "dn", "shares"),
                         [("zigzag", 4, 4, 4, "4", 32, "1"), ("hilbert", 5, 6, 4, "2", 6, "1"),
                          ("zorder", 4, 4, 4, "2", 6, "0")])
def test_fused_directions_with_two_channel_sets_a_lane(ts, monkeypatch, method, H, W, K, split, dn, shares):
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_PAIRS", "1")
    picked = spy_results(ts, monkeypatch, "lane_pairs")
    test_fused_directions_match_gather_scan_scatter(ts, monkeypatch, method, H, W, K, "lane", split, dn, 16,
                                                    shares)
    assert picked == [True]  # the forward's


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (0, 3, 1, 2), (3, 1, 0, 2)])
def test_natural_gradients_of_b_and_c_keep_their_layout(ts, order):
    # the fused path's dB / dC come back in B's order of strides (the model's B / C are tokens-outermost views
    # of x_proj's output): each half of the stacked buffer has B's strides where B is dense
    shape = (2, 3, 4, 5)
    B = torch.empty([shape[d] for d in order]).permute(*[order.index(d) for d in range(4)])
    assert B.shape == shape
    stacked = ts._stacked_like(B, torch.bfloat16)
    assert stacked.shape == (2, *shape) and stacked.dtype == torch.bfloat16
    assert stacked[0].stride() == stacked[1].stride() == B.stride()
    assert stacked.stride(0) == B.numel()  # the pair outermost


def test_fused_kernel_knob_is_checked(ts, monkeypatch):
    monkeypatch.setenv("MAMBAAD_SCAN_FUSED_KERNEL", "rows")
    with pytest.raises(ValueError, match="MAMBAAD_SCAN_FUSED_KERNEL must be lane or tiles"):
        ts.table_lanes(torch.zeros(1, 1), False)


@pytest.mark.parametrize("fused", [False, True])
def test_a_no_grad_forward_can_skip_the_checkpoints(ts, monkeypatch, fused):
    # the model passes its D as a Parameter, which autograd's ctx.needs_input_grad marks as needing its
    # gradient even under no_grad: MAMBAAD_SCAN_INFER_CKPT=0 (opt-in) skips the backward's checkpoints there
    monkeypatch.setenv("MAMBAAD_SCAN_INFER_CKPT", "0")
    calls = []
    real = ts._scan_forward

    def spy(*args):
        calls.append(args[11])  # need_ckpt
        return real(*args)

    monkeypatch.setattr(ts, "_scan_forward", spy)
    g = torch.Generator().manual_seed(3)
    batch, dn, K, n, length = 2, 3, 2, 4, 20
    r = lambda *s: torch.randn(*s, generator=g).to(DEVICE)  # noqa: E731
    D = torch.nn.Parameter(r(K * dn))
    A = -(torch.rand(K * dn, n, generator=g) + 0.1).to(DEVICE)
    if fused:
        table = direction_tables("hilbert", 4, 5, K).to(DEVICE)
        xs = (r(batch, dn, length), r(batch, K, dn, length) * 0.5, A, r(batch, K, n, length),
              r(batch, K, n, length), D, r(K * dn) * 0.3)
        scan = lambda: ts.selective_scan_directions_triton(*xs, table)  # noqa: E731
    else:
        xs = (r(batch, K * dn, length), r(batch, K * dn, length) * 0.5, A, r(batch, K, n, length),
              r(batch, K, n, length))
        bias = r(K * dn) * 0.3
        scan = lambda: ts.selective_scan_triton(*xs, D=D, delta_bias=bias, delta_softplus=True)  # noqa: E731
    with torch.no_grad():
        scored = scan()
    assert calls == [False] and not scored.requires_grad
    with torch.inference_mode():
        assert torch.equal(scan(), scored)
    # with checkpoints the same output: the same bits in the interpreter; on a GPU the kernel with them is
    # autotuned and compiled apart (the lane kernels, and the fused path since v1.28) and may round
    # differently, within a few float32 ulps (test_inference_skips_checkpoints_and_matches_training_forward)
    exact = DEVICE == "cpu"
    monkeypatch.delenv("MAMBAAD_SCAN_INFER_CKPT")  # the default: through autograd, with checkpoints
    with torch.no_grad():
        torch.testing.assert_close(scan(), scored, rtol=0 if exact else 1e-5, atol=0 if exact else 1e-6)
    monkeypatch.setenv("MAMBAAD_SCAN_INFER_CKPT", "0")
    trained = scan()  # grad mode: checkpoints for the backward, the same output
    assert calls == [False, False, True, True] and trained.requires_grad
    torch.testing.assert_close(trained.detach(), scored, rtol=0 if exact else 1e-5, atol=0 if exact else 1e-6)


def test_unfused_directions_with_the_triton_scan_match_torch(ts):
    batch, dn, n, K, H, W = 1, 2, 2, 4, 3, 5
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(batch, dn, H * W, generator=g), torch.randn(batch, K, dn, H * W, generator=g) * 0.5,
          -torch.rand(K * dn, n, generator=g) - 0.1, torch.randn(batch, K, n, H * W, generator=g),
          torch.randn(batch, K, n, H * W, generator=g), torch.randn(K * dn, generator=g), torch.zeros(K * dn)]
    table = direction_tables("hilbert", H, W, K)
    expected = selective_scan_directions(*xs, table, backend="torch")
    got = selective_scan_directions(*[x.to(DEVICE) for x in xs], table.to(DEVICE), backend="triton")
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-5, atol=1e-5)


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """The same values with stride 1 over dim 1 (channels) and the time axis (last) outermost."""
    return t.movedim(1, -1).contiguous().movedim(-1, 1)


@pytest.mark.parametrize("rows", [True, False])
def test_channels_last_inputs_match_on_both_kernels(ts, monkeypatch, rows):
    """Channels-last inputs run the rows kernels when MAMBAAD_SCAN_ROWS=1 (opt-in), else the tiles ones."""
    monkeypatch.setenv("MAMBAAD_SCAN_ROWS", "1" if rows else "0")
    launched = []
    launch = ts._launch
    monkeypatch.setattr(ts, "_launch", lambda index, *args: launched.append(index) or launch(index, *args))
    inputs = make(2, 8, 37, 3, 2, z=True, seed=11)
    ref_in = {k: (v.clone().requires_grad_() if v is not None else None) for k, v in inputs.items()}
    test_in = {k: v.float().to(DEVICE) if v is not None else None for k, v in inputs.items()}
    for k in ("u", "delta", "z"):
        test_in[k] = channels_last(test_in[k])
    u4 = test_in["u"].unflatten(1, (2, 4))
    assert ts.channels_last(u4, test_in["delta"].unflatten(1, (2, 4)))
    test_in = {k: (v.requires_grad_() if v is not None else None) for k, v in test_in.items()}
    ref = selective_scan_ref(**ref_in, delta_softplus=True)
    out = ts.selective_scan_triton(**test_in, delta_softplus=True, chunk=16)
    assert out.stride(1) == 1 or not rows  # the rows kernel keeps the layout
    assert rel(out, ref) < 1e-5
    dout = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref.backward(dout)
    out.backward(dout.float().to(DEVICE))
    for name in NAMES:
        assert rel(test_in[name].grad, ref_in[name].grad) < 1e-4, name
    # rows forward and backward, or the segment ones where this chunk length has a segment config (always in
    # the interpreter; on a GPU, not at T = 16 with 4 channels per group), else the tiles ones
    seg = ts.seg_enabled(16, 4), ts.seg_enabled(16, 4, backward=True)
    assert launched == ([2, 3] if rows else [4 if seg[0] else 0, 5 if seg[1] else 1])


@pytest.mark.parametrize(("kernel", "dtype", "delta_order"), [
    ("lane", torch.float32, "blkd"), ("lane", torch.bfloat16, "blkd"), ("tiles", torch.float32, "blkd"),
    ("lane", torch.float32, "kbld"), ("lane", torch.bfloat16, "kbld")])
def test_fused_directions_on_channels_last_maps(ts, monkeypatch, kernel, dtype, delta_order):
    """The model's fused path hands over channels-last maps: the lane kernels read and write them through the
    tables as they are and give the output and u's gradient back in that layout. Delta stored as (K, B, L, Dn)
    ("kbld": v1.30's model; v1.31's is (B, K, L, Dn), the same L stride) has u's L stride, and so do the
    output, dout and the gradients: the kernels then take positions scaled by it where
    MAMBAAD_SCAN_TABLE_SCALE=1 (_table_positions), forward and backward."""
    monkeypatch.setenv("MAMBAAD_SCAN_FUSED_KERNEL", kernel)
    monkeypatch.setenv("MAMBAAD_SCAN_TABLE_SCALE", "1")
    scales = []
    positions = ts._table_positions

    def spy(table, maps):
        scaled, scale = positions(table, maps)
        scales.append(scale)
        return scaled, scale
    monkeypatch.setattr(ts, "_table_positions", spy)
    batch, dn, n, K, H, W = 2, 4, 2, 8, 4, 5
    L = H * W
    g = torch.Generator().manual_seed(4)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    xs = [r(batch, dn, L), r(batch, K, dn, L) * 0.5, -(torch.rand(K * dn, n, generator=g, dtype=torch.float64)
          + 0.1), r(batch, K, n, L), r(batch, K, n, L), r(K * dn), r(K * dn) * 0.3]
    table = direction_tables("hilbert", H, W, K)
    ref_in = [x.clone().requires_grad_() for x in xs]
    expected = selective_scan_directions_unfused(*ref_in, table, backend="torch")
    test = [x.to(DEVICE, dtype if i in (0, 1, 3, 4) else torch.float32) for i, x in enumerate(xs)]
    test[0] = channels_last(test[0])
    if delta_order == "blkd":
        test[1] = test[1].permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)  # (B, L, K, Dn) in memory
    else:
        test[1] = test[1].permute(1, 0, 3, 2).contiguous().permute(1, 0, 3, 2)  # (K, B, L, Dn) in memory
    test = [x.requires_grad_() for x in test]
    got = selective_scan_directions(*test, table.to(DEVICE), backend="triton-fused")
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    assert got.dtype == dtype and rel(got, expected) < tol
    dout = r(batch, dn, L)
    expected.backward(dout)
    got.backward(channels_last(dout.to(DEVICE, dtype)))
    for name, t, q in zip(("u", "delta", "A", "B", "C", "D", "delta_bias"), test, ref_in, strict=True):
        assert rel(t.grad, q.grad) < tol * 10, name
    if kernel == "lane":
        assert got.stride(1) == 1 and test[0].grad.stride(1) == 1  # channels-last, as given
        assert test[1].grad.stride(2) == 1  # delta's gradient in delta's layout
        assert test[1].grad.stride(3) == test[1].stride(3)
    # the forward's and the backward's tables: scaled by Dn where delta's L stride is u's
    assert scales == ([] if kernel == "tiles" else [dn, dn] if delta_order == "kbld" else [1, 1])


def test_table_positions_scale_by_a_shared_l_stride_only(ts, monkeypatch):
    assert ts._table_positions(torch.zeros(1, 3, dtype=torch.int32),
                               (torch.zeros(1, 3, 5).transpose(1, 2).unsqueeze(1),))[1] == 1  # opt-in
    monkeypatch.setenv("MAMBAAD_SCAN_TABLE_SCALE", "1")
    table = torch.tensor([[2, 0, 1], [1, 2, 0]], dtype=torch.int32)
    cl = torch.zeros(1, 3, 5).transpose(1, 2).unsqueeze(1)  # (1, 1, 5, 3), L stride 5
    dense = torch.zeros(1, 1, 5, 3)  # L stride 1
    scaled, scale = ts._table_positions(table, (cl, None, cl.expand(1, 2, 5, 3)))
    assert scale == 5 and torch.equal(scaled, table * 5) and scaled.dtype == torch.int32
    assert ts._table_positions(table, (cl, dense))[1] == 1  # strides differ
    assert ts._table_positions(table, (dense,))[1] == 1  # already 1
    assert ts._strides(cl, 5) == (15, 5, 1, 1) and ts._strides(None, 5) == (0, 0, 0, 0)
    wide = SimpleNamespace(stride=lambda dim: 2**30)  # (L - 1) * stride past int32 (no such tensor here)
    assert ts._table_positions(table, (wide,))[1] == 1


def test_ss2d_with_the_fused_kernel_matches_the_torch_path(ts):
    from mambaad_cli.model.hss import SS2D

    torch.manual_seed(0)
    ref = SS2D(4, d_state=4, directions=8, scan="hilbert", scan_backend="torch").double()
    fused = SS2D(4, d_state=4, directions=8, scan="hilbert", scan_backend="triton-fused").to(DEVICE)
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    xf = x.float().to(DEVICE).requires_grad_()
    x = x.requires_grad_()
    out_ref, out = ref(x), fused(xf)
    assert rel(out, out_ref) < 1e-5
    out_ref.sum().backward()
    out.sum().backward()
    assert rel(xf.grad, x.grad) < 1e-4
    for (name, p_ref), p in zip(ref.named_parameters(), fused.parameters(), strict=True):
        assert rel(p.grad, p_ref.grad) < 1e-4, name


def test_ss2d_fused_core_by_default_on_gpus_by_map_size(monkeypatch):
    """SS2D's choice of the fused core (hss._fused_core): on GPUs by tokens, or by the knob."""
    from mambaad_cli.model import hss

    def fused(backend, shape, cuda=True):
        return hss._fused_core(backend, SimpleNamespace(shape=shape, is_cuda=cuda))
    monkeypatch.setattr(hss, "resolve_backend", lambda name, x: "torch" if name == "torch" else "triton")
    assert fused("triton", (2, 8, 32, 32)) and not fused("triton", (2, 8, 32, 33))  # up to 32 x 32 tokens
    assert not fused("triton", (2, 8, 64, 64))
    assert fused("auto", (2, 8, 8, 128)) and not fused("triton", (2, 8, 8, 8), cuda=False)  # GPUs only
    assert not fused("torch", (2, 8, 8, 8)) and fused("triton-fused", (2, 8, 64, 64))
    monkeypatch.setenv("MAMBAAD_SS2D_FUSED_SIDES", "none")
    assert not fused("triton", (2, 8, 8, 8)) and fused("triton-fused", (2, 8, 8, 8))
    monkeypatch.setenv("MAMBAAD_SS2D_FUSED_SIDES", "64")
    assert fused("triton", (2, 8, 64, 64)) and not fused("triton", (2, 8, 8, 8))
    monkeypatch.setenv("MAMBAAD_SS2D_FUSED_SIDES", "small")
    with pytest.raises(ValueError, match="MAMBAAD_SS2D_FUSED_SIDES"):
        fused("triton", (2, 8, 8, 8))


def test_ss2d_runs_the_fused_core_at_the_knobs_sides_only(ts, monkeypatch):
    """MAMBAAD_SS2D_FUSED_SIDES: an SS2D on the Triton scan runs the fused core on square maps of those sides
    and its own order elsewhere, with the same values; other backends ignore it."""
    from mambaad_cli.model import hss

    monkeypatch.setenv("MAMBAAD_SS2D_FUSED_SIDES", "4, 6")
    calls, tables = [], []
    fused, directions = hss.SS2D._scan_core_fused, hss._scan_directions

    def spy(self, x):
        calls.append(tuple(x.shape[2:]))
        return fused(self, x)
    monkeypatch.setattr(hss.SS2D, "_scan_core_fused", spy)
    monkeypatch.setattr(hss, "_scan_directions", lambda *a, **k: tables.append(a[7]) or directions(*a, **k))
    torch.manual_seed(0)
    kwargs = dict(d_state=4, directions=2, scan="hilbert")
    ref = hss.SS2D(4, scan_backend="torch", **kwargs).to(DEVICE)
    tri = hss.SS2D(4, scan_backend="triton", **kwargs).to(DEVICE)
    tri.load_state_dict(ref.state_dict())
    for H, W in ((4, 4), (4, 5), (5, 5)):
        x = torch.randn(1, H, W, 4, device=DEVICE)
        assert rel(tri(x), ref(x)) < 1e-5
    assert calls == [(4, 4)]  # not from the torch SS2D, nor at 4 x 5 or 5 x 5
    # the kernels' int32 table, cached with the map's plan: no conversion per call
    tri(torch.randn(1, 4, 4, 4, device=DEVICE))
    assert len(tables) == 2 and tables[0] is tables[1] and tables[0].dtype == torch.int32


@pytest.mark.parametrize("dt_proj", ["pad8", "matmul"])
def test_fused_core_x_proj_as_three_products_gives_the_same_gradients(ts, monkeypatch, dt_proj):
    """MAMBAAD_X_PROJ_TOKENS=split (opt-in): dt's rows (zero rows up to dt_proj's padded rank with pad8), B
    and C as a product each give the fused core's output and every gradient (input, x_proj's and dt_proj's
    weights, all parameters) as the one product split three ways does; map sides take the three products at
    those maps only; a bad value names the knob."""
    from mambaad_cli.model import hss

    monkeypatch.setenv("MAMBAAD_SS2D_FUSED_SIDES", "4")
    monkeypatch.setenv("MAMBAAD_DT_PROJ", dt_proj)
    torch.manual_seed(0)
    ss2d = hss.SS2D(4, d_state=4, directions=2, scan="hilbert", scan_backend="triton").to(DEVICE)
    x = torch.randn(2, 4, 4, 4, device=DEVICE)
    results = {}
    products = []  # x_proj's weight slices taken by the fused core (three where it splits)
    einsum = torch.einsum
    monkeypatch.setattr(torch, "einsum", lambda eq, *ops: (products.append(eq), einsum(eq, *ops))[1])
    for mode in ("one", "split", "4", "8,16"):
        monkeypatch.setenv("MAMBAAD_X_PROJ_TOKENS", mode)
        products.clear()
        leaf = x.clone().requires_grad_()
        out = ss2d(leaf)
        grads = torch.autograd.grad(out, [leaf, *ss2d.parameters()], torch.ones_like(out))
        results[mode] = (out, grads, products.count("bdl,kcd->blkc"))
    # map sides: the three products at this 4 x 4 map (`4`), the one product elsewhere (`8,16`)
    assert [results[m][2] for m in ("one", "split", "4", "8,16")] == [1, 3, 3, 1]
    assert rel(results["split"][0], results["one"][0]) < 1e-6
    for a, b in zip(results["split"][1], results["one"][1], strict=True):
        assert rel(a, b) < 1e-5
    assert rel(results["split"][1][0], torch.zeros_like(x)) > 0.5  # a gradient that is there to compare
    for value in ("two", "64x64"):
        monkeypatch.setenv("MAMBAAD_X_PROJ_TOKENS", value)
        with pytest.raises(ValueError, match="MAMBAAD_X_PROJ_TOKENS must be one, split or map sides"):
            ss2d(x)


def test_fp32_copy_of_an_expanded_view_stays_a_view(ts):
    # the backward's fp32 copies of bf16 inputs: a direction-shared u (stride 0 over the group) is cast once
    base = torch.randn(2, 1, 3, 5).to(torch.bfloat16)
    expanded = base.expand(2, 4, 3, 5)
    copy = ts._fp32(expanded)
    assert copy.dtype == torch.float32 and copy.shape == expanded.shape
    assert copy.stride(1) == 0
    assert torch.equal(copy, expanded.float())
    channels_last = torch.randn(2, 5, 3).to(torch.bfloat16).permute(0, 2, 1)
    assert ts._fp32(channels_last).stride() == channels_last.stride()


def test_segment_configs_fit_their_chunk_and_channels(ts):
    # a lane must hold whole segments (E steps, 2E in the forward): the inline-PTX reductions rely on it
    assert ts._seg_fits(4, 1, 16, 128) and ts._seg_fits(8, 1, 16, 128)  # 16 and 32 steps per lane
    assert not ts._seg_fits(8, 1, 16, 128, backward=True)  # the backward keeps one channel per lane
    assert not ts._seg_fits(4, 1, 16, 64)  # 8 steps per lane: half a segment
    kept = ts._seg_kept(ts._SEG_BWD_CONFIGS, 1024, 128, True)
    assert kept and all(bd * 128 // (32 * w) == e for bd, w, _, _, e, _ in kept)
    assert ts._seg_kept(ts._SEG_FWD_CONFIGS, 3, 16, False) == []  # 3 channels: BD 32 is too wide


def test_block_configs_take_an_optional_register_cap(ts, monkeypatch):
    # a seventh field caps the registers per thread (triton.Config's maxnreg); 0 or absent: the compiler's
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_BWD_CONFIGS", "32:1:3:1:16:4:168,32:1:3:1:16:4:0,32:1:3:1:8:1")
    monkeypatch.setenv("MAMBAAD_SCAN_SEG_CONFIGS", "4:1:3:1:16:0:128")
    # the lane forward's default space is checked below: not a sweep's (session 38's GPU run pinned it)
    monkeypatch.delenv("MAMBAAD_SCAN_LANE_CONFIGS", raising=False)
    ts._tuned_kernels.cache_clear()
    try:
        tuners = dict(zip(ts.TUNED_KERNEL_NAMES, ts._tuned_kernels(), strict=True))
        assert [c.maxnreg for c in tuners["lane_bwd"].configs] == [168, None, None]
        fields = [(c.kwargs["E"], c.kwargs["PREFETCH"]) for c in tuners["lane_bwd"].configs]
        assert fields == [(16, 4), (16, 4), (8, 1)]
        assert [c.maxnreg for c in tuners["seg_bwd"].configs] == [128]
        # the lane forward's default space: its 4-lane configs capped (v1.33), the others not
        assert [c.maxnreg for c in tuners["lane_fwd"].configs] == [
            ts.register_cap(list(c[6:])) for c in ts._LANE_FWD_CONFIGS]
        assert {c.maxnreg for c in tuners["lane_fwd"].configs} == {None, ts.SPLIT4_REGISTERS}
    finally:
        ts._tuned_kernels.cache_clear()


def test_lane_forward_keeps_its_fp32_only_configs_for_32_bit_inputs(ts, monkeypatch):
    # the autotuner's early prune, on the default space: 16-bit u drops (E, PREFETCH) = (8, 6), fp32 keeps all
    monkeypatch.delenv("MAMBAAD_SCAN_LANE_CONFIGS", raising=False)
    ts._tuned_kernels.cache_clear()
    try:
        configs = dict(zip(ts.TUNED_KERNEL_NAMES, ts._tuned_kernels(), strict=True))["lane_fwd"].configs
    finally:
        ts._tuned_kernels.cache_clear()
    fields = lambda kept: [(c.kwargs["E"], c.kwargs["PREFETCH"], c.maxnreg) for c in kept]  # noqa: E731
    assert (8, 6, None) in fields(configs)
    capped = [f for f in fields(configs) if f[2] == ts.SPLIT4_REGISTERS]
    assert capped and len(capped) < len(configs)
    fp32_only = [(8, 6, None)]
    for dtype, dropped in ((torch.float32, []), (torch.bfloat16, fp32_only), (torch.float16, fp32_only)):
        u = {"u_ptr": torch.zeros(2, dtype=dtype)}
        kept = ts._lane_fwd_prune(configs, u, T=16, SPLIT=2)
        assert fields(kept) == [f for f in fields(configs) if f not in dropped and f not in capped]
        # 4 lanes a channel: the 128-register configs alone; with two channel sets a lane, their 8-step
        # blocks (16-step ones spill at the cap); at 2 lanes the pairs keep the uncapped ones, less PREFETCH 8
        assert fields(ts._lane_fwd_prune(configs, u, T=16, SPLIT=4)) == capped
        assert fields(ts._lane_fwd_prune(configs, u, T=16, SPLIT=4, PAIRS=True)) == [
            f for f in capped if f[0] == 8] == [(8, 4, ts.SPLIT4_REGISTERS)]
        assert fields(ts._lane_fwd_prune(configs, u, T=16, SPLIT=2, PAIRS=True)) == [
            f for f in fields(configs) if f not in dropped and f not in capped and f[1] < 8]
        # 8-step chunks (MAMBAAD_SCAN_LANE_CKPT=8): the 8-step blocks alone, the same dtype rule
        kept = ts._lane_fwd_prune(configs, u, T=8, SPLIT=2)
        assert fields(kept) == [f for f in fields(configs)
                                if f not in dropped and f not in capped and f[0] == 8]
    # a space of fp32-only configs alone still leaves the autotuner one, at either split
    only = [c for c in configs if (c.kwargs["E"], c.kwargs["PREFETCH"], c.maxnreg) == (8, 6, None)]
    for split in (2, 4):
        assert ts._lane_fwd_prune(only, {"u_ptr": torch.zeros(2, dtype=torch.bfloat16)}, T=16,
                                  SPLIT=split) == only[:1]


def test_gpu_routes_the_backward_by_dtype_chunk_and_gate(ts, monkeypatch):
    # the segment backward for 16-bit inputs and for fp32 at short chunks; the tiles one for fp32 at 128-step
    # chunks (faster there on the H200) and wherever the gate z is fused
    monkeypatch.delenv("MAMBAAD_SCAN_SEG_BWD", raising=False)
    wanted = ts.segment_backward_on_gpu
    assert wanted(128, 2, False) and wanted(64, 2, False)
    assert wanted(64, 4, False) and wanted(16, 4, False)
    assert not wanted(128, 4, False)
    assert not wanted(64, 2, True) and not wanted(128, 4, True)
    monkeypatch.setenv("MAMBAAD_SCAN_SEG_BWD", "1")
    assert wanted(128, 4, False) and not wanted(128, 4, True)


@pytest.mark.skipif(DEVICE != "cuda", reason="the inline-PTX reductions and whole 128-step chunks: GPUs")
@pytest.mark.parametrize("red", ["2", "3"])  # lane-row sums, or the reduce-scatter (MAMBAAD_SCAN_SEG_RED=3)
@pytest.mark.parametrize("dtype,force", [(torch.bfloat16, ""), (torch.float32, "1")])
@pytest.mark.parametrize("lane", ["0", "1"])  # the lane forward and backward forced (bf16 rows by PTX pairs)
def test_segment_backward_on_whole_chunks_matches_float64_loop(ts, monkeypatch, dtype, force, red, lane):
    # L a multiple of the 128-step chunk: the segment backward adds dB / dC with red.global.add.v4.f32
    monkeypatch.setenv("MAMBAAD_SCAN_SEG_BWD", force)
    monkeypatch.setenv("MAMBAAD_SCAN_SEG_RED", red)
    monkeypatch.setenv("MAMBAAD_SCAN_LANE", lane)
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_BWD", lane)
    # the lane backward reads checkpoints every 16 steps, where a segment (or lane) forward needs 32 channels
    # per group (at 16 the tiles forward runs)
    inputs = make(2, 128 if lane == "1" else 64, 256, 16, 4, z=False, seed=5)
    for k in ("u", "delta", "B", "C"):  # both sides see the same (rounded) numbers
        inputs[k] = inputs[k].to(dtype).double()
    launched = []
    launch = ts._launch
    monkeypatch.setattr(ts, "_launch", lambda index, *args: launched.append(index) or launch(index, *args))
    ref_in, test_in, ref, out = run_both(ts, inputs, chunk=None, dtype=dtype)
    assert launched == ([6, 7] if lane == "1" else [4, 5])  # the lane, or segment, forward and backward
    fp32 = dtype == torch.float32
    assert rel(out, ref) < (1e-5 if fp32 else 1e-2)
    for name in NAMES:
        if test_in[name] is not None:
            assert rel(test_in[name].grad, ref_in[name].grad) < (1e-4 if fp32 else 2e-2), name


def test_tune_cache_knob_keeps_autotuning_picks_in_the_process(ts, monkeypatch):
    # benchmark warm-ups share one GPU: MAMBAAD_SCAN_TUNE_CACHE=0 keeps their disturbed picks off the disk
    import inspect

    import triton

    monkeypatch.delenv("MAMBAAD_SCAN_TUNE_CACHE", raising=False)
    if "cache_results" in inspect.signature(triton.autotune).parameters:  # Triton 3.2 and later
        assert ts._cache_option() == {"cache_results": True}
    monkeypatch.setenv("MAMBAAD_SCAN_TUNE_CACHE", "0")
    assert ts._cache_option() == {}


def test_tuned_picks_name_every_kernel_and_key(ts, monkeypatch):
    # the benchmark record of the autotuner's picks: one entry per tuned kernel that ran, key -> config
    import functools
    import types

    tuners = [types.SimpleNamespace(cache={}) for _ in ts.TUNED_KERNEL_NAMES]
    tuners[1].cache[(64, 256, 16, 128, "torch.float32")] = "BD: 8, num_warps: 4"
    tuners[5].cache[(128, 4096, 16, 128, "torch.bfloat16")] = "BD: 4, E: 16"
    fake = functools.cache(lambda: tuple(tuners))
    monkeypatch.setattr(ts, "interpreting", lambda: False)
    monkeypatch.setattr(ts, "_tuned_kernels", fake)
    assert ts.tuned_picks() == {}  # nothing built yet in this process
    fake()
    assert ts.tuned_picks() == {
        "tiles_bwd": {"(64, 256, 16, 128, 'torch.float32')": "BD: 8, num_warps: 4"},
        "seg_bwd": {"(128, 4096, 16, 128, 'torch.bfloat16')": "BD: 4, E: 16"},
    }


def test_forward_kernel_is_the_faster_per_shape_and_the_knob_overrides(ts, monkeypatch):
    """With MAMBAAD_SCAN_LANE=time, on GPUs the segment (index 4) and lane (6) forwards are both timed on the
    first call of a shape and the faster one kept; auto (the default), 0 and 1 decide without timing.
    Launches and timings faked here."""
    import triton.testing

    launched, timed = [], []
    speed = {4: 2.0, 6: 1.0}
    monkeypatch.setattr(ts, "interpreting", lambda: False)
    monkeypatch.setattr(ts.torch.cuda, "is_current_stream_capturing", lambda: False)
    monkeypatch.setattr(ts, "_launch", lambda index, shape, args, consts: launched.append(index))

    def bench(fn, warmup, rep):
        before = len(launched)
        fn()
        timed.append(launched[before])
        return speed[launched[before]]

    monkeypatch.setattr(triton.testing, "do_bench", bench)
    monkeypatch.delenv("MAMBAAD_SCAN_LANE", raising=False)
    ts._LANE_PICKS.clear()
    # the default, auto: by shape, nothing launched to decide (7.8 and 3.9 warps per SM of 132)
    monkeypatch.setattr(ts, "_sm_count", lambda index: 132)
    n16, u16 = {"N": 16}, (torch.zeros(1, dtype=torch.bfloat16),)
    assert ts._lane_forward((256, 8, 16, 4096), u16, n16) is True and not launched
    # 3.9 warps per SM with one lane per channel, 7.8 with the split's two (its auto default; fp32 too since
    # v1.26)
    assert ts._lane_forward((128, 8, 16, 4096), u16, n16) is True and not launched
    assert ts._lane_forward((128, 8, 16, 4096), (torch.zeros(1),), n16) is True and not launched  # fp32
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_SPLIT", "1")
    assert ts._lane_forward((128, 8, 16, 4096), u16, n16) is False and not launched
    monkeypatch.delenv("MAMBAAD_SCAN_LANE_SPLIT")
    monkeypatch.setenv("MAMBAAD_SCAN_LANE", "time")
    args = (torch.zeros(1), torch.zeros(1), None, torch.zeros(1, dtype=torch.bfloat16))
    consts = {"STORE_CKPT": True, "T": 128, "HAS_D": True, "HAS_Z": False, "HAS_BIAS": True, "SOFTPLUS": True,
              "EVEN_L": True}
    assert ts._lane_forward((256, 8, 16, 4096), args, consts) is True  # lane timed faster
    assert sorted(timed) == [4, 6]
    assert ts._lane_forward((256, 8, 16, 4096), args, consts) is True and len(timed) == 2  # kept
    speed[4] = 0.5
    assert ts._lane_forward((256, 8, 16, 4096), args, {**consts, "STORE_CKPT": False}) is False  # its own key
    # inside a CUDA graph's capture nothing is timed: the eager warm-up's pick, or the segment kernel
    monkeypatch.setattr(ts.torch.cuda, "is_current_stream_capturing", lambda: True)
    assert ts._lane_forward((256, 8, 16, 4096), args, consts) is True
    assert ts._lane_forward((256, 8, 16, 2048), args, consts) is False and len(timed) == 4
    monkeypatch.setattr(ts.torch.cuda, "is_current_stream_capturing", lambda: False)
    monkeypatch.setenv("MAMBAAD_SCAN_LANE", "0")
    assert ts._lane_forward((256, 8, 16, 4096), args, consts) is False
    monkeypatch.setenv("MAMBAAD_SCAN_LANE", "1")
    assert ts._lane_forward((512, 8, 16, 64), args, consts) is True and len(timed) == 4
    ts._LANE_PICKS.clear()


@pytest.mark.parametrize(("dim", "length", "batch", "one_lane", "lane"), [
    # 16 K lanes: 3.9 warps per SM on an H200's 132 SMs with one lane per channel (the lane kernel lost),
    # 7.8 with each channel over two (won: lane_split's auto)
    (1024, 4096, 16, False, True),
    (2048, 1024, 16, True, True),  # 7.8 with one lane per channel (won)
    (4096, 256, 16, True, True),  # 15.5 (won)
    (8192, 64, 16, True, True),  # 64 steps: long enough in bf16 (won) and, since v1.38, fp32 (won)
    (8192, 32, 16, False, False),  # 32: too short in both (untimed)
    (1024, 4096, 64, True, True),  # the longest sequence at batch 64 (the forced lane kernel gained)
])
def test_auto_takes_the_lane_kernels_by_warps_per_sm_and_length(ts, monkeypatch, dim, length, batch, one_lane,
                                                                lane):
    long32 = length >= 64  # fp32's LANE_MIN_STEPS (128 until v1.37)
    assert ts.lane_by_shape(dim * batch, length, 132, element_size=2) is one_lane
    assert ts.lane_by_shape(dim * batch, length, 132) is (one_lane and long32)  # fp32 by default
    # N = 3: no split (one lane per channel)
    for n_state, want in ((16, lane), (3, one_lane)):
        check_lane_auto(ts, monkeypatch, dim, length, batch, n_state, want, torch.bfloat16)
        check_lane_auto(ts, monkeypatch, dim, length, batch, n_state, want and long32, torch.float32)
    # the developer knob sets the shortest sequence for both dtypes
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_MIN_STEPS", str(length + 1))
    assert not ts.lane_by_shape(dim * batch, length, 132, element_size=2)
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_MIN_STEPS", str(length))
    assert ts.lane_by_shape(dim * batch, length, 132) is (dim * batch / 32 / 132 >= 6)


def check_lane_auto(ts, monkeypatch, dim, length, batch, n_state, lane, dtype):
    monkeypatch.setenv("MAMBAAD_SCAN_LANE", "auto")
    monkeypatch.setattr(ts, "interpreting", lambda: False)
    monkeypatch.setattr(ts, "_sm_count", lambda index: 132)
    monkeypatch.setattr(ts, "_launch", lambda *a: pytest.fail("auto launches nothing to decide"))
    u = torch.zeros(1, dtype=dtype)
    shape = (dim // 8, 8, batch, length)
    # the same while a CUDA graph is captured (v1.11 fell back to the segment kernel there, so the graphed
    # model never ran the lane forward under auto)
    for capturing in (False, True):
        monkeypatch.setattr(ts.torch.cuda, "is_current_stream_capturing", lambda c=capturing: c)
        assert ts._lane_forward(shape, (u,), {"N": n_state}) is lane
    # the lane backward's auto (its default): the same rule (fp32 too since v1.26); never with the gate z
    monkeypatch.delenv("MAMBAAD_SCAN_LANE_BWD", raising=False)
    for mode in (None, "auto"):
        if mode:
            monkeypatch.setenv("MAMBAAD_SCAN_LANE_BWD", mode)
        assert ts._lane_backward(shape, False, 0, u.element_size(), n_state) is lane
        assert ts._lane_backward(shape, True, 0, u.element_size(), n_state) is False
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_BWD", "0")
    assert ts._lane_backward(shape, False, 0, u.element_size(), n_state) is False
    monkeypatch.setenv("MAMBAAD_SCAN_LANE_BWD", "1")
    assert ts._lane_backward(shape, False, 0, u.element_size(), n_state) is True


def test_forward_picks_are_kept_apart_for_training_and_inference(ts):
    # every forward's autotuner keys on STORE_CKPT (training stores checkpoints, inference does not), the
    # backwards do not take it
    tuners = ts._tuned_kernels()
    for index, name in enumerate(ts.TUNED_KERNEL_NAMES):
        assert ("STORE_CKPT" in tuners[index].keys) == name.endswith("_fwd"), name
        assert tuners[index].keys[:4] == ["DG", "L", "N", "T"], name
    # the lane forward's picks apart by its state split, step shares, channel sets and B / C layout too (each
    # another kernel)
    assert tuners[ts.TUNED_KERNEL_NAMES.index("lane_fwd")].keys[-4:] == ["SPLIT", "SHARES", "PAIRS", "NMAJOR"]


@triton.jit
def _softplus_probe(x_ptr, dt_ptr, grad_ptr, n, SOFTPLUS: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    x = tl.load(x_ptr + i, mask=m, other=0.0)
    _, dt = _delta(x, 0.0, m, False, SOFTPLUS)
    tl.store(dt_ptr + i, dt, mask=m)
    tl.store(grad_ptr + i, _softplus_grad(x, SOFTPLUS), mask=m)


@pytest.mark.parametrize("mode", ["exact", "fast, tl.exp2 / tl.log2", "fast, PTX"])
def test_softplus_modes_match_float64(ts, mode):
    # _softplus_fast's bound (relative error below 4e-6; its series and log branches meet at exp(x) = 1/8)
    # and the exact one's, with the threshold and the branch point sampled closely; and softplus' (sigmoid)
    value = {"exact": ts.SOFTPLUS_EXACT, "fast, tl.exp2 / tl.log2": ts.SOFTPLUS_FAST_PORTABLE,
             "fast, PTX": ts.SOFTPLUS_FAST}[mode]
    if mode == "fast, PTX" and DEVICE != "cuda":
        pytest.skip("inline PTX: NVIDIA GPUs")
    branch = math.log(1 / 8)
    x = torch.cat([torch.linspace(-80, 30, 2201, dtype=torch.float64),
                   torch.linspace(branch - 1e-3, branch + 1e-3, 101, dtype=torch.float64),
                   torch.linspace(19.99, 20.01, 21, dtype=torch.float64)]).float()
    dt, grad = torch.empty_like(x, device=DEVICE), torch.empty_like(x, device=DEVICE)
    grid = (triton.cdiv(x.numel(), 256),)
    _softplus_probe[grid](x.to(DEVICE), dt, grad, x.numel(), SOFTPLUS=value, BLOCK=256)
    xd = x.double()
    dt, grad = dt.double().cpu(), grad.double().cpu()
    want = torch.where(xd > 20, xd, torch.log1p(torch.exp(xd)))
    want_grad = torch.where(xd > 20, torch.ones_like(xd), torch.sigmoid(xd))
    # relative where delta matters (x >= -20, delta >= 2e-9): exp by exp2(x log2(e)) carries the product's
    # rounding, up to 1.7e-6 at x = -20 in every mode on a GPU; below that, absolute
    big = xd >= -20
    bound = 4e-6 if DEVICE == "cuda" else 1e-6
    assert ((dt - want).abs() / want)[big].max().item() < bound
    assert ((grad - want_grad).abs() / want_grad)[big].max().item() < bound
    assert (dt - want)[~big].abs().max().item() < 1e-14
    assert (grad - want_grad)[~big].abs().max().item() < 1e-14


def test_softplus_mode_follows_the_deltas_dtype_and_the_knob(ts, monkeypatch):
    monkeypatch.delenv("MAMBAAD_SCAN_SOFTPLUS", raising=False)
    fast = ts.SOFTPLUS_FAST_PORTABLE if ts.interpreting() else ts.SOFTPLUS_FAST
    assert ts.softplus_mode(False, torch.bfloat16) == ts.SOFTPLUS_NONE
    assert ts.softplus_mode(True, torch.float32) == ts.SOFTPLUS_EXACT  # the paper's fp32 numerics
    assert ts.softplus_mode(True, torch.bfloat16) == ts.softplus_mode(True, torch.float16) == fast
    monkeypatch.setenv("MAMBAAD_SCAN_SOFTPLUS", "exact")
    assert ts.softplus_mode(True, torch.bfloat16) == ts.SOFTPLUS_EXACT
    monkeypatch.setenv("MAMBAAD_SCAN_SOFTPLUS", "fast")
    assert ts.softplus_mode(True, torch.float32) == fast
    monkeypatch.setenv("MAMBAAD_SCAN_SOFTPLUS", "quick")
    with pytest.raises(ValueError, match="MAMBAAD_SCAN_SOFTPLUS"):
        ts.softplus_mode(True, torch.float32)
