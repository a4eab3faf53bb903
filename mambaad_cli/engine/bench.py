"""`mambaad bench`: the selective scan against its floors and mamba_ssm's CUDA kernel, the fused SS2D core,
and MambaAD's training / inference throughput.

On a CUDA GPU every (batch, shape, dtype, backend) row is first checked against the torch backend (relative
L2 error of the forward), then timed with ``triton.testing.do_bench`` (median). The floors come from a
measured device copy bandwidth and a measured exp2 rate (reference/scan_kernels.md section 2). Without a
GPU the torch backend runs on small shapes, timed with ``time.perf_counter`` medians.

Timings: "fwd" is the training forward (inputs require grad, so whatever the backward needs is saved, as
mamba_ssm's fwd always does); "bwd" is the backward alone, on a graph kept with retain_graph; "f+b" is one
forward plus one backward. mamba_ssm's kernel is called through ``selective_scan_cuda.fwd`` / ``.bwd``
directly, without autograd; so is ours once more ("f+b direct": ``triton_scan.selective_scan_fwd`` /
``selective_scan_bwd``), and "x cuda" compares those two like with like. Autograd's own host work costs
about 0.6 ms per forward + backward on the H200 host, more than the kernels at the short sequences
(kernels/NOTES.md, v1.8); the autograd "f+b" stays in the table, as what an eager training step pays.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from rich import print as rich_print
from rich.markup import escape

from mambaad_cli.engine.bench_tables import comparable_ms
from mambaad_cli.errors import UserError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TOLERANCE = {"fp32": 1e-3, "bf16": 3e-2}  # relative L2 error of the forward against the torch backend
SCAN_BACKENDS = ("triton", "cuda", "torch")
N_STATE = 16
GROUPS = 8  # MambaAD folds its 8 scan directions into the channels: one B/C group per direction
DIRECTIONS = 8
# (dim = K * d_inner, L) of MambaAD's four decoder resolutions at 256x256 (64x64 ... 8x8)
MAMBAAD_SHAPES = ((1024, 4096), (2048, 1024), (4096, 256), (8192, 64))
SS2D_SIZES = ((128, 64), (256, 32), (512, 16), (1024, 8))  # (d_inner per direction, H = W)
CPU_SHAPES = ((64, 256), (128, 64))
CPU_BATCH = 1
GPU_BATCH = 16
COPY_BYTES = {"cuda": 2 * 2**30, "cpu": 32 * 2**20}  # buffer size of the copy-bandwidth measurement
SFU_EXP2_PER_CLOCK_PER_SM = 16  # datasheet MUFU rate (CUDA programming guide throughput table)
GRAD_INPUTS = ("u", "delta", "A", "B", "C", "D", "delta_bias")
BATCHED_INPUTS = ("u", "delta", "B", "C")

Timer = Callable[[Callable[[], Any]], float]


# ----------------------------------------------------------------------------------------------- options


@dataclass
class BenchOptions:
    """What to benchmark. None means the device's default (see `run_bench`)."""

    scan: str = "hilbert"
    batches: tuple[int, ...] | None = None  # GPU 16, CPU 1
    dtypes: tuple[str, ...] | None = None  # GPU fp32 and bf16, CPU fp32
    shapes: tuple[tuple[int, int], ...] | None = None  # (dim, L); GPU MAMBAAD_SHAPES, CPU CPU_SHAPES
    backends: tuple[str, ...] | None = None  # GPU: those of triton, cuda that run here; CPU: torch
    model: bool = False
    json_path: str | None = None
    device: str = "auto"
    warmup_ms: float = 25.0
    rep_ms: float = 100.0
    command: str = ""


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _positive_ints(text: str, option: str, example: str) -> list[int]:
    try:
        values = [int(part) for part in _split(text)]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UserError(f"{option} {text}: expected comma-separated positive integers, e.g. {example}")
    return values


def parse_shapes(text: str) -> tuple[tuple[int, int], ...]:
    """'mambaad' or 'D:L,D:L' -> ((D, L), ...); D must be a multiple of the GROUPS B/C groups."""
    if text.strip() == "mambaad":
        return MAMBAAD_SHAPES
    shapes = []
    for part in _split(text):
        dim_len = part.split(":")
        if len(dim_len) != 2:
            raise UserError(f"--shapes {text}: expected 'mambaad' or D:L pairs, e.g. 1024:4096,2048:1024")
        dim, length = _positive_ints(",".join(dim_len), "--shapes", "1024:4096,2048:1024")
        if dim % GROUPS:
            raise UserError(f"--shapes {part}: D must be a multiple of the {GROUPS} B/C groups")
        shapes.append((dim, length))
    if not shapes:
        raise UserError(f"--shapes {text!r}: expected 'mambaad' or D:L pairs, e.g. 1024:4096,2048:1024")
    return tuple(shapes)


