"""CUDA graphs: a step of fixed shapes captured once and replayed, so the CPU launches nothing.

MambaAD's decoder runs thousands of small kernels per step (16 SS2D blocks with their projections,
norms, glue and scans, plus the local conv branches). At batch 16 on an H200 launching them costs about
as much as running them: the GPU waits on the CPU for much of a step. Replaying a captured graph launches
the whole step at once.

``GraphedStep`` wraps a function of one tensor whose work is all on the GPU (no host reads, no
``.item()``), such as a training iteration (forward, loss, backward, clipping, a capturable optimizer's
step) or a forward pass. The first calls run eagerly on a side stream (PyTorch's recipe: they compile
and autotune the Triton kernels and settle the allocator), then one call is captured; later calls with
an input of the same shape, dtype and strides copy it into the captured input and replay. The shape
captured is the first to have had its eager warm-up calls; any other input (a last, smaller batch) runs
eagerly, which gives the same result. Outputs are returned as clones,
so they outlive the next replay.

``train.cuda_graphs`` and ``eval.cuda_graphs`` default to ``auto``: graphs wherever they can apply (one CUDA
process, modules not torch.compile'd), and a capture that fails falls back to eager calls with one line
saying so. ``true`` insists (train checks first that it can apply) and lets a failed capture raise; ``false``
stays eager.

Data-parallel training (``--gpus N``) captures its step too, ``auto`` included: the step then holds
DDP's NCCL all-reduces, and PyTorch's recipe for that is followed (DDP built on a side stream,
engine/distributed.py, and DDP_WARMUP_CALLS eager calls before the capture). A capture only records the
collectives, so no rank waits on another while capturing; before the first replay the ranks agree (one
eager all-reduce of a flag) that every capture succeeded. If one failed, every rank drops its graph and
goes on eagerly (auto) or raises (true), instead of replaying all-reduces that the failed rank would
never join.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mambaad_cli.engine.progress import console

WARMUP_CALLS = 3  # eager calls before the capture (PyTorch's examples use 3 on a side stream)
# PyTorch's CUDA-graphs notes ask for at least 11 eager DDP iterations before a whole-step capture (DDP
# settles its gradient buckets and its per-iteration bookkeeping over the first ones)
DDP_WARMUP_CALLS = 11
OTHER_RANK_FAILED = "another process's capture failed"


def warmup_calls(data_parallel: bool) -> int:
    """Eager calls of a training step before its capture: DDP_WARMUP_CALLS under DDP, else WARMUP_CALLS."""
    return DDP_WARMUP_CALLS if data_parallel else WARMUP_CALLS


def use_cuda_graphs(setting: bool | str, device: torch.device, compiled: bool = False) -> bool:
    """Whether a step runs as a CUDA graph. auto: on a CUDA device whose modules are not torch.compile'd
    (compiled regions measured slower inside the graph), one process or data-parallel alike since v1.17.
    true: on a CUDA device (train's check_cuda_graphs refuses the rest with one line first). false: never."""
    if device.type != "cuda" or setting is False:
        return False
    if setting == "auto":
        return not compiled
    return bool(setting)


def is_compiled(model: torch.nn.Module) -> bool:
    """True when a module of `model` was compiled in place (nn.Module.compile, engine/acceleration.py), which
    keeps its compiled call in `_compiled_call_impl`."""
    return any(getattr(m, "_compiled_call_impl", None) is not None for m in model.modules())


_SIDE_STREAMS: dict[torch.device, torch.cuda.Stream] = {}


def side_stream(device: torch.device) -> torch.cuda.Stream:
    """One side stream per device, for everything a captured step does before and during its capture: DDP's
    construction, the eager warm-up calls and the capture itself. DDP keeps the AccumulateGrad nodes it made
    when built, and autograd syncs (and warns) wherever a gradient reaches one from another stream; one
    stream throughout is PyTorch's recipe for capturing DDP."""
    device = torch.device(device)
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device not in _SIDE_STREAMS:
        _SIDE_STREAMS[device] = torch.cuda.Stream(device=device)
    return _SIDE_STREAMS[device]


def _signature(x: torch.Tensor) -> tuple:
    return tuple(x.shape), x.dtype, x.stride(), x.device


class GraphedStep:
    """Calls ``fn(x)``; from the ``warmup``+1-th call on, by replaying a CUDA graph of it.

    With ``on_failure`` (train.cuda_graphs / eval.cuda_graphs auto), a capture that raises is reported
    once through it and every call from then on, that one included, runs ``fn`` eagerly; without, the
    error propagates. ``agree`` (data-parallel steps: engine/distributed.all_agree) takes whether this
    process captured and returns whether every process did, before anything captured is replayed."""

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        warmup: int = WARMUP_CALLS,
        on_failure: Callable[[str], None] | None = None,
        agree: Callable[[bool], bool] | None = None,
    ):
        self.fn = fn
        self.warmup = warmup
        self.on_failure = on_failure
        self.agree = agree
        self.failed = False  # a capture raised: eager from then on
        self.warm: dict[tuple, int] = {}  # eager calls so far per input signature
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_input: torch.Tensor | None = None
        self.static_output: torch.Tensor | None = None
        self._capturing: torch.cuda.CUDAGraph | None = None  # the graph being captured, for _undo_capture

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.failed or not x.is_cuda:
            return self._on_side_stream(x)
        if self.graph is not None:
            if _signature(x) == _signature(self.static_input):
                self.static_input.copy_(x)
                self.graph.replay()
                return self.static_output.clone()
            return self._on_side_stream(x)  # another shape: eager, same result
        # the capture takes the first input shape that has had `warmup` eager calls: a shape seen for the
        # first time (an evaluation's last, smaller batch of a class) would compile and autotune the Triton
        # kernels inside the capture, which breaks it (two H200s, --gpus 2: each rank's 56 test images of
        # a class came as 16, 16, 16, 8, and the capture fell on the 8, session 25)
        signature = _signature(x)
        self.warm[signature] = self.warm.get(signature, 0) + 1
        if self.warm[signature] <= self.warmup:
            return self._on_side_stream(x)
        return self._capture_or_fall_back(x)

    def _capture_or_fall_back(self, x: torch.Tensor) -> torch.Tensor:
        stream = torch.cuda.current_stream(x.device) if x.is_cuda else None
        generator = _default_generator(x.device)
        rng = generator.clone_state() if generator is not None else None  # not in capture mode
        error: Exception | None = None
        try:
            self._record(x)
        except Exception as e:  # noqa: BLE001 - any failed capture; the eager call below shows fn's own errors
            _undo_capture(self._capturing, x.device, stream, generator, rng)
            error = e
        self._capturing = None
        if self.agree is not None and not self.agree(error is None) and error is None:
            error = RuntimeError(OTHER_RANK_FAILED)  # that rank's own line says why
            _undo_capture(None, x.device, stream, generator, rng)  # random draws as if never captured
        if error is None:
            self.graph.replay()  # capturing records the work without running it
            return self.static_output.clone()
        self.graph, self.static_input, self.static_output, self.failed = None, None, None, True
        if self.on_failure is None:
            raise error
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        self.on_failure(first)
        return self._on_side_stream(x)

    def _on_side_stream(self, x: torch.Tensor) -> torch.Tensor:
        """fn(x) on the side stream, the current stream waiting for it. Every eager call runs there, the
        warm-ups and those after a failed capture or of another shape: DDP's AccumulateGrad nodes were made on
        it, and a gradient from another stream makes autograd sync and warn (seen on two H200s after a
        fallback, session 20)."""
        if not x.is_cuda:
            return self.fn(x)
        side = side_stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            out = self.fn(x)
        torch.cuda.current_stream(x.device).wait_stream(side)
        return out

    def _record(self, x: torch.Tensor) -> None:
        """Capture fn on a copy of x into self.graph: recorded, not run (a collective in it is only recorded
        too, so no process waits here for another)."""
        self.static_input = x.clone(memory_format=torch.preserve_format)
        if self.static_input.stride() != x.stride():  # clone keeps dense strides; be exact
            self.static_input = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device)
            self.static_input.copy_(x)
        graph = self._capturing = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(x.device)
        # thread_local: only this thread's unsafe calls break the capture. Under the default ("global") the
        # DataLoader's pin-memory thread, allocating pinned buffers for the next batch meanwhile, invalidated
        # it (seen on the H200 in real training; the synthetic benchmarks have no loader)
        with torch.cuda.graph(graph, stream=side_stream(x.device), capture_error_mode="thread_local"):
            self.static_output = self.fn(self.static_input)
        self.graph = graph


