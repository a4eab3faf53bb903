"""Data-parallel runs: one process per GPU (or CPU processes over gloo), started by torchrun.

torchrun (or `mambaad train --gpus N`, engine/launch.py) starts N copies of the same command and tells
each one who it is through WORLD_SIZE, RANK and LOCAL_RANK. `distributed_session` reads them, joins the
process group (NCCL on CUDA, gloo on the CPU), and gives each process its GPU (cuda:LOCAL_RANK).
Without those variables (or with WORLD_SIZE 1) everything here is a no-op and the run is the ordinary
single-process one.

Roles: every rank trains on its share of each batch and scores its shard of the test set; rank 0 alone
writes files (run folder, log.csv, checkpoints, metrics) and runs the small steps whose result must not
depend on the number of processes (calibration); `on_main` hands its result to the other ranks.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from mambaad_cli.engine.device import resolve_device
from mambaad_cli.engine.graphs import side_stream
from mambaad_cli.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_context() -> DistContext:
    """Who this process is, from torchrun's environment (a single process when it is not set)."""
    try:
        return DistContext(
            rank=int(os.environ.get("RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )
    except ValueError:
        raise UserError("RANK / WORLD_SIZE / LOCAL_RANK: not integers (launch with torchrun)") from None


def launched_by_torchrun() -> bool:
    return env_context().enabled


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that prints and writes. Valid before the group is joined."""
    return env_context().is_main


def current() -> DistContext:
    """The joined process group's context; a single process when no group is active."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return DistContext(dist.get_rank(), dist.get_world_size(), env_context().local_rank)
    return DistContext()


@contextlib.contextmanager
def distributed_session(device_name: str) -> Iterator[tuple[DistContext, torch.device]]:
    """Join the process group when torchrun started this process (and leave it at the end if this call
    joined it); yields the context and this process's device."""
    ctx = env_context()
    if not ctx.enabled:
        yield ctx, resolve_device(device_name)
        return
    device = _rank_device(device_name, ctx.local_rank)
    joined = not dist.is_initialized()
    if joined:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    try:
        yield ctx, device
    finally:
        if joined:
            dist.destroy_process_group()


def _rank_device(device_name: str, local_rank: int) -> torch.device:
    """CUDA: the GPU of this local rank, whatever index --device named; the CPU stays the CPU."""
    device = resolve_device(device_name)
    if device.type != "cuda":
        return device
    if local_rank >= torch.cuda.device_count():
        raise UserError(
            f"LOCAL_RANK {local_rank}: only {torch.cuda.device_count()} CUDA device(s) visible "
            f"(start at most that many processes per node)"
        )
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


# --------------------------------------------------------------------------- collectives


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run fn on rank 0 only and give every rank its result. A UserError raised there is raised on every
    rank (so none waits forever for a rank that gave up)."""
    ctx = current()
    if not ctx.enabled:
        return fn(*args, **kwargs)
    payload: list[Any] = [None]
    if ctx.is_main:
        try:
            payload = [("ok", fn(*args, **kwargs))]
        except UserError as e:
            payload = [("error", str(e))]
    dist.broadcast_object_list(payload, src=0)
    kind, value = payload[0]
    if kind == "error":
        raise UserError(value)
    return value


def broadcast_from_main(obj: T) -> T:
    """Rank 0's obj on every rank (picklable objects)."""
    if not current().enabled:
        return obj
    payload = [obj]
    dist.broadcast_object_list(payload, src=0)
    return payload[0]


def gather_to_main(obj: T) -> list[T] | None:
    """Every rank's obj, in rank order, on rank 0; None on the other ranks. Sizes may differ per rank."""
    ctx = current()
    if not ctx.enabled:
        return [obj]
    gathered: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def sync_buffers_from_main(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, so that every rank scores with
    exactly the model rank 0 saved (on the CPU each rank's BatchNorm statistics follow its own batches)."""
    if current().enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def all_agree(flag: bool) -> bool:
    """True when every rank passes True (a MIN all-reduce, eager, on this rank's GPU under NCCL); a single
    process gets its own flag back."""
    if not current().enabled:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def mean_over_ranks(value: torch.Tensor) -> float:
    """The mean of a scalar over the ranks (every rank must call it at the same point)."""
    ctx = current()
    if not ctx.enabled:
        return float(value)
    t = value.detach().float().reshape(1).clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t) / ctx.world_size


# --------------------------------------------------------------------------- data and model


def shard(indices: list[int], rank: int, world_size: int) -> list[int]:
    """Rank `rank`'s contiguous block of indices (sizes differ by at most one; no padding, no duplicate).
    Contiguous blocks concatenated in rank order give back the original order."""
    bounds = np.linspace(0, len(indices), world_size + 1).round().astype(int)
    return list(indices[bounds[rank] : bounds[rank + 1]])


def per_process_batch(global_batch: int, world_size: int) -> int:
    """train.batch_size is the global batch (the paper's 16 on any number of GPUs); each process loads
    its share."""
    if global_batch % world_size:
        raise UserError(
            f"--batch-size {global_batch}: the global batch must divide evenly over {world_size} processes"
        )
    return global_batch // world_size


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """A seed for (run seed, epoch, rank): each rank draws its own dropout masks, the same after a resume."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """On CUDA, the fusion's BatchNorm layers become SyncBatchNorm: batch statistics over the global batch,
    as one process computes them (the frozen encoder's BatchNorm is in eval mode and untouched). PyTorch's
    SyncBatchNorm needs a GPU: CPU processes normalise with their own share of the batch."""
    if device.type == "cuda" and hasattr(model, "fusion"):
        model.fusion = nn.SyncBatchNorm.convert_sync_batchnorm(model.fusion)
    return model


def data_parallel(model: nn.Module, device: torch.device, graphed: bool = False) -> nn.Module:
    """Wrap for training: DDP averages the gradients of the trainable parameters over the ranks during
    backward (the frozen encoder has none). Buffers are synchronised once, at the start, not at every
    forward: the encoder's are frozen, the fusion's BatchNorm statistics are kept in step by SyncBatchNorm
    on CUDA (on the CPU each rank keeps its own; rank 0's are saved). `graphed`: the training step will be
    captured as a CUDA graph, and PyTorch's notes on capturing DDP ask that it be built on a side stream."""
    # Depthwise conv weights (C, 1, k, k) get gradients whose stride along the size-1 dim differs from
    # DDP's bucket view: the same memory layout, but DDP warns once per process. Not worth a warning.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    params = inspect.signature(nn.parallel.DistributedDataParallel).parameters
    key = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"  # older torch
    buffers = {key: False}

    def wrap() -> nn.Module:
        return nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            gradient_as_bucket_view=True,
            **buffers,
        )

    if not (graphed and device.type == "cuda"):
        return wrap()
    side = side_stream(device)  # the stream the warm-up calls and the capture run on (engine/graphs.py)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        net = wrap()
    torch.cuda.current_stream(device).wait_stream(side)
    return net