def parse_options(
    scan: str = "hilbert",
    batch: str | None = None,
    dtype: str | None = None,
    shapes: str = "mambaad",
    backends: str | None = None,
    model: bool = False,
    json_path: str | None = None,
    device: str = "auto",
    warmup_ms: float = 25.0,
    rep_ms: float = 100.0,
    command: str = "",
) -> BenchOptions:
    """BenchOptions from the command line's strings; a bad value raises UserError naming its option."""
    from mambaad_cli.model.scans import SCAN_METHODS

    if scan not in SCAN_METHODS:
        raise UserError(f"--scan {scan}: unknown scan curve; choose one of {', '.join(SCAN_METHODS)}")
    dtypes = None
    if dtype is not None:
        dtypes = tuple(_split(dtype))
        bad = [d for d in dtypes if d not in DTYPES]
        if bad or not dtypes:
            raise UserError(f"--dtype {dtype}: choose from {', '.join(DTYPES)} (comma-separated)")
    chosen_backends = None
    if backends is not None:
        chosen_backends = tuple(_split(backends))
        bad = [b for b in chosen_backends if b not in SCAN_BACKENDS]
        if bad or not chosen_backends:
            choices = ", ".join(SCAN_BACKENDS)
            raise UserError(f"--backends {backends}: choose from {choices} (comma-separated)")
    if warmup_ms < 0 or rep_ms <= 0:
        raise UserError(f"--warmup-ms {warmup_ms} / --rep-ms {rep_ms}: must be >= 0 and > 0")
    return BenchOptions(
        scan=scan,
        batches=tuple(_positive_ints(batch, "--batch", "16,64")) if batch is not None else None,
        dtypes=dtypes,
        shapes=None if shapes.strip() == "mambaad" else parse_shapes(shapes),
        backends=chosen_backends,
        model=model,
        json_path=json_path,
        device=device,
        warmup_ms=warmup_ms,
        rep_ms=rep_ms,
        command=command,
    )


# ------------------------------------------------------------------------------------------------ floors


def scan_bytes(
    batch: int, dim: int, length: int, n_state: int, groups: int, s_in: int, s_out: int | None = None
) -> tuple[int, int]:
    """(forward, backward) minimum DRAM bytes of one selective scan call without z (scan_kernels.md 2.1).

    Forward reads u, delta, B, C and writes out; backward reads u, delta, dout, B, C, writes du, ddelta and
    accumulates dB, dC in fp32. A, D and delta_bias are negligible.
    """
    s_out = s_in if s_out is None else s_out
    fwd = batch * length * (dim * (2 * s_in + s_out) + 2 * groups * n_state * s_in)
    bwd = batch * length * (5 * dim * s_in + 2 * groups * n_state * s_in + 2 * groups * n_state * 4)
    return fwd, bwd


def floors(
    batch: int,
    dim: int,
    length: int,
    n_state: int,
    groups: int,
    s_in: int,
    bandwidth: float,
    exp_rate: float | None,
) -> dict[str, Any]:
    """Lower bounds on one scan call's time: bytes / copy bandwidth, and batch*dim*L*N exp2 / exp2 rate.

    bandwidth: bytes/s; exp_rate: exp2/s (None where unknown, e.g. on CPU). Times in microseconds.
    The backward's exp floor equals the forward's: it recomputes at least one exp2 per element.
    """
    fwd_bytes, bwd_bytes = scan_bytes(batch, dim, length, n_state, groups, s_in)
    exps = batch * dim * length * n_state
    bw_us = fwd_bytes / bandwidth * 1e6
    bwd_bw_us = bwd_bytes / bandwidth * 1e6
    exp_us = exps / exp_rate * 1e6 if exp_rate else None
    return {
        "fwd_bytes": fwd_bytes,
        "bwd_bytes": bwd_bytes,
        "exp2": exps,
        "bw_floor_us": bw_us,
        "exp_floor_us": exp_us,
        "floor_us": max(bw_us, exp_us or 0.0),
        "bwd_bw_floor_us": bwd_bw_us,
        "bwd_floor_us": max(bwd_bw_us, exp_us or 0.0),
    }


def datasheet_exp2_rate(sm_count: int, max_sm_clock_mhz: float) -> float:
    """exp2/s from the datasheet: 16 per clock per SM x SM count x max SM clock."""
    return SFU_EXP2_PER_CLOCK_PER_SM * sm_count * max_sm_clock_mhz * 1e6


# ---------------------------------------------------------------------------------------------- timing


def make_timer(device: torch.device, warmup_ms: float, rep_ms: float) -> Timer:
    """fn -> median milliseconds: triton's do_bench on a GPU, perf_counter samples on CPU."""
    if device.type == "cuda":
        from triton.testing import do_bench

        def gpu_timer(fn: Callable[[], Any]) -> float:
            return float(do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median"))

        return gpu_timer

    def cpu_timer(fn: Callable[[], Any], min_reps: int = 3, max_reps: int = 1000) -> float:
        fn()  # first call: allocations and lazy initialisation
        start = time.perf_counter()
        while time.perf_counter() - start < warmup_ms / 1e3:
            fn()
        samples: list[float] = []
        start = time.perf_counter()
        def more() -> bool:
            in_time = time.perf_counter() - start < rep_ms / 1e3
            return len(samples) < min_reps or (in_time and len(samples) < max_reps)

        while more():
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples) * 1e3

    return cpu_timer


def measure_copy_bandwidth(
    device: torch.device, nbytes: int | None = None, warmup_ms: float = 25.0, rep_ms: float = 100.0
) -> float:
    """Bytes/s of a large copy on `device` (bytes read + bytes written, median time)."""
    nbytes = nbytes or COPY_BYTES[device.type]
    buffers = [torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(1) for _ in range(2)]
    ms = make_timer(device, warmup_ms, rep_ms)(lambda: buffers[1].copy_(buffers[0]))
    buffers.clear()
    _cleanup(device)
    return 2 * nbytes / (ms * 1e-3)


def measure_exp2_rate(device: torch.device, warmup_ms: float = 25.0, rep_ms: float = 100.0) -> float | None:
    """exp2/s of a Triton microkernel on a CUDA device (bench_exp2.py); None on CPU."""
    if device.type != "cuda":
        return None
    from mambaad_cli.engine.bench_exp2 import measure_exp2_rate as measure

    return measure(device, warmup_ms, rep_ms)


