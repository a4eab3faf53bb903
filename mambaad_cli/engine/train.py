"""Training: the paper's recipe (reference/mambaad_spec.md 4.1), then evaluation on the test split.

AdamW (lr 5e-3 at batch 16, scaled with the batch), weight decay 1e-4 on weights of two or more
dimensions that are not biases, lr x0.1 after 80 % of the iterations, grad-norm clip 5, loss
5 x sum over scales of the MSE between encoder and decoder features, seed 42.
Options beyond the paper: TF32 products or bf16 autocast, channels-last, torch.compile
(engine/acceleration.py), fused AdamW on GPUs, and data-parallel training over several processes under
torchrun (engine/distributed.py, engine/launch.py).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from kernels.directions import FUSED
from kernels.dispatch import BackendUnavailableError, check_backend, resolve_backend
from mambaad_cli.atomic import write_text
from mambaad_cli.config import Config
from mambaad_cli.data import build_datasets, cache_images, collate_samples
from mambaad_cli.data.build import split_data_configs
from mambaad_cli.engine.acceleration import (
    apply_speed_options,
    as_fp32,
    autocast,
    compile_error,
    is_compile_error,
    tf32_matmuls,
    to_model_input,
)
from mambaad_cli.engine.calibrate import calibrate, in_sample_subset, split_validation
from mambaad_cli.engine.checkpoint import load_train_state, update_model_json
from mambaad_cli.engine.checkpoint_writer import CheckpointWriter
from mambaad_cli.engine.device import seed_everything
from mambaad_cli.engine.distributed import (
    DistContext,
    all_agree,
    barrier,
    data_parallel,
    distributed_session,
    mean_over_ranks,
    on_main,
    per_process_batch,
    rank_seed,
    sync_batchnorm,
    sync_buffers_from_main,
)
from mambaad_cli.engine.evaluate import EvalResult, evaluate, write_metrics
from mambaad_cli.engine.graphs import (
    WARMUP_CALLS,
    graph_step,
    use_cuda_graphs,
    warmup_calls,
)
from mambaad_cli.engine.progress import console, make_progress
from mambaad_cli.engine.runs import new_run_dir, point_latest
from mambaad_cli.engine.splits import train_splits
from mambaad_cli.engine.training_weights import TrainingCastWeights, train_cast_weights_on
from mambaad_cli.errors import UserError
from mambaad_cli.model import build_model

LOG_FIELDS = ["step", "epoch", "loss", "lr", "images_per_s", "elapsed_s"]


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    seconds: float
    metrics: EvalResult | None


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay on trainable tensors of >= 2 dims not named *.bias (A_logs and dt_projs_bias included, as
    in ADer); none on 1-D tensors and biases."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and not name.endswith(".bias") else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(params, device: torch.device, lr: float, graphed: bool = False, **options) -> torch.optim.AdamW:
    """AdamW, fused into a few kernels on GPUs (the multi-tensor version launches many small kernels per
    step; the update is the same). ``graphed``: capturable, with the learning rate a device tensor that the
    scheduler updates in place, so that a captured step reads the current rate."""
    if graphed:
        return torch.optim.AdamW(params, lr=torch.tensor(lr, device=device), fused=True, capturable=True,
                                 **options)
    return torch.optim.AdamW(params, lr=lr, fused=device.type == "cuda", **options)


def match_lr_kinds(optimizer: torch.optim.Optimizer, scheduler, device: torch.device, graphed: bool) -> None:
    """After a resume: the learning rates as this run keeps them, whatever run saved them. A graphed run
    needs a device tensor that the scheduler fills in place (a float would be baked into the captured
    step, and the lr decay lost); an eager one plain floats (the saved tensors come back on the CPU)."""
    for group in optimizer.param_groups:
        value = float(group["lr"])
        group["lr"] = torch.tensor(value, device=device) if graphed else value
        if "initial_lr" in group:
            group["initial_lr"] = float(group["initial_lr"])
    scheduler.base_lrs = [float(v) for v in scheduler.base_lrs]
    scheduler._last_lr = [float(v) for v in scheduler.get_last_lr()]


def check_cuda_graphs(cfg: Config, device: torch.device) -> None:
    """One line (UserError) when --cuda-graphs (train.cuda_graphs true) cannot apply: it needs CUDA devices
    and eager modules (data-parallel steps are captured too: engine/graphs.py). auto needs no check: it turns
    graphs off there."""
    if cfg.train.cuda_graphs is not True:
        return
    if device.type != "cuda":
        raise UserError(
            f"--cuda-graphs: needs a CUDA device, got train.device {device} (--set train.cuda_graphs=false)"
        )
    if cfg.train.compile:
        raise UserError("--cuda-graphs: not with --compile; choose one")


def step_schedule(total_steps: int, decay_at: float, factor: float):
    """lr multiplier: 1 until decay_at * total_steps iterations, then `factor` (timm StepLR,
    stepped per iteration)."""
    boundary = int(decay_at * total_steps)
    return lambda step: 1.0 if step < boundary else factor


def train(cfg: Config, resume: str | Path | None = None, show_progress: bool = True) -> TrainResult:
    """Train (or resume) a run and evaluate it at the end. Returns the run folder and the metrics.
    A dataset evaluated over separately trained splits (COCO-AD, coco_split -1) trains each split.
    Under torchrun every process calls this (engine/distributed.py): train.batch_size is the global
    batch, split over the processes; rank 0 alone writes the run folder; every rank gets the result."""
    with distributed_session(cfg.train.device) as (ctx, device):
        data_configs = split_data_configs(cfg.data)
        if len(data_configs) > 1:
            if resume is not None:
                raise UserError("--resume: give one split's run folder (<run>/splitK), not the whole run")
            run_dir, steps, seconds, summary = train_splits(
                cfg, data_configs, lambda c: _train_one(c, None, show_progress, ctx, device)
            )
            return TrainResult(run_dir=run_dir, steps=steps, seconds=seconds, metrics=summary)
        return _train_one(cfg, resume, show_progress, ctx, device)


def check_scan_backend(scan_backend: str, device: torch.device) -> None:
    """UserError naming the option when the chosen scan backend cannot run on ``device``, before any work."""
    try:
        check_backend(scan_backend, torch.empty(0, device=device))
    except BackendUnavailableError as e:
        raise UserError(f"--set model.decoder.scan_backend={scan_backend}: {e}") from None


def kernel_compile_notice(scan_backend: str, device: torch.device) -> str | None:
    """One line saying why the first steps are slow when they compile and autotune the Triton scan."""
    if device.type != "cuda":
        return None
    if scan_backend == "auto":
        scan_backend = resolve_backend(scan_backend, torch.empty(0, device=device))
    if scan_backend not in ("triton", FUSED):
        return None
    return ("the first steps compile and autotune the Triton scan kernels for this model's shapes "
            "(about a minute on an H200; cached on disk for later runs)")


def deterministic_notice(scan_backend: str, deterministic: bool, device: torch.device) -> str | None:
    """One line on what --deterministic does to the scan on a GPU: the Triton and CUDA backwards sum with
    atomics, so auto runs the PyTorch scan (kernels/dispatch.resolve_backend), and a backend named
    explicitly keeps its atomics."""
    if not deterministic or device.type != "cuda":
        return None
    if scan_backend == "auto":
        return ("--deterministic: the scan runs in PyTorch, repeatable and much slower (the Triton backward "
                "sums with atomics, which no two runs order alike)")
    if scan_backend == "torch":
        return None
    return (f"--deterministic: model.decoder.scan_backend={scan_backend} sums its gradients with atomics, so "
            "GPU runs are not bitwise repeatable (auto would train with the PyTorch scan)")


def _train_one(
    cfg: Config, resume: str | Path | None, show_progress: bool, ctx: DistContext, device: torch.device
) -> TrainResult:
    check_scan_backend(cfg.model.decoder.scan_backend, device)
    check_cuda_graphs(cfg, device)
    graphs = use_cuda_graphs(cfg.train.cuda_graphs, device, cfg.train.compile)
    run_dir = on_main(_prepare_run_dir, cfg, resume)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    train_ds, test_ds, class_names = build_datasets(cfg.data)
    if cfg.data.cache_images:  # rank 0 decodes (once), every rank reads the same files
        train_ds, test_ds = on_main(cache_images, (train_ds, test_ds), cfg.data.num_workers, console.print)
    train_ds, val_ds = split_validation(train_ds, cfg.data.val_fraction, cfg.train.seed)
    if len(train_ds) == 0:
        raise UserError(f"--data-root {cfg.data.root}: no training images found")
    loader, start_epoch_fn = _train_loader(train_ds, cfg, device, ctx)

    model = build_model(cfg).to(device)
    notices = (kernel_compile_notice(cfg.model.decoder.scan_backend, device),
               deterministic_notice(cfg.model.decoder.scan_backend, cfg.train.deterministic, device))
    for notice in notices:
        if notice and ctx.is_main:
            console.print(notice)
    if ctx.enabled:
        sync_batchnorm(model, device)
    apply_speed_options(model, cfg.train)
    lr = cfg.train.lr * cfg.train.batch_size / 16  # the global batch, whatever the number of processes
    groups = param_groups(model, cfg.train.weight_decay)
    betas = tuple(cfg.train.betas)
    optimizer = adamw(groups, device, lr, graphs, betas=betas, eps=cfg.train.eps)
    total_steps = cfg.train.epochs * len(loader)
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, step_schedule(cfg.train.epochs * len(loader), cfg.train.lr_decay_at, cfg.train.lr_decay)
    )
    step, start_epoch = 0, 0
    if resume is not None:
        step, start_epoch = load_train_state(run_dir, model, optimizer, scheduler)
        match_lr_kinds(optimizer, scheduler, device, graphs)
        if ctx.is_main:
            console.print(f"resumed {run_dir} at epoch {start_epoch}, step {step}")
    net = data_parallel(model, device, graphed=graphs) if ctx.enabled else model
    warmup = warmup_calls(ctx.enabled)
    train_step = make_train_step(net, model, optimizer, cfg, graphs, warmup)
    if graphs and ctx.is_main:
        console.print(f"CUDA graphs: each training step is captured after {warmup} eager ones, then "
                      "replayed (train.cuda_graphs; --no-cuda-graphs runs eagerly)")

    log = TrainLog(run_dir / "log.csv", append=resume is not None) if ctx.is_main else None
    start = time.perf_counter()
    window_images, window_start = 0, time.perf_counter()
    writer = CheckpointWriter(cfg.train.checkpoint_in_background) if ctx.is_main else None
    try:
        with make_progress(show_progress and ctx.is_main) as progress:
            task = progress.add_task("train", total=total_steps, completed=step, extra="")
            for epoch in range(start_epoch, cfg.train.epochs):
                if step >= total_steps:
                    break
                start_epoch_fn(epoch)
                model.train()
                for batch in loader:
                    loss = train_step(to_model_input(batch["image"], device, cfg.train.channels_last))
                    scheduler.step()
                    step += 1
                    window_images += len(batch["image"]) * ctx.world_size
                    if step % cfg.train.log_every == 0 or step == total_steps:
                        now = time.perf_counter()
                        ips = window_images / max(now - window_start, 1e-9)
                        window_images, window_start = 0, now
                        loss_v = mean_over_ranks(loss)  # the global batch's loss
                        if log is not None:
                            log.write(step, epoch + 1, loss_v, scheduler.get_last_lr()[0], ips, now - start)
                        progress.update(task, extra=f"epoch {epoch + 1}  loss {loss_v:.4f}  {ips:.1f} img/s")
                    progress.update(task, advance=1)
                    if step >= total_steps:
                        break
                if (
                    (epoch + 1) % cfg.train.checkpoint_every == 0
                    or step >= total_steps
                    or epoch + 1 == cfg.train.epochs
                ):
                    if writer is not None:  # rank 0; the next step's all-reduce keeps the others in step
                        writer.save(run_dir, model, optimizer, scheduler, cfg, class_names, step, epoch + 1)
    finally:
        stop_workers(loader)  # not left to the exit (stop_workers); evaluation has loaders of its own
        if writer is not None:
            writer.join()  # the last checkpoint lands whole, also when training failed
        if log is not None:
            log.close()
    if writer is not None:
        writer.wait()  # a failed write raises here
    seconds = time.perf_counter() - start
    del train_step  # a captured step's memory pool, before calibration and evaluation capture their own
    sync_buffers_from_main(model)
    # Calibration on rank 0 alone: its sampling walks the images in order, so it matches one process.
    calibration = on_main(_calibrate, model, train_ds, val_ds, cfg, device)
    if ctx.is_main:
        update_model_json(run_dir, train_seconds=round(seconds, 1), **calibration)

    metrics = None
    if cfg.train.eval_at_end and len(test_ds) > 0:
        metrics = evaluate(
            model, test_ds, cfg, device, show_progress=show_progress, thresholds=calibration["thresholds"]
        )
        if ctx.is_main:
            write_metrics(run_dir, metrics, cfg)
            update_model_json(run_dir, score_stats=metrics.score_stats)
    barrier()
    return TrainResult(run_dir=run_dir, steps=step, seconds=seconds, metrics=metrics)


def _prepare_run_dir(cfg: Config, resume: str | Path | None) -> Path:
    if resume is not None:
        run_dir = Path(resume)
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise UserError(f"--resume: {saved} not found")
    else:
        run_dir = new_run_dir(cfg)
    write_text(run_dir / "config.yaml", cfg.to_yaml())
    point_latest(run_dir)
    return run_dir


def _train_loader(
    train_ds, cfg: Config, device: torch.device, ctx: DistContext
) -> tuple[DataLoader, Callable[[int], None]]:
    """The training batches, and what to call at the start of each epoch.

    One process: shuffled by a generator re-seeded every epoch (the same batches after a resume).
    Several: a DistributedSampler over one permutation per epoch (torch.randperm seeded seed + epoch),
    rank r taking positions r, r + W, ...: at each step the ranks' batches together are one batch of
    train.batch_size distinct images (not the same images a single process draws: its DataLoader consumes
    a number of its generator first). Each rank re-seeds torch per epoch for its own dropout draws."""
    bs = per_process_batch(cfg.train.batch_size, ctx.world_size)
    drop_last = len(train_ds) >= cfg.train.batch_size
    common: dict[str, Any] = {
        "num_workers": cfg.data.num_workers,
        "collate_fn": collate_samples,
        "pin_memory": device.type == "cuda",
        "persistent_workers": cfg.data.num_workers > 0,
    }
    if not ctx.enabled:
        generator = torch.Generator().manual_seed(cfg.train.seed)
        loader = DataLoader(
            train_ds, batch_size=bs, shuffle=True, drop_last=drop_last, generator=generator, **common
        )
        return loader, lambda epoch: generator.manual_seed(cfg.train.seed + epoch)
    sampler = DistributedSampler(
        train_ds,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=True,
        seed=cfg.train.seed,
        drop_last=drop_last,
    )
    loader = DataLoader(train_ds, batch_size=bs, sampler=sampler, drop_last=drop_last, **common)

    def start_epoch(epoch: int) -> None:
        sampler.set_epoch(epoch)
        torch.manual_seed(rank_seed(cfg.train.seed, epoch, ctx.rank))

    return loader, start_epoch


def stop_workers(loader: DataLoader) -> None:
    """Stop a DataLoader's persistent workers now. Left alone they live as long as its iterator, and with
    pin_memory on as well PyTorch's exit handler joins each of them for up to 5 s at interpreter exit
    (pytorch/pytorch#81794): `mambaad train --gpus 2` with 8 workers had not exited 80 s after its last
    line on two H200s (session 25). DataLoader has no public call for this; the iterator's
    _shutdown_workers is what its own __del__ runs. A later `iter(loader)` starts new workers."""
    iterator = getattr(loader, "_iterator", None)
    loader._iterator = None
    shutdown = getattr(iterator, "_shutdown_workers", None)
    if shutdown is not None:
        shutdown()


def make_train_step(
    net: torch.nn.Module,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: Config,
    graphs: bool | None = None,
    warmup: int = WARMUP_CALLS,
    cast_weights: bool | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """One iteration on a batch already on the device, returning the loss; `net` is the model or its DDP
    wrapper (which averages the gradients over ranks). With `graphs` (default: train.cuda_graphs resolved
    for one process, engine/graphs.py), replayed as a CUDA graph after `warmup` eager calls (DDP:
    DDP_WARMUP_CALLS): everything in it stays on the GPU. The optimizer must then be adamw(..., graphed=True).
    Under train.cuda_graphs auto a capture that fails is reported in one line and the steps go on eagerly;
    in a process group every rank does so when any rank's capture failed (engine/graphs.py).

    `cast_weights` (default: engine/training_weights.train_cast_weights_on) runs the model with bf16 copies of
    the weights autocast would cast at each step, refreshed and their gradients cast back in one multi-tensor
    copy each: the same bits."""
    device = next(model.parameters()).device
    if graphs is None:
        graphs = use_cuda_graphs(cfg.train.cuda_graphs, device, cfg.train.compile)
    if cast_weights is None:
        cast_weights = train_cast_weights_on(cfg.train.precision, device, graphs, net is not model)
    copies = TrainingCastWeights(model) if cast_weights else None

    def forward(images: torch.Tensor):
        if copies is None:
            return net(images)
        return torch.func.functional_call(net, copies.refresh(), (images,))

    def iteration(images: torch.Tensor) -> torch.Tensor:
        with tf32_matmuls(cfg.train.precision == "tf32"):  # the backward's products too
            try:
                with autocast(device, cfg.train.precision, "train.precision"):
                    enc, dec = forward(images)
            except Exception as e:
                if cfg.train.compile and is_compile_error(e):
                    raise compile_error(e) from None
                raise
            loss = model.loss(as_fp32(enc), as_fp32(dec), cfg.train.loss_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        if copies is not None:
            copies.to_weights()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        return loss.detach()

    if not graphs:
        return iteration
    agree = all_agree if net is not model else None  # DDP's wrapper: every rank must capture
    return graph_step(iteration, cfg.train.cuda_graphs, "train", warmup, agree)


def _calibrate(model, train_ds, val_ds, cfg: Config, device: torch.device) -> dict[str, Any]:
    if len(val_ds):
        return calibrate(model, val_ds, cfg, device, "validation")
    return calibrate(model, in_sample_subset(train_ds, cfg.train.seed), cfg, device, "training")


class TrainLog:
    """log.csv: one row every train.log_every iterations, flushed as it is written (rank 0 only)."""

    def __init__(self, path: Path, append: bool):
        new = not path.is_file() or not append
        self._file = path.open("w" if new else "a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(LOG_FIELDS)

    def write(self, step: int, epoch: int, loss: float, lr: float, images_per_s: float, elapsed: float):
        self._writer.writerow(
            [step, epoch, f"{loss:.6f}", f"{lr:.3e}", f"{images_per_s:.2f}", f"{elapsed:.1f}"]
        )
        self._file.flush()

    def close(self) -> None:
        self._file.close()
