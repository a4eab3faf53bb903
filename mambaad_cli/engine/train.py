"""Training: the paper's recipe (reference/mambaad_spec.md 4.1), then evaluation on the test split.

AdamW (lr 5e-3 at batch 16, scaled with the batch), weight decay 1e-4 on weights of two or more
dimensions that are not biases, lr x0.1 after 80 % of the iterations, grad-norm clip 5, loss
5 x sum over scales of the MSE between encoder and decoder features, seed 42.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mambaad_cli.atomic import write_text
from mambaad_cli.config import Config
from mambaad_cli.data import build_datasets, collate_samples
from mambaad_cli.data.build import split_data_configs
from mambaad_cli.engine.calibrate import calibrate, in_sample_subset, split_validation
from mambaad_cli.engine.checkpoint import load_train_state, save_model, save_train_state, update_model_json
from mambaad_cli.engine.device import resolve_device, seed_everything
from mambaad_cli.engine.evaluate import EvalResult, evaluate, write_metrics
from mambaad_cli.engine.progress import console, make_progress
from mambaad_cli.engine.runs import new_run_dir, point_latest
from mambaad_cli.engine.splits import train_splits
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


def step_schedule(total_steps: int, decay_at: float, factor: float):
    """lr multiplier: 1 until decay_at * total_steps iterations, then `factor` (timm StepLR,
    stepped per iteration)."""
    boundary = int(decay_at * total_steps)
    return lambda step: 1.0 if step < boundary else factor


def train(cfg: Config, resume: str | Path | None = None, show_progress: bool = True) -> TrainResult:
    """Train (or resume) a run and evaluate it at the end. Returns the run folder and the metrics.
    A dataset evaluated over separately trained splits (COCO-AD, coco_split -1) trains each split."""
    data_configs = split_data_configs(cfg.data)
    if len(data_configs) > 1:
        if resume is not None:
            raise UserError("--resume: give one split's run folder (<run>/splitK), not the whole run")
        run_dir, steps, seconds, summary = train_splits(
            cfg, data_configs, lambda c: train(c, show_progress=show_progress)
        )
        return TrainResult(run_dir=run_dir, steps=steps, seconds=seconds, metrics=summary)
    if resume is not None:
        run_dir = Path(resume)
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise UserError(f"--resume: {saved} not found")
    else:
        run_dir = new_run_dir(cfg)
    write_text(run_dir / "config.yaml", cfg.to_yaml())
    point_latest(run_dir)

    device = resolve_device(cfg.train.device)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    train_ds, test_ds, class_names = build_datasets(cfg.data)
    train_ds, val_ds = split_validation(train_ds, cfg.data.val_fraction, cfg.train.seed)
    if len(train_ds) == 0:
        raise UserError(f"--data-root {cfg.data.root}: no training images found")
    bs = cfg.train.batch_size
    generator = torch.Generator().manual_seed(cfg.train.seed)
    loader = DataLoader(
        train_ds,
        batch_size=bs,
        shuffle=True,
        drop_last=len(train_ds) >= bs,
        num_workers=cfg.data.num_workers,
        collate_fn=collate_samples,
        generator=generator,
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.data.num_workers > 0,
    )

    model = build_model(cfg).to(device)
    lr = cfg.train.lr * bs / 16
    optimizer = torch.optim.AdamW(
        param_groups(model, cfg.train.weight_decay), lr=lr, betas=tuple(cfg.train.betas), eps=cfg.train.eps
    )
    total_steps = cfg.train.epochs * len(loader)
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, step_schedule(cfg.train.epochs * len(loader), cfg.train.lr_decay_at, cfg.train.lr_decay)
    )
    step, start_epoch = 0, 0
    if resume is not None:
        step, start_epoch = load_train_state(run_dir, model, optimizer, scheduler)
        console.print(f"resumed {run_dir} at epoch {start_epoch}, step {step}")

    log_path = run_dir / "log.csv"
    new_log = not log_path.is_file() or resume is None
    log_file = log_path.open("w" if new_log else "a", newline="")
    log = csv.writer(log_file)
    if new_log:
        log.writerow(LOG_FIELDS)
    start = time.perf_counter()
    window_images, window_start = 0, time.perf_counter()
    epoch = start_epoch
    try:
        with make_progress(show_progress) as progress:
            task = progress.add_task("train", total=total_steps, completed=step, extra="")
            for epoch in range(start_epoch, cfg.train.epochs):
                if step >= total_steps:
                    break
                generator.manual_seed(cfg.train.seed + epoch)  # the same batches after a resume
                model.train()
                for batch in loader:
                    images = batch["image"].to(device, non_blocking=True)
                    enc, dec = model(images)
                    loss = model.loss(enc, dec, cfg.train.loss_weight)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    window_images += len(images)
                    if step % cfg.train.log_every == 0 or step == total_steps:
                        now = time.perf_counter()
                        ips = window_images / max(now - window_start, 1e-9)
                        window_images, window_start = 0, now
                        loss_v = loss.item()
                        log.writerow(
                            [
                                step,
                                epoch + 1,
                                f"{loss_v:.6f}",
                                f"{scheduler.get_last_lr()[0]:.3e}",
                                f"{ips:.2f}",
                                f"{now - start:.1f}",
                            ]
                        )
                        log_file.flush()
                        progress.update(task, extra=f"epoch {epoch + 1}  loss {loss_v:.4f}  {ips:.1f} img/s")
                    progress.update(task, advance=1)
                    if step >= total_steps:
                        break
                if (
                    (epoch + 1) % cfg.train.checkpoint_every == 0
                    or step >= total_steps
                    or epoch + 1 == cfg.train.epochs
                ):
                    save_train_state(run_dir, model, optimizer, scheduler, step, epoch + 1)
                    save_model(run_dir, model, cfg, class_names, extra={"step": step, "epoch": epoch + 1})
    finally:
        log_file.close()
    seconds = time.perf_counter() - start
    if len(val_ds):
        calibration = calibrate(model, val_ds, cfg, device, "validation")
    else:
        calibration = calibrate(model, in_sample_subset(train_ds, cfg.train.seed), cfg, device, "training")
    update_model_json(run_dir, train_seconds=round(seconds, 1), **calibration)

    metrics = None
    if cfg.train.eval_at_end and len(test_ds) > 0:
        metrics = evaluate(
            model, test_ds, cfg, device, show_progress=show_progress, thresholds=calibration["thresholds"]
        )
        write_metrics(run_dir, metrics, cfg)
        update_model_json(run_dir, score_stats=metrics.score_stats)
    return TrainResult(run_dir=run_dir, steps=step, seconds=seconds, metrics=metrics)