def gpu_max_sm_clock_mhz() -> float | None:
    """The max SM clock nvidia-smi reports (first GPU), or None without nvidia-smi. Changes nothing."""
    try:
        text = subprocess.run(
            ["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout
        return float(text.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


# ----------------------------------------------------------------------------------------------- inputs


def scan_inputs(
    batch: int, dim: int, length: int, dtype: str, device: torch.device,
    n_state: int = N_STATE, groups: int = GROUPS, seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Scan inputs shaped and scaled like MambaAD's: softplus(delta + bias) around 0.02, A = -(1..N).

    u, delta, B, C in `dtype`; A, D, delta_bias fp32 (as mamba_ssm wants them).
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    cast = DTYPES[dtype]

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, device=device)

    A = -torch.exp(torch.log(torch.arange(1, n_state + 1, dtype=torch.float32, device=device)))
    return {
        "u": randn(batch, dim, length).to(cast),
        "delta": (randn(batch, dim, length) * 0.5 - 4.0).to(cast),
        "A": A.repeat(dim, 1),
        "B": randn(batch, groups, n_state, length).to(cast),
        "C": randn(batch, groups, n_state, length).to(cast),
        "D": torch.ones(dim, device=device),
        "delta_bias": torch.rand(dim, generator=gen, device=device) * 0.5,
    }


def ss2d_inputs(
    batch: int, d_inner: int, side: int, dtype: str, device: torch.device, scan: str,
    directions: int = DIRECTIONS, n_state: int = N_STATE, seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Inputs of kernels.selective_scan_directions for one SS2D block on a side x side map (natural order),
    in the memory layout MambaAD's SS2D gives the fused kernel: stride 1 over channels, u as (batch, L,
    d_inner), delta as (batch, K, L, d_inner) (dt_proj's per-(batch, direction) products since v1.31, u's L
    stride; until v1.30 this gave (batch, L, K, d_inner)), B/C as (batch, L, K, N) in memory."""
    from mambaad_cli.model.scans import direction_tables

    K, L = directions, side * side
    flat = scan_inputs(batch, K * d_inner, L, dtype, device, n_state, groups=K, seed=seed)

    def tokens_outermost(t: torch.Tensor) -> torch.Tensor:
        return t.movedim(-1, 1).contiguous().movedim(1, -1)

    def channels_innermost(t: torch.Tensor) -> torch.Tensor:  # (batch, K, D, L) as (batch, K, L, D)
        return t.transpose(2, 3).contiguous().transpose(2, 3)

    return {
        "u": tokens_outermost(flat["u"][:, :d_inner]),  # shared by the K directions
        "delta": channels_innermost(flat["delta"].view(batch, K, d_inner, L)),
        "A": flat["A"],
        "B": tokens_outermost(flat["B"]),  # (batch, K, N, L)
        "C": tokens_outermost(flat["C"]),
        "D": flat["D"],
        "delta_bias": flat["delta_bias"],
        "table": direction_tables(scan, side, side, K).to(device),
    }


# ------------------------------------------------------------------------------------------- backends


def relative_l2_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64."""
    out, ref = out.detach().double(), ref.detach().double()
    return float(torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref).clamp_min(1e-300))


def check_forward(out: torch.Tensor, ref: torch.Tensor, dtype: str) -> tuple[float, str]:
    """(relative L2 error, "OK" or "WRONG") against the tolerance of `dtype`."""
    err = relative_l2_error(out, ref)
    return err, ("OK" if err <= TOLERANCE[dtype] else "WRONG")


def _import_selective_scan_cuda():
    """mamba_ssm's compiled extension module, or None."""
    try:
        return importlib.import_module("selective_scan_cuda")
    except ImportError:
        return None


def _mamba_selective_scan_fn():
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # noqa: BLE001 - mamba_ssm's import chain can fail in many ways (transformers, triton)
        return None
    return selective_scan_fn


def _tiny_inputs(device: torch.device) -> dict[str, torch.Tensor]:
    return scan_inputs(1, 2 * GROUPS, 32, "fp32", device)


def backend_status(name: str, device: torch.device) -> str | None:
    """None when scan backend `name` runs on `device`, else the reason it does not."""
    if name != "torch" and device.type != "cuda":
        return f"backend '{name}' needs a CUDA GPU, and this run is on {device}"
    if name == "cuda":
        if _import_selective_scan_cuda() is None and _mamba_selective_scan_fn() is None:
            return "backend 'cuda' needs mamba_ssm's compiled selective_scan_cuda module (the cuda extra)"
        return None
    import kernels
    from kernels.dispatch import BackendUnavailableError

    x = _tiny_inputs(device)
    try:
        kernels.selective_scan(
            x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], delta_bias=x["delta_bias"],
            delta_softplus=True, backend=name,
        )
    except BackendUnavailableError as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - a kernel that fails to compile or run: say why, go on
        return f"backend '{name}' failed on a tiny input: {type(e).__name__}: {e}"
    return None


def _kernels_scan(backend: str) -> Callable[..., torch.Tensor]:
    import kernels

    def scan(u, delta, A, B, C, D, delta_bias):
        return kernels.selective_scan(
            u, delta, A, B, C, D, delta_bias=delta_bias, delta_softplus=True, backend=backend
        )

    return scan


def _mamba_fn_scan(u, delta, A, B, C, D, delta_bias):
    return _mamba_selective_scan_fn()(u, delta, A, B, C, D, None, delta_bias, True)


def _time_autograd(scan: Callable[..., torch.Tensor], inputs: dict[str, torch.Tensor], timer: Timer,
                   gpu_timer: Timer | None = None):
    """(forward output, {fwd_ms, bwd_ms, fwd_bwd_ms, bwd_method[, fwd_bwd_gpu_ms]}) of a scan that runs
    through autograd."""
    leaves = {k: v.detach().requires_grad_(True) for k, v in inputs.items() if k in GRAD_INPUTS}
    args = {**inputs, **leaves}
    grad_inputs = list(leaves.values())

    def forward():
        return scan(**args)

    out = forward()
    dout = torch.randn_like(out)

    def fwd_bwd_call():
        return torch.autograd.grad(forward(), grad_inputs, dout)

    def timings() -> dict[str, Any]:
        fwd = timer(forward)
        fwd_bwd = timer(fwd_bwd_call)
        try:
            bwd = timer(lambda: torch.autograd.grad(out, grad_inputs, dout, retain_graph=True))
            method = "retain_graph"
        except RuntimeError:  # a backward that frees what it saved: derive it
            bwd, method = fwd_bwd - fwd, "f+b minus fwd"
        times = {"fwd_ms": fwd, "bwd_ms": bwd, "fwd_bwd_ms": fwd_bwd, "bwd_method": method}
        return {**times, **_gpu_times(gpu_timer, fwd_bwd_call, forward)}

    return out.detach(), timings


def _time_cuda_extension(module, inputs: dict[str, torch.Tensor], timer: Timer,
                         gpu_timer: Timer | None = None):
    """(forward output, timings) of selective_scan_cuda.fwd / .bwd called directly."""
    u, delta, A, B, C, D, bias = (inputs[k].contiguous() for k in GRAD_INPUTS)

    @torch.no_grad()
    def forward():
        return module.fwd(u, delta, A, B, C, D, None, bias, True)

    out, x, *_ = forward()
    dout = torch.randn_like(out)

    @torch.no_grad()
    def backward(out_, x_):
        return module.bwd(u, delta, A, B, C, D, None, bias, dout, x_, out_, None, True, False)

    def fwd_bwd():
        o, xs, *_ = forward()
        return backward(o, xs)

    def timings() -> dict[str, Any]:
        fwd_ms, bwd_ms, fwd_bwd_ms = timer(forward), timer(lambda: backward(out, x)), timer(fwd_bwd)
        return {
            "fwd_ms": fwd_ms, "bwd_ms": bwd_ms,
            "fwd_bwd_ms": fwd_bwd_ms, "fwd_bwd_direct_ms": fwd_bwd_ms,  # always called directly
            "bwd_method": "selective_scan_cuda.bwd",
            **_gpu_times(gpu_timer, fwd_bwd, forward),
        }

    return out, timings


def _time_triton_direct(inputs: dict[str, torch.Tensor], timer: Timer) -> dict[str, float]:
    """{fwd_bwd_direct_ms}: our forward and backward called without autograd, as the CUDA kernel is."""
    from kernels import triton_scan

    u, delta, A, B, C, D, bias = (inputs[k] for k in GRAD_INPUTS)
    dout = torch.randn_like(u)

    @torch.no_grad()
    def fwd_bwd():
        out, ckpt, T = triton_scan.selective_scan_fwd(u, delta, A, B, C, D, None, bias, True)
        return triton_scan.selective_scan_bwd(dout, u, delta, A, B, C, D, None, bias, True, ckpt, T)

    return {"fwd_bwd_direct_ms": timer(fwd_bwd)}


def _scan_runner(backend: str, inputs: dict[str, torch.Tensor], timer: Timer, gpu_timer: Timer | None = None):
    if backend == "cuda":
        module = _import_selective_scan_cuda()
        if module is not None:
            return _time_cuda_extension(module, inputs, timer, gpu_timer)
        return _time_autograd(_mamba_fn_scan, inputs, timer, gpu_timer)
    out, timings = _time_autograd(_kernels_scan(backend), inputs, timer, gpu_timer)
    if backend == "triton":
        return out, lambda: {**timings(), **_time_triton_direct(inputs, timer)}
    return out, timings


def make_gpu_timer(device: torch.device) -> Timer | None:
    """fn -> ms of GPU kernels alone per call (engine/gpu_time.py) on a CUDA device, else None. The wall
    clock of an eager call includes the host's launches; where they outlast the kernels (short sequences)
    the two differ, and a CUDA-graphed model step pays only the GPU's side."""
    if device.type != "cuda":
        return None
    from mambaad_cli.engine.gpu_time import gpu_ms

    return gpu_ms


def _gpu_times(gpu_timer: Timer | None, fwd_bwd: Callable[[], Any],
               forward: Callable[[], Any]) -> dict[str, Any]:
    """The GPU time alone of a forward + backward and of the forward (its % of floor by the kernels, where the
    wall clock of short sequences is the host's launches)."""
    if gpu_timer is None:
        return {}
    try:
        return {"fwd_bwd_gpu_ms": gpu_timer(fwd_bwd), "fwd_gpu_ms": gpu_timer(forward)}
    except Exception as e:  # noqa: BLE001 - no profiler here (e.g. CUPTI missing): the wall clock still stands
        return {"fwd_bwd_gpu_ms": None, "fwd_gpu_ms": None, "gpu_time_error": f"{type(e).__name__}: {e}"}


def _reference_forward(inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """The torch backend's fp32 forward on the first and last batch elements (a bad batch offset shows
    there), and those batch indices."""
    batch = inputs["u"].shape[0]
    rows = sorted({0, batch - 1})
    sub = {k: (v[rows] if k in BATCHED_INPUTS else v).float() for k, v in inputs.items()}
    with torch.no_grad():
        return _kernels_scan("torch")(**sub), rows


# ----------------------------------------------------------------------------------------------- benches


def _cleanup(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _failure(row: dict[str, Any], e: Exception, device: torch.device) -> dict[str, Any]:
    oom = isinstance(e, torch.cuda.OutOfMemoryError)
    row.update(status="OOM" if oom else "ERROR", error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
    _cleanup(device)
    return row


def bench_scan(
    batches: tuple[int, ...],
    shapes: tuple[tuple[int, int], ...],
    dtypes: tuple[str, ...],
    backends: tuple[str, ...],
    device: torch.device,
    timer: Timer,
    bandwidth: float,
    exp_rate: float | None,
    log: Callable[[str], None] = rich_print,
) -> list[dict[str, Any]]:
    """One row per (batch, shape, dtype, backend): correctness gate, timings, GB/s, % of floor, x CUDA."""
    rows: list[dict[str, Any]] = []
    gpu_timer = make_gpu_timer(device)
    for batch in batches:
        for dim, length in shapes:
            for dtype in dtypes:
                itemsize = DTYPES[dtype].itemsize
                floor = floors(batch, dim, length, N_STATE, GROUPS, itemsize, bandwidth, exp_rate)
                inputs = scan_inputs(batch, dim, length, dtype, device)
                reference: list[tuple[torch.Tensor, list[int]]] = []  # computed once, inside the row's try
                group = []
                for backend in backends:
                    row: dict[str, Any] = {
                        "batch": batch, "dim": dim, "length": length, "n_state": N_STATE, "groups": GROUPS,
                        "dtype": dtype, "backend": backend,
                    }
                    try:
                        if not reference:
                            reference.append(_reference_forward(inputs))
                        ref, ref_rows = reference[0]
                        out, timings = _scan_runner(backend, inputs, timer, gpu_timer)
                        row["rel_err"], row["status"] = check_forward(out[ref_rows], ref, dtype)
                        if row["status"] != "OK":
                            log(f"[red bold]WRONG[/red bold]: backend {backend}, batch {batch}, "
                                f"{dim}x{length} {dtype}: relative L2 error {row['rel_err']:.2e} > "
                                f"{TOLERANCE[dtype]:.0e}")
                        del out
                        row.update(timings())
                        del timings  # frees this backend's saved tensors before the next one runs
                        row["fwd_GBps"] = floor["fwd_bytes"] / (row["fwd_ms"] * 1e-3) / 1e9
                        row["fwd_pct_floor"] = 100 * floor["floor_us"] / (row["fwd_ms"] * 1e3)
                        if row.get("fwd_gpu_ms"):  # the same by the forward's GPU time alone
                            row["fwd_pct_floor_gpu"] = 100 * floor["floor_us"] / (row["fwd_gpu_ms"] * 1e3)
                        row["bwd_pct_floor"] = 100 * floor["bwd_floor_us"] / (row["bwd_ms"] * 1e3)
                    except Exception as e:  # noqa: BLE001 - one failing row must not hide the others
                        _failure(row, e, device)
                        log(f"[red bold]{row['status']}[/red bold]: backend {backend}, batch {batch}, "
                            f"{dim}x{length} {dtype}: {escape(row['error'])}")
                    group.append(row)
                cuda = next((r for r in group if r["backend"] == "cuda" and "fwd_bwd_ms" in r), None)
                for row in group:
                    ok = cuda is not None and "fwd_bwd_ms" in row
                    row["speedup_vs_cuda"], row["speedup_timed"] = None, None
                    if ok:
                        ours_ms, cuda_ms, row["speedup_timed"] = comparable_ms(row, cuda)
                        row["speedup_vs_cuda"] = cuda_ms / ours_ms
                    gpu = ok and cuda.get("fwd_bwd_gpu_ms") and row.get("fwd_bwd_gpu_ms")
                    row["speedup_gpu_vs_cuda"] = cuda["fwd_bwd_gpu_ms"] / row["fwd_bwd_gpu_ms"] if gpu \
                        else None
                rows += group
                for row in group:  # progress as it goes: a run cut short still shows what it measured
                    if "fwd_bwd_ms" in row:
                        log(f"scan batch {batch} {dim}x{length} {dtype} {row['backend']}: "
                            f"fwd {row['fwd_ms']:.3f} ms, bwd {row['bwd_ms']:.3f} ms")
                del inputs, reference
                _cleanup(device)
    return rows


def _directions_scan(backend: str) -> Callable[..., torch.Tensor]:
    import kernels  # looked up at call time: tests replace kernels.selective_scan_directions

    def scan(u, delta, A, B, C, D, delta_bias, table):
        return kernels.selective_scan_directions(u, delta, A, B, C, D, delta_bias, table, delta_softplus=True,
                                                 backend=backend)

    return scan


def ss2d_baseline(device: torch.device, scan: str) -> tuple[str | None, str]:
    """(the unfused backend to compare with, why the others were skipped): cuda if it runs, else torch."""
    from kernels.dispatch import BackendUnavailableError

    reasons = []
    for backend in ("cuda", "torch"):
        x = ss2d_inputs(1, GROUPS, 4, "fp32", device, scan)
        try:
            with torch.no_grad():
                _directions_scan(backend)(**x)
            return backend, "; ".join(reasons)
        except (BackendUnavailableError, ImportError) as e:
            reasons.append(f"unfused '{backend}' unavailable: {e}")
        except Exception as e:  # noqa: BLE001 - a path that fails to run: say why, try the next
            reasons.append(f"unfused '{backend}' failed on a tiny input: {type(e).__name__}: {e}")
    return None, "; ".join(reasons)


def bench_ss2d(
    batches: tuple[int, ...],
    dtypes: tuple[str, ...],
    scan: str,
    device: torch.device,
    timer: Timer,
    log: Callable[[str], None] = rich_print,
    sizes: tuple[tuple[int, int], ...] = SS2D_SIZES,
    gpu_timer: Timer | None = None,
) -> list[dict[str, Any]]:
    """The fused SS2D core (kernels.selective_scan_directions, backend triton) against the unfused path
    (gather + scan + scatter-sum, mamba_ssm's kernel or else torch), forward and backward, K=8, N=16. On a
    GPU each forward + backward is also timed by its kernels alone (``gpu_timer``, default make_gpu_timer's):
    at the small maps both paths are bound by the host's launches, which a graphed model step does not pay."""
    gpu_timer = gpu_timer or make_gpu_timer(device)
    baseline, why = ss2d_baseline(device, scan)
    if why:
        log(f"SS2D rows: {escape(why)}")
    if baseline is None:
        return []
    rows: list[dict[str, Any]] = []
    for batch in batches:
        for dtype in dtypes:
            for d_inner, side in sizes:
                inputs = ss2d_inputs(batch, d_inner, side, dtype, device, scan)
                row: dict[str, Any] = {
                    "batch": batch, "d_inner": d_inner, "side": side, "length": side * side,
                    "directions": DIRECTIONS, "n_state": N_STATE, "dtype": dtype, "scan": scan,
                    "baseline": baseline,
                }
                try:
                    base_out, base_timings = _time_autograd(_directions_scan(baseline), inputs, timer,
                                                            gpu_timer)
                    out, fused_timings = _time_autograd(_directions_scan("triton-fused"), inputs, timer,
                                                        gpu_timer)
                    row["rel_err"], row["status"] = check_forward(out, base_out, dtype)
                    if row["status"] != "OK":
                        log(f"[red bold]WRONG[/red bold]: SS2D fused, batch {batch}, d_inner {d_inner}, "
                            f"{side}x{side} {dtype}: relative L2 error {row['rel_err']:.2e} vs {baseline}")
                    del out, base_out
                    fused, base = fused_timings(), base_timings()
                    del fused_timings, base_timings
                    row.update({f"fused_{k}": v for k, v in fused.items() if k != "bwd_method"})
                    row.update({f"{k[:-3]}_baseline_ms" if k.endswith("_ms") else f"baseline_{k}": v
                                for k, v in base.items() if k != "bwd_method"})
                    row["speedup"] = base["fwd_bwd_ms"] / fused["fwd_bwd_ms"]
                    if fused.get("fwd_bwd_gpu_ms") and base.get("fwd_bwd_gpu_ms"):
                        row["speedup_gpu"] = base["fwd_bwd_gpu_ms"] / fused["fwd_bwd_gpu_ms"]
                except Exception as e:  # noqa: BLE001 - one failing row must not hide the others
                    _failure(row, e, device)
                    log(f"[red bold]{row['status']}[/red bold]: SS2D batch {batch}, d_inner {d_inner}, "
                        f"{side}x{side} {dtype}: {escape(row['error'])}")
                rows.append(row)
                del inputs
                _cleanup(device)
    return rows


# fp32 eager reproduces the paper; bf16 autocast with channels-last is the optimised training setting
MODEL_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("fp32", {}),
    ("bf16+cl", {"train.precision": "bf16", "train.channels_last": True}),
    ("tf32+graphs", {"train.precision": "tf32", "train.cuda_graphs": True}),
    ("bf16+cl+graphs", {"train.precision": "bf16", "train.channels_last": True, "train.cuda_graphs": True}),
)


def model_throughput(
    preset: str,
    batch_size: int,
    device: torch.device | str,
    backend: str = "auto",
    image_size: int = 0,
    steps: int = 10,
    warmup: int = 3,
    overrides: dict[str, Any] | None = None,
    phases: tuple[str, ...] = ("train", "infer"),
    cudnn_benchmark: bool | None = None,
) -> dict[str, float]:
    """Training and inference images/s of MambaAD for a preset with random weights (encoder "none").

    Under torchrun (a joined process group of 2 or more, engine/distributed.py) the training step is train's
    data-parallel one (SyncBatchNorm, DDP, graphed after DDP's warm-up when asked), `batch_size` is each
    process's, and images/s count every process's images over the slowest one's time.

    ``phases`` picks which of the two steps to time (a profile of one alone, say). ``cudnn_benchmark`` None
    times cuDNN's convolution algorithms as `train` does (engine/device.seed_everything: on unless
    train.deterministic); True / False force it (restored after).

    image_size 0 keeps the preset's; `overrides` are extra config fields (e.g. model.decoder.scan, and
    train.precision / train.channels_last / train.compile, applied as in training, to both steps).
    """
    from mambaad_cli.config import load_preset
    from mambaad_cli.engine import distributed
    from mambaad_cli.engine.acceleration import apply_speed_options, to_model_input
    from mambaad_cli.engine.graphs import use_cuda_graphs, warmup_calls
    from mambaad_cli.engine.scoring import make_scorer
    from mambaad_cli.engine.train import adamw, make_train_step
    from mambaad_cli.model import build_model

    device = torch.device(device)
    cfg = load_preset(
        preset,
        # eager unless a variant asks for graphs: "fp32" is the fp32 eager baseline
        {"model.encoder.weights": "none", "model.decoder.scan_backend": backend, "train.cuda_graphs": False,
         **(overrides or {})},
    )
    # inference in the training's settings: the scorer reads eval.*
    cfg.eval.precision, cfg.eval.cuda_graphs = cfg.train.precision, cfg.train.cuda_graphs
    size = image_size or cfg.data.image_size
    ctx = distributed.current()
    model = build_model(cfg).to(device)
    if ctx.enabled:
        distributed.sync_batchnorm(model, device)
    apply_speed_options(model, cfg.train)
    params = [p for p in model.parameters() if p.requires_grad]
    graphs = use_cuda_graphs(cfg.train.cuda_graphs, device, cfg.train.compile)
    net = distributed.data_parallel(model, device, graphed=graphs) if ctx.enabled else model
    calls = warmup_calls(ctx.enabled)
    train_fn = make_train_step(net, model, adamw(params, device, 1e-4, graphs), cfg, graphs, calls)  # train's
    infer_fn = make_scorer(model, cfg, device)  # evaluate's own scoring: the model and the anomaly map
    x = to_model_input(torch.rand(batch_size, 3, size, size), device, cfg.train.channels_last)
    warmup = max(warmup, calls + 2) if graphs else warmup  # the capture is not timed

    def sync() -> None:  # every process's queued work done: the timer spans the slowest one
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        distributed.barrier()

    def train_step() -> None:
        train_fn(x)

    @torch.inference_mode()
    def infer_step() -> None:
        infer_fn(x)

    if cudnn_benchmark is None:
        cudnn_benchmark = not cfg.train.deterministic
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result: dict[str, float] = {}
    with _cudnn_benchmark(cudnn_benchmark):
        for name, step, train_mode in (("train", train_step, True), ("infer", infer_step, False)):
            if name not in phases:
                continue
            model.train(train_mode)
            for _ in range(warmup):
                step()
            sync()
            start = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
            seconds = (time.perf_counter() - start) / steps
            result[f"{name}_ms_per_batch"] = 1000 * seconds
            result[f"{name}_images_per_s"] = batch_size * ctx.world_size / seconds
    if device.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


@contextlib.contextmanager
def _cudnn_benchmark(on: bool) -> Iterator[None]:
    """torch.backends.cudnn.benchmark set to `on`, restored after (torch's own cudnn.flags would reset the
    other cuDNN flags to its defaults)."""
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def bench_model(
    batches: tuple[int, ...],
    device: torch.device,
    scan: str,
    preset: str = "mvtec",
    image_size: int = 0,
    steps: int | None = None,
    warmup: int | None = None,
    log: Callable[[str], None] = rich_print,
    variants: tuple[tuple[str, dict[str, Any]], ...] = MODEL_VARIANTS,
) -> list[dict[str, Any]]:
    """MambaAD training / inference images/s per batch size and variant (paper preset, scan backend auto):
    fp32 eager as the paper runs, and the optimised settings, measured one after the other."""
    from kernels.dispatch import resolve_backend

    gpu = device.type == "cuda"
    steps = steps if steps is not None else (10 if gpu else 2)
    warmup = warmup if warmup is not None else (3 if gpu else 1)
    backend = resolve_backend("auto", torch.empty(0, device=device))
    rows = []
    for batch in batches:
        for variant, overrides in variants:
            row: dict[str, Any] = {"preset": preset, "batch": batch, "scan": scan, "scan_backend": backend,
                                   "variant": variant}
            try:
                row.update(model_throughput(preset, batch, device, "auto", image_size, steps, warmup,
                                            {"model.decoder.scan": scan, **overrides}))
                row["image_size"] = image_size or _preset_image_size(preset)
                row["status"] = "OK"
            except Exception as e:  # noqa: BLE001 - e.g. out of memory at a large batch
                _failure(row, e, device)
                log(f"[red bold]{row['status']}[/red bold]: model {variant}, batch {batch}: "
                    f"{escape(row['error'])}")
            rows.append(row)
            _cleanup(device)
    return rows


def _preset_image_size(preset: str) -> int:
    from mambaad_cli.config import load_preset

    return load_preset(preset).data.image_size


# ------------------------------------------------------------------------------------------------ driver


def _versions() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {"torch": torch.__version__, "triton": version("triton"), "python": platform.python_version()}


def switches() -> dict[str, str]:
    """The MAMBAAD_* environment variables set now: the kernel and path choices (README's switches table)
    that a figure was measured with, beside their defaults."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("MAMBAAD_")}


def environment(device: torch.device) -> dict[str, Any]:
    """Device name, versions and the MAMBAAD_* switches set, recorded with every result."""
    info: dict[str, Any] = {"device": str(device), **_versions(), "switches": switches()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name, sm_count=props.multi_processor_count,
            memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
            max_sm_clock_mhz=gpu_max_sm_clock_mhz(),
        )
    else:
        info.update(name=platform.processor() or platform.machine() or "cpu", threads=torch.get_num_threads())
    return info


def measure_rates(
    device: torch.device, env: dict[str, Any], warmup_ms: float, rep_ms: float,
    log: Callable[[str], None] = rich_print,
) -> dict[str, Any]:
    """Copy bandwidth (bytes/s) and, on a GPU, the measured and datasheet exp2 rates (exp2/s); logs a line."""
    bandwidth = measure_copy_bandwidth(device, warmup_ms=warmup_ms, rep_ms=rep_ms)
    rates: dict[str, Any] = {"copy_bytes": COPY_BYTES[device.type], "copy_bandwidth_Bps": bandwidth,
                             "exp2_rate_measured": None, "exp2_rate_datasheet": None}
    line = f"copy bandwidth: {bandwidth / 1e9:.0f} GB/s ({COPY_BYTES[device.type] / 2**20:.0f} MiB copy, " \
           "read + written)"
    if device.type != "cuda":
        log(line + "; exp2 rate: not measured on CPU", highlight=False)
        return rates
    try:
        rates["exp2_rate_measured"] = measure_exp2_rate(device, warmup_ms, rep_ms)
        line += f"; exp2: {rates['exp2_rate_measured'] / 1e12:.2f} T/s measured (Triton microkernel)"
    except Exception as e:  # noqa: BLE001 - without it the exp floor is n/a, the rest still runs
        line += f"; exp2 microkernel failed ({type(e).__name__}: {escape(str(e).splitlines()[0][:200])})"
    clock = env.get("max_sm_clock_mhz")
    if clock:
        sheet = rates["exp2_rate_datasheet"] = datasheet_exp2_rate(env["sm_count"], clock)
        line += (f", datasheet {SFU_EXP2_PER_CLOCK_PER_SM}/clk/SM x {env['sm_count']} SMs x {clock:.0f} MHz "
                 f"= {sheet / 1e12:.2f} T/s")
    else:
        line += ", datasheet n/a (no nvidia-smi clock)"
    log(line, highlight=False)
    return rates


@dataclass
class _Plan:
    batches: tuple[int, ...]
    dtypes: tuple[str, ...]
    shapes: tuple[tuple[int, int], ...]
    backends: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)


def _plan(options: BenchOptions, device: torch.device) -> _Plan:
    """The device's defaults for what the options left open; UserError for a backend that cannot run."""
    gpu = device.type == "cuda"
    skipped = {}
    if options.backends is not None:
        for name in options.backends:
            if name != "torch" and not gpu:
                where = "none was found" if not torch.cuda.is_available() else f"this run is on {device}"
                raise UserError(f"--backends {name}: needs a CUDA GPU and {where}; "
                                "on CPU only the torch backend runs (--backends torch)")
            reason = backend_status(name, device)
            if reason:
                raise UserError(f"--backends {name}: {reason}")
        backends = options.backends
    elif gpu:
        skipped = {name: reason for name in ("triton", "cuda") if (reason := backend_status(name, device))}
        backends = tuple(n for n in ("triton", "cuda") if n not in skipped) or ("torch",)
    else:
        backends = ("torch",)
    return _Plan(
        batches=options.batches or ((GPU_BATCH,) if gpu else (CPU_BATCH,)),
        dtypes=options.dtypes or (("fp32", "bf16") if gpu else ("fp32",)),
        shapes=options.shapes or (MAMBAAD_SHAPES if gpu else CPU_SHAPES),
        backends=backends,
        skipped=skipped,
    )


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def run_bench(options: BenchOptions, console=None) -> dict[str, Any]:
    """Run every benchmark `options` asks for, print the tables as they come, and return all numbers.

    The result has keys command, environment, options, plan, rates, floors, scan, ss2d, model, summary and
    ok (False when a row is WRONG or failed), and autotune_picks where the Triton scan ran. With
    options.json_path the result is also written there (atomically). The last thing printed is the summary
    table.
    """
    from rich.console import Console

    from mambaad_cli.atomic import write_text
    from mambaad_cli.engine.bench_tables import (
        floors_table,
        model_table,
        scan_table,
        ss2d_table,
        summary_rows,
        summary_table,
    )
    from mambaad_cli.engine.device import resolve_device

    console = console or Console()
    log = console.print
    device = resolve_device(options.device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    elif not torch.cuda.is_available():
        log("no CUDA GPU was found: benchmarking the CPU path (torch backend) on small shapes")
    else:
        log(f"--device {options.device}: benchmarking the CPU path (torch backend)")
    plan = _plan(options, device)
    env = environment(device)
    log(f"command: {options.command}", soft_wrap=True, highlight=False, markup=False)
    log(f"device: {env['name']} ({device}); torch {env['torch']}; triton {env['triton']}; "
        f"python {env['python']}", highlight=False)
    for name, reason in plan.skipped.items():
        log(f"backend {name}: skipped ({reason})", soft_wrap=True, highlight=False, markup=False)

    rates = measure_rates(device, env, options.warmup_ms, options.rep_ms, log)
    bandwidth, exp_rate = rates["copy_bandwidth_Bps"], rates["exp2_rate_measured"]
    floor_rows = [
        {"batch": b, "dim": d, "length": n, "n_state": N_STATE, "groups": GROUPS, "dtype": t,
         **floors(b, d, n, N_STATE, GROUPS, DTYPES[t].itemsize, bandwidth, exp_rate)}
        for b in plan.batches for d, n in plan.shapes for t in plan.dtypes
    ]
    log(floors_table(floor_rows))

    timer = make_timer(device, options.warmup_ms, options.rep_ms)
    scan_rows = bench_scan(plan.batches, plan.shapes, plan.dtypes, plan.backends, device, timer, bandwidth,
                           exp_rate, log)
    log(scan_table(scan_rows))

    ss2d_rows: list[dict[str, Any]] = []
    if device.type != "cuda":
        log("SS2D rows: skipped (the fused kernel is Triton: it needs a CUDA GPU)")
    elif "triton" not in plan.backends:
        log("SS2D rows: skipped (they time the Triton fused kernel; backend triton is not selected)")
    else:
        ss2d_rows = bench_ss2d(plan.batches, plan.dtypes, options.scan, device, timer, log)
        if ss2d_rows:
            log(ss2d_table(ss2d_rows))

    model_rows: list[dict[str, Any]] = []
    if options.model:
        model_rows = bench_model(plan.batches, device, options.scan, log=log)
        log(model_table(model_rows))

    result: dict[str, Any] = {
        "command": options.command,
        "environment": env,
        "options": asdict(options),
        "plan": asdict(plan),
        "rates": rates,
        "floors": floor_rows,
        "scan": scan_rows,
        "ss2d": ss2d_rows,
        "model": model_rows,
    }
    if "kernels.triton_scan" in sys.modules:  # the picks behind the Triton rows (never imports triton)
        result["autotune_picks"] = sys.modules["kernels.triton_scan"].tuned_picks()
    failed = [r for r in scan_rows + ss2d_rows + model_rows if r.get("status") != "OK"]
    result["ok"] = not failed
    result["summary"] = summary_rows(result)
    if options.json_path:
        write_text(options.json_path, json.dumps(_finite(result), indent=2) + "\n")
        log(f"wrote {options.json_path}", soft_wrap=True, highlight=False, markup=False)
    if failed:
        log(f"[red bold]{len(failed)} row(s) WRONG or failed[/red bold]: see the status column")
    log(summary_table(result))
    return result