def _default_generator(device: torch.device) -> torch.Generator | None:
    # the CUDA generator a capture registers by itself (dropout / drop_path draw from it)
    generators = torch.cuda.default_generators
    return generators[device.index] if device.index is not None and device.index < len(generators) else None


def _undo_capture(graph, device: torch.device, stream, generator, rng) -> None:
    """What a capture that raised leaves behind, so that eager calls (and later captures) work: when
    capture_end raises, torch.cuda.graph does not restore the current stream, the default generator stays
    in capture mode (its next eager draw raises "Offset increment outside graph capture"), and the caching
    allocator keeps the graph's private pool open. The generator goes back to its state before the capture
    (the draws recorded meanwhile never ran)."""
    if stream is not None:
        torch.cuda.set_stream(stream)
    if generator is not None:
        generator.graphsafe_set_state(rng)
    if graph is not None and device.type == "cuda":
        try:  # private allocator calls (torch 2.4+); harmless if the capture had already closed the pool
            pool = graph.pool()
            torch._C._cuda_endAllocateToPool(device.index, pool)
            torch._C._cuda_releasePool(device.index, pool)
        except (AttributeError, RuntimeError, TypeError):
            pass


def graph_step(
    fn: Callable[[torch.Tensor], torch.Tensor],
    setting: bool | str,
    section: str,
    warmup: int = WARMUP_CALLS,
    agree: Callable[[bool], bool] | None = None,
) -> GraphedStep:
    """GraphedStep of fn for the config value `setting` of `section`.cuda_graphs, captured after `warmup`
    eager calls: under auto a failed capture prints one line and the calls go on eagerly; under true it
    raises. `agree`: GraphedStep's, for data-parallel steps."""

    def notice(reason: str) -> None:
        from mambaad_cli.engine.distributed import is_main_process  # it imports this module

        if reason == OTHER_RANK_FAILED and not is_main_process():
            return  # rank 0 says it once; a rank whose own capture failed says why
        console.print(f"CUDA graphs: the capture failed ({reason}); going on eagerly "
                      f"(--set {section}.cuda_graphs=false skips the attempt)")

    return GraphedStep(fn, warmup=warmup, on_failure=notice if setting == "auto" else None, agree=agree)
